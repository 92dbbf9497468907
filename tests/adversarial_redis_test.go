package tests

import (
	"errors"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// Keys under the prefix that this store did not write: of another type,
// or far larger than MaxValueBytes. Each costs what it concerns, never the
// availability of the store.

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
