package tests

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
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

// TestReplayOfLargeSessionsDrains: 60 sessions of 1 MiB accepted during an
// outage replay with the default OpTimeout, without the breaker opening
// again: batches are bounded in bytes, not only in count.
func TestReplayOfLargeSessionsDrains(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	opts := outageOptions(log)
	opts.MaxValueBytes = 2 << 20
	opts.Fallback = lru.Limits{MaxBytes: 256 << 20}
	opts.Local = lru.Limits{MaxBytes: 256 << 20}
	p, s := cutOff(t, e, opts)
	const n, size = 60, 1 << 20
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, size) }
	p.Cut()
	openBreaker(t, s)
	for i := range n {
		if err := s.Set(bg, fmt.Sprint("big", i), value(i), time.Hour); err != nil {
			t.Fatalf("Set(big%d) during the outage: %v", i, err)
		}
	}
	if st := s.Stats(); st.PendingWrites != n {
		t.Fatalf("PendingWrites = %d; want %d", st.PendingWrites, n)
	}
	p.Restore()
	waitReplayed(t, s)
	for i := range n {
		got, err := e.plain.Get(bg, fmt.Sprint("session:big", i)).Bytes()
		if err != nil || !bytes.Equal(got, value(i)) {
			t.Fatalf("Redis big%d: %d bytes, %v; want the replayed 1 MiB", i, len(got), err)
		}
	}
	if st := s.Stats(); st.ReplayApplied != n || st.PendingLost != 0 {
		t.Fatalf("ReplayApplied %d, PendingLost %d; want %d and 0", st.ReplayApplied, st.PendingLost, n)
	}
	if opened, _ := log.total(telemetry.AlertBreakerOpen); opened != 1 {
		t.Fatalf("breaker_open fired %d times; want once, for the outage: replay must not reopen it", opened)
	}
}

// TestRangeSkipsNonStringKeys: Range walks past keys of other types under
// the prefix, and values over MaxValueBytes, and counts them in
// Stats.RangeSkipped.
func TestRangeSkipsNonStringKeys(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{MaxValueBytes: 1024})
	mustSet(t, s, "a", "1")
	mustSet(t, s, "b", "2")
	e.plain.HSet(bg, "session:hash", "f", "v")
	e.plain.LPush(bg, "session:list", "x")
	e.plain.Set(bg, "session:big", bytes.Repeat([]byte("x"), 4096), time.Hour)
	var ids []string
	err := s.Range(bg, func(id string, data []byte) error {
		ids = append(ids, id+"="+string(data))
		return nil
	})
	sort.Strings(ids)
	if err != nil || fmt.Sprint(ids) != "[a=1 b=2]" {
		t.Fatalf("Range = %v, %v; want [a=1 b=2] and no error", ids, err)
	}
	if st := s.Stats(); st.RangeSkipped != 3 {
		t.Fatalf("RangeSkipped = %d; want 3 (a hash, a list, an oversized value)", st.RangeSkipped)
	}
}
