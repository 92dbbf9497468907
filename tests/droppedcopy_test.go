package tests

import (
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestWriteAfterAnUnkeptUpdateReplaysOntoIt: in per-key mode, an update of
// a session held here that cannot be kept (the tracking connection is
// down, so no invalidation would reach the copy) used to drop the copy,
// and with it the value the next outage write replays onto: that write,
// acknowledged, then conflicted with this store's own earlier write and
// was dropped (W4 hang lost such writes when the breaker flapped).
func TestWriteAfterAnUnkeptUpdateReplaysOntoIt(t *testing.T) {
	srv, proxy, s := proxiedStore(t, tiered.Options{
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	})
	plain := srv.Client()
	if err := s.Set(bg, "victim", []byte("v1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "victim"); err != nil { // held here
		t.Fatal(err)
	}

	hold := proxy.Hold([]byte("sessiontier-invalidation")) // the tracking connection's reconnection
	defer hold.Release()
	if n := killListenersOn(t, plain); n != 1 {
		t.Fatalf("killed %d tracking connections; want 1", n)
	}
	waitFor(t, "the tracking connection to be down", func() bool { return s.Stats().Invalidation == "connecting" })
	if err := s.Set(bg, "victim", []byte("v2"), time.Hour); err != nil { // through the lanes: not kept
		t.Fatal(err)
	}
	if v := plain.Get(bg, "session:victim").Val(); v != "v2" {
		t.Fatalf("Redis holds %q; want v2 (the test's premise)", v)
	}

	srv.Pause()
	if err := s.Set(bg, "tripper", []byte("x"), time.Hour); err != nil { // times out: the breaker opens
		t.Fatal(err)
	}
	if err := s.Set(bg, "victim", []byte("v3"), time.Hour); err != nil { // not sent
		t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
	}
	srv.Resume()
	hold.Release()
	waitReplayed(t, s)
	if v := plain.Get(bg, "session:victim").Val(); v != "v3" {
		t.Fatalf("Redis holds %q after the replay (%d conflicts); want the last acknowledged write, v3", v, s.Stats().ReplayConflicts)
	}
	// A write dropped at replay would also be a stale read until the
	// session is written again: the bench's W4 (hang) saw both.
	if v, err := s.Get(bg, "victim"); err != nil || string(v) != "v3" {
		t.Fatalf("Get after the replay = %q, %v; want v3, the last acknowledged write", v, err)
	}
}
