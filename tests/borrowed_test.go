package tests

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// Set copies the caller's bytes only when the store keeps them (a local
// copy, a write queued for replay); a write it does not keep is encoded
// before Set can return. Either way the caller may reuse its buffer as
// soon as Set returns, even when Set gave up on a write that then lands:
// neither Redis nor the local tier ever holds what the caller wrote into
// the buffer afterwards.
func TestSetDoesNotKeepTheCallersBuffer(t *testing.T) {
	modes := append([]mode{{"off", tiered.InvalidationOff, "off"}, {"publish", tiered.InvalidationPublish, "publish"}}, trackingModes...)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.store(t, tiered.Options{Invalidation: m.opt})
			buf := []byte("first-value")
			for _, id := range []string{"new", "held"} {
				if id == "held" {
					mustSet(t, s, id, "old")
					wantGet(t, s, id, "old") // a local copy: the next Set keeps its value
				}
				if err := s.Set(bg, id, buf, time.Hour); err != nil {
					t.Fatal(err)
				}
				copy(buf, "XXXXXXXXXXX")
				wantGet(t, s, id, "first-value")
				wantGet(t, s, id, "first-value") // a local hit, where there is one
				if v := e.plain.Get(bg, "session:"+id).Val(); v != "first-value" {
					t.Fatalf("%s: Redis holds %q", id, v)
				}
				copy(buf, "first-value")
			}
		})
	}
}

// The same for a Set whose caller gives up while its command is on its
// way: it may land after Set returned, with the bytes given, not with what
// the caller wrote into its buffer since.
func TestAbandonedSetLandsWithTheBytesGiven(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		srv := redistest.Start(t)
		plain := srv.Client()
		s, proxy := trackedViaProxy(t, srv, m)
		mustSet(t, s, "late", "old")
		wantGet(t, s, "late", "old") // held: the next Set keeps a copy

		buf := []byte("given-value-held-in-the-network")
		hold := cancelWhileHeld(t, proxy, []byte("given-value"), "Set", func(ctx context.Context) error {
			return s.Set(ctx, "late", buf, time.Hour)
		})
		given := bytes.Clone(buf)
		copy(buf, bytes.Repeat([]byte("X"), len(buf)))
		hold.Release()
		waitFor(t, "the held SET to land", func() bool { return plain.Get(bg, "session:late").Val() != "old" })
		if v := plain.Get(bg, "session:late").Val(); v != string(given) {
			t.Fatalf("Redis holds %q; the Set was given %q", v, given)
		}
		mustSet(t, s, "other", "x") // its reply follows the late SET's
		wantGet(t, s, "late", string(given))
	})
}
