package tests

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/tiered"
)

// absent stands for a session Redis does not hold, or the store does not
// serve.
const absent = "<absent>"

// review37Op is one Set, Delete or Touch of a session in a pair.
type review37Op struct {
	kind  byte   // 's', 'd', 't'
	value string // kind 's'
}

// outcome is what op leaves in Redis; ok false for a Touch.
func (op review37Op) outcome() (string, bool) {
	switch op.kind {
	case 's':
		return op.value, true
	case 'd':
		return absent, true
	}
	return "", false
}

func (op review37Op) run(s *tiered.Store, id string) error {
	switch op.kind {
	case 's':
		return s.Set(bg, id, []byte(op.value), time.Hour)
	case 'd':
		return s.Delete(bg, id)
	}
	err := s.Touch(bg, id, time.Hour)
	if errors.Is(err, tiered.ErrNotFound) || errors.Is(err, tiered.ErrUnavailable) { // a touch changes no value
		return nil
	}
	return err
}

// served returns what s serves of id, or "" and false for an error other
// than ErrNotFound.
func served(s *tiered.Store, id string) (string, bool) {
	v, err := s.Get(bg, id)
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		return absent, true
	case err != nil:
		return "", false
	}
	return string(v), true
}

// review37Pair picks the pair of changes of round r of id: a Set or a
// Delete, at once with a Set, a Delete or a Touch.
func review37Pair(id string, r int) (a, b review37Op) {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", id, r)
	x := h.Sum32()
	a = review37Op{kind: "sd"[x%2], value: fmt.Sprintf("%s-r%d-a", id, r)}
	b = review37Op{kind: "sdt"[(x/2)%3], value: fmt.Sprintf("%s-r%d-b", id, r)}
	return a, b
}

// TestReview37PairsAcrossOutagesAgree runs, per session, pair after pair
// of changes sent at once (a Set or Delete with a Set, Delete or Touch of
// the same session), while Redis is paused and resumed under them, again
// and again: changes fail into the outage tier and the breaker opens,
// changes answered by Redis find outage state recorded meanwhile
// (requeue), the breaker closes and the tier replays while pairs run,
// reads run throughout. Once both changes of a pair returned, the session
// is served as one of them left it (never as an earlier pair did, never
// as deleted-then-revived); once the store is quiet, what is served is
// what Redis holds, and what the last pair left.
//
// It found three causes of a lost acknowledged Set (f0bc169, c9f7c45,
// 94bd92a): it failed 3 of 21 runs before them, 2 of 30 after the first
// two, none of 30 after the third.
func TestReview37PairsAcrossOutagesAgree(t *testing.T) {
	modes := []mode{
		{"per-key", tiered.InvalidationPerKey, "per-key"},
		{"broadcast", tiered.InvalidationTracking, "tracking"},
		{"publish", tiered.InvalidationPublish, "publish"},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { review37Pairs(t, m, 400, 3) })
	}
}

func review37Pairs(t *testing.T, m mode, n, cycles int) {
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.Invalidation = m.opt
	opts.StrictReads = true // a miss while Redis is unreachable is not "absent"
	s := e.store(t, opts)
	ids := make([]string, n)
	allowed := make([][]string, n) // per session: what it may be served as, and hold in Redis
	history := make([][]string, n) // per session: its pairs, for the report
	for i := range ids {
		ids[i] = fmt.Sprint("p", i)
		mustSet(t, s, ids[i], ids[i]+"-v0")
		wantGet(t, s, ids[i], ids[i]+"-v0") // held here
		allowed[i] = []string{ids[i] + "-v0"}
	}

	var (
		stop    atomic.Bool
		pairs   atomic.Int64
		bad     atomic.Int64
		tainted = make([]atomic.Bool, n) // a change failed: it may have landed any time
		wg      sync.WaitGroup
	)
	report := func(format string, args ...any) {
		if bad.Add(1) <= 10 {
			t.Logf(format, args...)
		}
	}
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for r := 0; !stop.Load(); r++ {
				for i := w; i < n && !stop.Load(); i += workers {
					id := ids[i]
					a, b := review37Pair(id, r)
					var ea, eb error
					var pw sync.WaitGroup
					pw.Go(func() { ea = a.run(s, id) })
					pw.Go(func() { eb = b.run(s, id) })
					pw.Wait()
					pairs.Add(1)
					history[i] = append(history[i], fmt.Sprintf("r%d %c|%c %v|%v breaker %s", r, a.kind, b.kind, ea, eb, s.Stats().Breaker))
					var now []string
					for k, op := range []review37Op{a, b} {
						err := []error{ea, eb}[k]
						if v, ok := op.outcome(); ok && err == nil {
							now = append(now, v)
						} else if err != nil {
							tainted[i].Store(true)
						}
					}
					if len(now) > 0 {
						allowed[i] = now
					}
					if tainted[i].Load() {
						continue
					}
					if v, ok := served(s, id); ok && !slices.Contains(allowed[i], v) {
						report("%s round %d (%c %c at once, %v %v): served %q once both returned; want one of %q (stats %+v); its pairs: %q",
							id, r, a.kind, b.kind, ea, eb, v, allowed[i], s.Stats(), history[i])
					}
				}
			}
		})
	}
	for range 4 { // reads throughout, filling copies as changes end
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				s.Get(bg, ids[(i*7)%n])
			}
		})
	}
	progress := func(k int64) {
		t.Helper()
		from := pairs.Load()
		waitFor(t, "pairs to run", func() bool { return pairs.Load() >= from+k })
	}
	for range cycles {
		progress(int64(n / 2))
		e.srv.Pause()     // changes in flight time out into the tier; the breaker opens
		openBreaker(t, s) // (a miss probes Redis: the pairs' changes may all queue behind outage state)
		progress(int64(n / 2))
		e.srv.Resume() // the breaker closes and the tier replays under the pairs
		waitFor(t, "the breaker to close", func() bool { return s.Stats().Breaker == "closed" })
	}
	progress(int64(n / 2))
	stop.Store(true)
	wg.Wait()
	waitReplayed(t, s)

	// Quiet: the local copies' invalidations settle.
	var last []string
	agree := func() bool {
		last = last[:0]
		for _, id := range ids {
			v, ok := served(s, id)
			r, err := e.plain.Get(bg, "session:"+id).Result()
			if err != nil {
				r = absent
			}
			if !ok || v != r {
				last = append(last, fmt.Sprintf("%s: served %q, Redis %q", id, v, r))
			}
		}
		return len(last) == 0
	}
	deadline := time.Now().Add(3 * time.Second)
	for !agree() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling agreement
	}
	st := s.Stats()
	if len(last) > 0 {
		t.Errorf("%d sessions served other than Redis holds once quiet (stats %+v), e.g. %q", len(last), st, last[:min(5, len(last))])
	}
	for i, id := range ids {
		if tainted[i].Load() {
			continue
		}
		r, err := e.plain.Get(bg, "session:"+id).Result()
		if err != nil {
			r = absent
		}
		if !slices.Contains(allowed[i], r) {
			report("%s: Redis holds %q once quiet; the last pair left one of %q; its pairs: %q", id, r, allowed[i], history[i])
		}
	}
	nt := 0
	for i := range tainted {
		if tainted[i].Load() {
			nt++
		}
	}
	t.Logf("%d pairs, %d sessions with a failed change, stats %+v", pairs.Load(), nt, st)
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d violations (stats %+v)", n, st)
	}
}
