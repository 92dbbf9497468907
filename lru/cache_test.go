package lru_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
)

// tier adapts a Cache to the shared suite.
type tier struct{ c *lru.Cache }

func (a tier) Get(_ context.Context, key string) ([]byte, bool, error) {
	v, _, ok := a.c.Get(key)
	return v, ok, nil
}

func (a tier) Set(_ context.Context, key string, v []byte, ttl time.Duration) error {
	if stored, _ := a.c.Set(key, v, ttl, ttl); !stored {
		return errors.New("not stored")
	}
	return nil
}

func (a tier) Delete(_ context.Context, key string) error { a.c.Delete(key); return nil }

func (a tier) Touch(_ context.Context, key string, ttl time.Duration) (bool, error) {
	w := a.c.Begin(key)
	_, _, ok := a.c.Get(key)
	a.c.EndTouch(w, ttl)
	return ok, nil
}

func TestSuite(t *testing.T) {
	tiertest.Run(t, func(t *testing.T) tiertest.Env {
		clock := tiertest.NewClock()
		c := newCache(t, lru.Limits{}, clock)
		return tiertest.Env{
			Tier:        tier{c},
			AwaitExpiry: func(*testing.T, string) { clock.Advance(tiertest.ShortTTL) },
		}
	})
}

func newCache(t testing.TB, l lru.Limits, clock *tiertest.Clock) *lru.Cache {
	t.Helper()
	if clock == nil {
		clock = tiertest.NewClock()
	}
	c, err := lru.New(l, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLimitsValidation(t *testing.T) {
	for _, l := range []lru.Limits{{MaxEntries: -2}, {MaxBytes: -1}, {TTL: -time.Second}, {MaxEntries: -1}} {
		if _, err := lru.New(l, nil); !errors.Is(err, lru.ErrInvalidLimits) {
			t.Errorf("New(%+v) error = %v; want ErrInvalidLimits", l, err)
		}
	}
	got, err := lru.Limits{}.WithDefaults()
	want := lru.Limits{MaxEntries: lru.DefaultMaxEntries, MaxBytes: lru.DefaultMaxBytes, TTL: lru.DefaultTTL}
	if err != nil || got != want {
		t.Errorf("WithDefaults() = %+v, %v; want %+v", got, err, want)
	}
}

func TestFreshThenStale(t *testing.T) {
	clock := tiertest.NewClock()
	c := newCache(t, lru.Limits{}, clock)
	c.Set("k", []byte("v"), time.Second, time.Minute)
	if _, fresh, ok := c.Get("k"); !ok || !fresh {
		t.Fatalf("Get right after Set: fresh=%v ok=%v; want fresh", fresh, ok)
	}
	clock.Advance(time.Second)
	if v, fresh, ok := c.Get("k"); !ok || fresh || string(v) != "v" {
		t.Fatalf("Get past freshness: %q fresh=%v ok=%v; want the stale value", v, fresh, ok)
	}
	clock.Advance(time.Minute)
	if _, _, ok := c.Get("k"); ok {
		t.Fatal("Get past expiry returned the entry")
	}
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 || st.Expirations != 1 {
		t.Fatalf("Stats after expiry = %+v; want empty with one expiration", st)
	}
}

// TestBoundsAtEveryInstant writes from many goroutines while a watcher
// checks both bounds after every step.
func TestBoundsAtEveryInstant(t *testing.T) {
	const maxEntries, maxBytes = 2_000, 300_000
	c := newCache(t, lru.Limits{MaxEntries: maxEntries, MaxBytes: maxBytes}, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	violations := make(chan string, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st := c.Stats(); st.Entries > maxEntries || st.Bytes > maxBytes {
				select {
				case violations <- fmt.Sprintf("%+v", st):
				default:
				}
			}
		}
	})
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range 5_000 {
				c.Set(fmt.Sprintf("w%d-%d", w, i), make([]byte, (i*37)%900), time.Hour, time.Hour)
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	select {
	case v := <-violations:
		t.Fatalf("a bound was exceeded: %s", v)
	default:
	}
	st := c.Stats()
	if st.Evictions == 0 || st.Entries == 0 {
		t.Fatalf("Stats = %+v; want evictions and a non-empty cache", st)
	}
}

func TestByteAccounting(t *testing.T) {
	c := newCache(t, lru.Limits{MaxEntries: 10, MaxBytes: 3 * (lru.EntryOverhead + 10)}, nil)
	for _, k := range []string{"a", "b", "c"} {
		if stored, evicted := c.Set(k, make([]byte, 9), time.Hour, time.Hour); !stored || evicted != 0 {
			t.Fatalf("Set(%s) = %v, %d; want stored without eviction", k, stored, evicted)
		}
	}
	if st := c.Stats(); st.Bytes != 3*(lru.EntryOverhead+10) {
		t.Fatalf("Bytes = %d; want %d", st.Bytes, 3*(lru.EntryOverhead+10))
	}
	// A fourth entry of the same size evicts the oldest.
	if _, evicted := c.Set("d", make([]byte, 9), time.Hour, time.Hour); evicted != 1 {
		t.Fatalf("Set(d) evicted %d; want 1", evicted)
	}
	if _, _, ok := c.Get("a"); ok {
		t.Fatal("the oldest entry survived a byte-bound eviction")
	}
	// A value larger than the whole bound is refused and drops the old value.
	if stored, _ := c.Set("b", make([]byte, 3*lru.EntryOverhead), time.Hour, time.Hour); stored {
		t.Fatal("a value over MaxBytes was stored")
	}
	if _, _, ok := c.Get("b"); ok {
		t.Fatal("an oversized Set left the older value in place")
	}
}

func TestLRUOrder(t *testing.T) {
	c := newCache(t, lru.Limits{MaxEntries: 3}, nil)
	for _, k := range []string{"a", "b", "c"} {
		c.Set(k, []byte(k), time.Hour, time.Hour)
	}
	c.Get("a") // a is now in use
	c.Set("d", []byte("d"), time.Hour, time.Hour)
	if _, _, ok := c.Get("a"); !ok {
		t.Fatal("an entry that was read was evicted before entries never read")
	}
	if _, _, ok := c.Get("b"); ok {
		t.Fatal("the oldest unread entry survived")
	}
}

// TestFloodResistance: keys in use survive a flood of keys written once.
func TestFloodResistance(t *testing.T) {
	c := newCache(t, lru.Limits{MaxEntries: 1_000}, nil)
	for i := range 500 {
		c.Set(fmt.Sprint("user", i), []byte("s"), time.Hour, time.Hour)
		c.Get(fmt.Sprint("user", i))
	}
	for round := range 20 {
		for i := range 1_000 {
			c.Set(fmt.Sprintf("bot%d-%d", round, i), []byte("x"), time.Hour, time.Hour)
		}
		for i := range 500 {
			c.Get(fmt.Sprint("user", i))
		}
	}
	lost := 0
	for i := range 500 {
		if _, _, ok := c.Get(fmt.Sprint("user", i)); !ok {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of 500 sessions in use were evicted by a flood of 20,000 written once", lost)
	}
}

func TestFillLosesToWrites(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)

	// A write that begins after the token was taken wins.
	tok := c.FillToken("k")
	w := c.Begin("k")
	c.EndDelete(w)
	if c.Fill(tok, "k", []byte("stale"), time.Hour, time.Hour) {
		t.Fatal("a fill stored a value read before a delete")
	}
	// A write in progress when the token is taken wins too.
	w = c.Begin("k")
	tok = c.FillToken("k")
	c.EndSet(w, []byte("new"), time.Hour, time.Hour)
	if c.Fill(tok, "k", []byte("stale"), time.Hour, time.Hour) {
		t.Fatal("a fill stored a value read during a write")
	}
	if v, _, _ := c.Get("k"); string(v) != "new" {
		t.Fatalf("Get = %q; want new", v)
	}
	// With no write around, a fill is stored.
	tok = c.FillToken("other")
	if !c.Fill(tok, "other", []byte("v"), time.Hour, time.Hour) {
		t.Fatal("a fill with no concurrent write was not stored")
	}
}

func TestOverlappingWritesDropTheEntry(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("k", []byte("old"), time.Hour, time.Hour)
	w1 := c.Begin("k")
	w2 := c.Begin("k")
	c.EndSet(w2, []byte("two"), time.Hour, time.Hour)
	c.EndSet(w1, []byte("one"), time.Hour, time.Hour)
	if v, _, ok := c.Get("k"); ok {
		t.Fatalf("overlapping writes left %q; want the entry dropped", v)
	}
	// The next lone write stores again.
	w := c.Begin("k")
	c.EndSet(w, []byte("three"), time.Hour, time.Hour)
	if v, _, _ := c.Get("k"); string(v) != "three" {
		t.Fatalf("Get = %q; want three", v)
	}
}

func TestPurge(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("a", []byte("1"), time.Hour, time.Hour)
	c.Purge()
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("Stats after Purge = %+v", st)
	}
}

func TestInvalidateMakesEntriesStale(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("old", []byte("v"), time.Hour, time.Hour)
	c.Invalidate()
	if v, fresh, ok := c.Get("old"); !ok || fresh || string(v) != "v" {
		t.Fatalf("Get after Invalidate = %q, fresh %v, ok %v; want the value, stale", v, fresh, ok)
	}
	c.Set("new", []byte("v"), time.Hour, time.Hour)
	if _, fresh, _ := c.Get("new"); !fresh {
		t.Fatal("an entry stored after Invalidate is not fresh")
	}
}

func TestFillAbsentDropsTheEntryUnlessAWriteCame(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("k", []byte("v"), time.Hour, time.Hour)
	tok := c.FillToken("k")
	if !c.FillAbsent(tok, "k") {
		t.Fatal("FillAbsent kept an entry the source no longer has")
	}
	c.Set("k", []byte("v"), time.Hour, time.Hour)
	tok = c.FillToken("k")
	c.EndSet(c.Begin("k"), []byte("new"), time.Hour, time.Hour)
	if c.FillAbsent(tok, "k") {
		t.Fatal("FillAbsent dropped a value written after the read began")
	}
}

// TestInvalidateRejectsFillsAndWritesInFlight: a read or a write that
// began before a whole-cache invalidation (a FLUSHDB, a reconfirmed
// stream) may carry a value that is gone at the source: it stores nothing
// fresh. What begins after the invalidation stores as usual.
func TestInvalidateRejectsFillsAndWritesInFlight(t *testing.T) {
	for _, whole := range []struct {
		name string
		do   func(*lru.Cache)
	}{{"Invalidate", (*lru.Cache).Invalidate}, {"Purge", (*lru.Cache).Purge}} {
		t.Run(whole.name, func(t *testing.T) {
			c := newCache(t, lru.Limits{}, nil)
			c.Set("touched", []byte("v"), time.Hour, time.Hour)
			c.Set("kept", []byte("v"), time.Hour, time.Hour)
			set, touch, keep := c.Begin("set"), c.Begin("touched"), c.Begin("kept")
			tok := c.FillToken("filled") // after the Begins: only the invalidation may reject it
			whole.do(c)
			if c.Fill(tok, "filled", []byte("read before"), time.Hour, time.Hour) {
				t.Error("Fill stored a value read before the invalidation")
			}
			c.EndSet(set, []byte("written before"), time.Hour, time.Hour)
			c.EndTouch(touch, time.Hour)
			c.EndKeep(keep)
			for _, k := range []string{"filled", "set", "touched", "kept"} {
				if v, fresh, ok := c.Get(k); ok && fresh {
					t.Errorf("Get(%s) = %q, fresh, after a read or write begun before the invalidation", k, v)
				}
			}
			for _, k := range []string{"set", "touched"} {
				if _, _, ok := c.Get(k); ok {
					t.Errorf("%s: a write begun before the invalidation left an entry; want it dropped", k)
				}
			}
			// After the invalidation, reads and writes store again.
			if tok := c.FillToken("filled"); !c.Fill(tok, "filled", []byte("v"), time.Hour, time.Hour) {
				t.Error("a fill begun after the invalidation was not stored")
			}
			c.EndSet(c.Begin("set"), []byte("v"), time.Hour, time.Hour)
			for _, k := range []string{"filled", "set"} {
				if _, fresh, ok := c.Get(k); !ok || !fresh {
					t.Errorf("Get(%s) after a fresh fill or write: fresh %v, ok %v; want fresh", k, fresh, ok)
				}
			}
		})
	}
}

// TestFillAbsentDropsAcrossInvalidate: a read that found the key gone
// still drops the local copy after an invalidation: dropping makes
// nothing fresh, and the copy must not be served if Redis fails.
func TestFillAbsentDropsAcrossInvalidate(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("k", []byte("deleted elsewhere"), time.Hour, time.Hour)
	tok := c.FillToken("k")
	c.Invalidate()
	if !c.FillAbsent(tok, "k") {
		t.Fatal("FillAbsent kept a copy the source no longer has")
	}
	if _, _, ok := c.Get("k"); ok {
		t.Fatal("the copy survived FillAbsent")
	}
}

// TestTouchDoesNotExtendFreshness (issue 9, item 5): a touch extends the
// expiry of a copy, never the time it is served without asking the
// source, which another client may have changed meanwhile.
func TestTouchDoesNotExtendFreshness(t *testing.T) {
	clock := tiertest.NewClock()
	c := newCache(t, lru.Limits{}, clock)
	c.Set("k", []byte("v"), time.Minute, time.Hour)
	clock.Advance(50 * time.Second)
	c.EndTouch(c.Begin("k"), time.Hour)
	clock.Advance(20 * time.Second)
	v, fresh, ok := c.Get("k")
	if !ok || string(v) != "v" {
		t.Fatalf("Get = %q, %v; want the touched copy kept", v, ok)
	}
	if fresh {
		t.Fatal("a copy touched before its freshness ended is still fresh past it")
	}
	c.EndTouch(c.Begin("k"), time.Second)
	clock.Advance(2 * time.Second)
	if _, _, ok := c.Get("k"); ok {
		t.Fatal("a copy touched to a shorter lifetime outlives it")
	}
}

// A write that found no entry of its key (SeenFor) skips looking again
// when it ends with EndDelete, but only while nothing was stored since:
// an entry stored meanwhile, or one that was present but expired, is
// still dropped.
func TestEndDeleteAfterSeenForDropsWhatCameMeanwhile(t *testing.T) {
	clock := tiertest.NewClock()
	c := newCache(t, lru.Limits{}, clock)

	w := c.Begin("k")
	if v, ok := c.SeenFor(&w); ok {
		t.Fatalf("SeenFor = %q on an empty cache", v)
	}
	c.Set("k", []byte("meanwhile"), time.Hour, time.Hour) // say, an EndSet of another write
	c.EndDelete(w)
	if v, _, ok := c.Get("k"); ok {
		t.Fatalf("EndDelete left %q, stored after SeenFor found nothing", v)
	}

	c.Set("old", []byte("v"), time.Minute, time.Minute)
	clock.Advance(2 * time.Minute)
	w = c.Begin("old")
	if _, ok := c.SeenFor(&w); ok {
		t.Fatal("SeenFor returned an expired entry")
	}
	c.EndDelete(w)
	if st := c.Stats(); st.Entries != 0 {
		t.Fatalf("EndDelete left an expired entry it was told of: %d entries", st.Entries)
	}

	c.Set("other", []byte("v"), time.Hour, time.Hour)
	w = c.Begin("k")
	c.SeenFor(&w)
	c.EndDelete(w)
	if _, _, ok := c.Get("other"); !ok {
		t.Fatal("EndDelete of an absent key dropped another")
	}
}
