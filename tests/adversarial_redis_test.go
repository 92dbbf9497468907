package tests

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// Keys under the prefix that this store did not write: of another type,
// or far larger than MaxValueBytes. Each costs what it concerns, never the
// availability of the store.

// cutOff returns a store reaching e's Redis through a proxy that the test
// can cut, while e.plain still reaches Redis directly.
func cutOff(t *testing.T, e *env, opts tiered.Options) (*redistest.Proxy, *tiered.Store) {
	t.Helper()
	p := redistest.NewProxy(t, e.srv.Addr)
	c := goredis.NewClient(&goredis.Options{Addr: p.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	s, err := tiered.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitStream(t, s)
	return p, s
}

// TestOversizedValueIsErrTooLargeNotAnOutage: a 200 MiB value written by
// another client is ErrTooLarge for its id, at once, and the breaker does
// not count it; a key of another type is a clear error too.
func TestOversizedValueIsErrTooLargeNotAnOutage(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	s := e.store(t, outageOptions(log)) // the breaker opens after 2 failures
	mustSet(t, s, "ok", "fine")
	// 200 MiB made by Redis itself, so the test sends almost nothing.
	if err := e.plain.SetRange(bg, "session:huge", 200<<20-1, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.plain.HSet(bg, "session:hash", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		start := time.Now()
		_, err := s.Get(bg, "huge")
		if !errors.Is(err, tiered.ErrTooLarge) || errors.Is(err, tiered.ErrUnavailable) {
			t.Fatalf("Get of a 200 MiB session = %v; want ErrTooLarge, not ErrUnavailable", err)
		}
		if d := time.Since(start); d >= tiered.DefaultOpTimeout {
			t.Fatalf("Get of a 200 MiB session took %v; want less than OpTimeout: it reads at most the limit", d)
		}
		_, err = s.Get(bg, "hash")
		if err == nil || errors.Is(err, tiered.ErrUnavailable) || errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("Get of a hash = %v; want an error that is neither ErrUnavailable nor ErrNotFound", err)
		}
	}
	if st := s.Stats(); st.Breaker != "closed" {
		t.Fatalf("breaker %s after reading oversized and wrong-type keys; want closed", st.Breaker)
	}
	if n, _ := log.total(telemetry.AlertBreakerOpen); n != 0 {
		t.Fatalf("breaker_open fired %d times; want 0", n)
	}
	if err := s.Set(bg, "ok", []byte("still fine"), time.Hour); err != nil {
		t.Fatalf("Set after the oversized reads: %v", err)
	}
	wantGet(t, s, "ok", "still fine")
}

// TestReplaySkipsWrongTypeKey: a write accepted during an outage whose key
// became a hash meanwhile is dropped, counted in PendingLost and alerted;
// the other writes of its batch are replayed and the outage tier drains.
func TestReplaySkipsWrongTypeKey(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	p, s := cutOff(t, e, outageOptions(log))
	p.Cut()
	mustSet(t, s, "bad", "mine")
	for i := range 3 {
		mustSet(t, s, fmt.Sprint("good", i), "kept")
	}
	openBreaker(t, s)
	if err := e.plain.HSet(bg, "session:bad", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	p.Restore()
	waitReplayed(t, s)
	for i := range 3 {
		if got := e.plain.Get(bg, fmt.Sprint("session:good", i)).Val(); got != "kept" {
			t.Fatalf("Redis good%d = %q; want the replayed write", i, got)
		}
	}
	if typ := e.plain.Type(bg, "session:bad").Val(); typ != "hash" {
		t.Fatalf("Redis bad is a %s; want the other client's hash, untouched", typ)
	}
	if got, err := s.Get(bg, "bad"); err == nil || bytes.Equal(got, []byte("mine")) {
		t.Fatalf("Get(bad) = %q, %v; want the WRONGTYPE error, not the dropped write", got, err)
	}
	st := s.Stats()
	if st.PendingLost != 1 || st.ReplayApplied != 3 {
		t.Fatalf("PendingLost %d, ReplayApplied %d; want 1 and 3", st.PendingLost, st.ReplayApplied)
	}
	s.Close() // fires the alerts held back
	if _, count := log.total(telemetry.AlertPendingLost); count != 1 {
		t.Fatalf("pending_lost counted %d; want 1", count)
	}
}
