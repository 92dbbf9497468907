package tests

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// This file records what the randomized fault test did (a history) and
// checks it. Times are durations since the run began, read from the
// monotonic clock. Every value written is unique, so a value read names
// the write it came from.
//
// The checker reports only what no correct store can do (a false alarm is
// a bug of the checker). Where timing is uncertain it assumes the worst:
//
//   - Every write or delete has an effect window [a, b] on Redis: a is when
//     it started; b is when it ended for the plain client, and for a store
//     the end of the first Stats() that began after it ended and found the
//     outage tier empty (an accepted write may reach Redis only at replay).
//     An empty restart's window runs from the kill to the new process's
//     start. An operation that failed may or may not take effect, up to
//     the next quiescent point.
//   - An operation is definite if it surely took effect: every acknowledged
//     delete, FLUSHDB and empty restart, every acknowledged plain write, and
//     every acknowledged store write unless that store counted a lost write
//     or a replay conflict (PendingLost, ReplayConflicts) between the
//     write's start and the end of its window (plus dropMargin): such a
//     write may have been dropped, which is allowed when counted.
//   - E surely precedes F (E ≺ F) if E's window ends before F starts, or if
//     both were acknowledged by the same instance and E ended before F
//     started (a store keeps the order of its own writes of one id, outage
//     or not).
//   - A store may serve stale data while degraded: from any failed Redis
//     command of its own (not a caller's cancellation) until it is next
//     seen with the breaker closed and nothing pending, at least 100 ms
//     later (outage tier, stale-if-error, a breaker that opens just after).
//
// Invariants:
//
//  1. A plain read returns a value that may be current: the value of a
//     write (or absence, after a delete-like operation) that is not surely
//     followed by a definite change that ended before the read began. This
//     catches lost acknowledged writes and resurrected values.
//  2. A store never returns a value v after a definite change F of the id
//     with W(v) ≺ F: on F's own instance once F ended; on another store,
//     not degraded, once F's window ended plus the invalidation delay.
//  3. A store that is not degraded never returns a value v more than the
//     invalidation delay after a plain read that began once W(v) was
//     definitely in Redis found something else (the change that replaced v
//     is unknown, but it was pushed to every store).
//  4. At each quiescent point every store agrees with Redis within a short
//     window (checked by the run), and what Redis holds passes 1.
//  5. No tier exceeds its bounds; every lost write and conflict counted is
//     alerted; Close loses nothing once everything was replayed (checked by
//     the run).
//
// Timing assumptions, all generous for a loopback Redis: an abandoned
// command is delivered before the next quiescent point (faults are healed
// and nothing runs by then); an invalidation reaches a store with a working
// stream within invalidDelay (1 s; measured p99 is 9 ms); a store counts a
// drop within dropMargin (200 ms) of making it; a breaker opens within
// 100 ms of the failure that opens it.

type opKind uint8

const (
	opGet opKind = iota
	opSet
	opDelete
	opTouch
	opFlush // FLUSHDB from the plain client: every id deleted
	opWipe  // Redis killed and restarted empty: every id deleted
)

func (k opKind) String() string {
	return [...]string{"Get", "Set", "Delete", "Touch", "FLUSHDB", "RestartEmpty"}[k]
}

// forever is a window end that never comes; noTime is an absent maximum.
const (
	forever = time.Duration(math.MaxInt64)
	noTime  = time.Duration(math.MinInt64)
)

// histOp is one operation of the history.
type histOp struct {
	inst       int
	kind       opKind
	id         string // "" for FLUSHDB and empty restarts: every id
	value      string // Set: the value written; Get: the value read
	found      bool   // Get: a value was returned
	ok         bool   // no error (a Get's not-found is ok)
	err        string
	cancel     bool // run with a context cancelled after 0-2 ms
	start, end time.Duration

	// Filled by the checker.
	a, b     time.Duration // effect window on Redis
	definite bool          // the effect surely happened within [a, b]
}

// observation is one call of Store.Stats: what the checker uses of it.
type observation struct {
	store      int
	start, end time.Duration
	breaker    string
	pending    int    // PendingWrites + PendingDeletes
	stream     string // Invalidation
	drops      uint64 // PendingLost + ReplayConflicts
}

func newObservation(store int, start, end time.Duration, st tiered.Stats) observation {
	return observation{store: store, start: start, end: end, breaker: st.Breaker, pending: st.PendingWrites + st.PendingDeletes,
		stream: st.Invalidation, drops: st.PendingLost + st.ReplayConflicts}
}

func (o observation) healthy() bool { return o.breaker == "closed" && o.pending == 0 }

// interval is a span of time.
type interval struct{ start, end time.Duration }

// alertRec is an alert a store raised.
type alertRec struct {
	store int
	at    time.Duration
	alert telemetry.Alert
}

// quietPoint is a quiescent point: faults healed, nothing running, every
// store drained and agreeing with Redis; drops counts each store's
// PendingLost+ReplayConflicts then.
type quietPoint struct {
	at    time.Duration
	drops []uint64
}

// recorder collects a history from many goroutines.
type recorder struct {
	base time.Time

	mu         sync.Mutex // guards what follows
	ops        []histOp
	obs        []observation
	fails      [][]interval // per store: its Redis commands that failed
	alerts     []alertRec
	quiet      []quietPoint
	faults     []faultRec      // what the fault goroutine did, for failure reports
	violations []string        // found while running
	once       map[string]bool // keys of violations reported once
	disagreed  []*histOp       // the last store reads that disagreed with Redis at a quiescent point
}

func newRecorder(stores int) *recorder {
	return &recorder{base: time.Now(), fails: make([][]interval, stores)}
}

func (r *recorder) now() time.Duration { return time.Since(r.base) }

func (r *recorder) add(o histOp) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

func (r *recorder) observe(o observation) {
	r.mu.Lock()
	r.obs = append(r.obs, o)
	r.mu.Unlock()
}

func (r *recorder) alert(store int, a telemetry.Alert) {
	at := r.now()
	r.mu.Lock()
	r.alerts = append(r.alerts, alertRec{store, at, a})
	r.mu.Unlock()
}

// faultRec is a fault injected, for failure reports.
type faultRec struct {
	start, end time.Duration
	what       string
}

func (r *recorder) fault(start time.Duration, format string, args ...any) {
	end := r.now()
	r.mu.Lock()
	r.faults = append(r.faults, faultRec{start, end, fmt.Sprintf(format, args...)})
	r.mu.Unlock()
}

func (r *recorder) violation(format string, args ...any) {
	r.mu.Lock()
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// violationOnce records a violation the first time key is seen.
func (r *recorder) violationOnce(key, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.once[key] {
		return
	}
	if r.once == nil {
		r.once = make(map[string]bool)
	}
	r.once[key] = true
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

// failed records a Redis command of a store that failed: from then until
// the store is seen healthy, it may answer from its outage tier or serve
// stale copies. A missing key and the caller's own cancellation are not
// failures (the store ignores cancellation for reads and never degrades
// on it).
func (r *recorder) failed(store int, start time.Duration, err error) {
	if err == nil || errors.Is(err, goredis.Nil) || errors.Is(err, context.Canceled) {
		return
	}
	end := r.now()
	r.mu.Lock()
	r.fails[store] = append(r.fails[store], interval{start, end})
	r.mu.Unlock()
}

// failHook is a go-redis hook that reports a store's failed commands.
type failHook struct {
	rec   *recorder
	store int
}

func (f failHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (f failHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		start := f.rec.now()
		err := next(ctx, cmd)
		f.rec.failed(f.store, start, err)
		return err
	}
}

func (f failHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		start := f.rec.now()
		err := next(ctx, cmds)
		f.rec.failed(f.store, start, err)
		return err
	}
}

// checker checks a finished history.
type checker struct {
	seed   uint64
	names  []string        // of the instances: the stores, then plain, then redis
	stores int             // instances 0..stores-1 are stores
	grace  []time.Duration // per instance: how late other stores may see its changes
	ops    []*histOp
	obs    [][]observation // per store, by start
	quiet  []quietPoint
	faults []faultRec

	nextHealthy, nextDrained [][]int      // per store: index of the first such Stats at or after each, or len
	degraded                 [][]interval // per store, merged, by start
	byValue                  map[string]*histOp
	ids                      map[string]*idIndex
	found                    []string
	seen                     map[string]bool // violations already reported, by key
	disagreed                []histOp
}

// idIndex holds the definite changes of one id, per instance, sorted two
// ways with the running maximum of their start: byEnd by end (the change
// is visible on its own instance), byB by b (it is in Redis).
type idIndex struct {
	byEnd, byB [][]keyed
	deletes    []*histOp // delete-like operations, definite or not
	plainReads []*histOp // by start
	all        []*histOp // every operation on the id, for reports
}

type keyed struct {
	key, maxA time.Duration
	op        *histOp
}

func newChecker(seed uint64, names []string, stores int, grace []time.Duration, rec *recorder) *checker {
	c := &checker{seed: seed, names: names, stores: stores, grace: grace, quiet: rec.quiet,
		faults: rec.faults, byValue: make(map[string]*histOp), ids: make(map[string]*idIndex), seen: make(map[string]bool)}
	for i := range rec.ops {
		c.ops = append(c.ops, &rec.ops[i])
	}
	for _, o := range rec.disagreed {
		c.disagreed = append(c.disagreed, *o)
	}
	sort.SliceStable(c.ops, func(i, j int) bool { return c.ops[i].start < c.ops[j].start })
	c.obs = make([][]observation, stores)
	for _, o := range rec.obs {
		c.obs[o.store] = append(c.obs[o.store], o)
	}
	for _, l := range c.obs {
		sort.Slice(l, func(i, j int) bool { return l[i].start < l[j].start })
		healthy, drained := make([]int, len(l)+1), make([]int, len(l)+1)
		healthy[len(l)], drained[len(l)] = len(l), len(l)
		for i := len(l) - 1; i >= 0; i-- {
			healthy[i], drained[i] = healthy[i+1], drained[i+1]
			if l[i].healthy() {
				healthy[i] = i
			}
			if l[i].pending == 0 {
				drained[i] = i
			}
		}
		c.nextHealthy, c.nextDrained = append(c.nextHealthy, healthy), append(c.nextDrained, drained)
	}
	for s := range stores {
		c.degraded = append(c.degraded, c.degradedWindows(s, rec.fails[s]))
	}
	return c
}

// healthyAfter returns the end of the first Stats of store that began at
// or after t and found it healthy, or forever.
func (c *checker) healthyAfter(store int, t time.Duration) time.Duration {
	l := c.obs[store]
	if i := c.nextHealthy[store][sort.Search(len(l), func(i int) bool { return l[i].start >= t })]; i < len(l) {
		return l[i].end
	}
	return forever
}

// drainedAfter returns the end of the first Stats of store that began
// after t and found its outage tier empty, or forever.
func (c *checker) drainedAfter(store int, t time.Duration) time.Duration {
	l := c.obs[store]
	if i := c.nextDrained[store][sort.Search(len(l), func(i int) bool { return l[i].start > t })]; i < len(l) {
		return l[i].end
	}
	return forever
}

// dropsBefore returns the store's lost writes and conflicts counted by a
// Stats that ended before t (the latest begun), or 0.
func (c *checker) dropsBefore(store int, t time.Duration) uint64 {
	l := c.obs[store]
	i := sort.Search(len(l), func(i int) bool { return l[i].start >= t }) - 1
	for ; i >= 0 && l[i].end >= t; i-- {
	}
	if i < 0 {
		return 0
	}
	return l[i].drops
}

// dropsUnchanged reports whether w's store counted no lost write and no
// replay conflict from before w began until w surely could not be dropped
// any more: w's window ended (it was replayed, dropped or superseded), a
// margin passed for the count that follows a drop, and the store was seen
// healthy; or else until the next quiescent point.
func (c *checker) dropsUnchanged(w *histOp) bool {
	before := c.dropsBefore(w.inst, w.start)
	if w.b != forever {
		l := c.obs[w.inst]
		t := w.b + dropMargin
		if i := c.nextHealthy[w.inst][sort.Search(len(l), func(i int) bool { return l[i].start >= t })]; i < len(l) {
			return l[i].drops == before
		}
	}
	q := c.nextQuiet(w.end)
	return q != nil && q.drops[w.inst] == before
}

// dropMargin bounds the time between a store dropping a pending write and
// counting it (the count follows in the same goroutine).
const dropMargin = 200 * time.Millisecond

// nextQuiet returns the first quiescent point after t, or nil.
func (c *checker) nextQuiet(t time.Duration) *quietPoint {
	for i := range c.quiet {
		if c.quiet[i].at > t {
			return &c.quiet[i]
		}
	}
	return nil
}

// degradedWindows turns a store's failed commands into the windows in
// which it may serve from its outage tier or stale-if-error: from each
// failure until it is seen healthy (breaker closed, nothing pending) at
// least 100 ms after the failure ended (so that a breaker that opens just
// after the command returned is not missed).
func (c *checker) degradedWindows(store int, fails []interval) []interval {
	sort.Slice(fails, func(i, j int) bool { return fails[i].start < fails[j].start })
	var ws []interval
	for _, f := range fails {
		w := interval{f.start, c.healthyAfter(store, f.end+100*time.Millisecond)}
		if n := len(ws); n > 0 && w.start <= ws[n-1].end {
			ws[n-1].end = max(ws[n-1].end, w.end)
			continue
		}
		ws = append(ws, w)
	}
	return ws
}

func (c *checker) degradedDuring(store int, r *histOp) bool {
	ws := c.degraded[store]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].start >= r.end })
	return i > 0 && ws[i-1].end > r.start
}

// windows sets a, b and definite of every write-like operation.
func (c *checker) windows() {
	for _, o := range c.ops {
		switch o.kind {
		case opGet, opTouch:
			continue
		case opWipe:
			o.a, o.b, o.definite = o.start, o.end, true
			continue
		}
		o.a, o.b = o.start, forever
		switch {
		case !o.ok:
			if q := c.nextQuiet(o.end); q != nil {
				o.b = q.at
			}
		case o.inst >= c.stores: // the plain client: linearizable
			o.b, o.definite = o.end, true
		default:
			o.b = c.drainedAfter(o.inst, o.end)
			o.definite = o.kind == opDelete || (o.kind == opSet && c.dropsUnchanged(o))
		}
	}
}

// index builds the per-id indexes.
func (c *checker) index() {
	insts := len(c.names)
	var all []*histOp // FLUSHDB and empty restarts apply to every id
	for _, o := range c.ops {
		if o.kind == opFlush || o.kind == opWipe {
			all = append(all, o)
		}
	}
	perID := map[string][]*histOp{}
	for _, o := range c.ops {
		if o.id == "" {
			continue
		}
		perID[o.id] = append(perID[o.id], o)
		if o.kind == opSet {
			c.byValue[o.value] = o
		}
	}
	for id, ops := range perID {
		x := &idIndex{byEnd: make([][]keyed, insts), byB: make([][]keyed, insts)}
		x.all = append(append([]*histOp{}, ops...), all...)
		sort.SliceStable(x.all, func(i, j int) bool { return x.all[i].start < x.all[j].start })
		for _, o := range x.all {
			if o.kind == opGet && o.ok && o.inst >= c.stores {
				x.plainReads = append(x.plainReads, o)
			}
			if o.kind == opDelete || o.kind == opFlush || o.kind == opWipe {
				x.deletes = append(x.deletes, o)
			}
			if o.definite {
				x.byEnd[o.inst] = append(x.byEnd[o.inst], keyed{key: o.end, op: o})
				x.byB[o.inst] = append(x.byB[o.inst], keyed{key: o.b, op: o})
			}
		}
		for i := range insts {
			prefixMax(x.byEnd[i])
			prefixMax(x.byB[i])
		}
		c.ids[id] = x
	}
}

func prefixMax(ks []keyed) {
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	m := noTime
	for i := range ks {
		m = max(m, ks[i].op.a)
		ks[i].maxA = m
	}
}

// threshold is the time after which a change of inst surely follows e:
// e's window end, or e's end for an acknowledged operation of the same
// instance.
func threshold(e *histOp, inst int) time.Duration {
	if e.ok && e.inst == inst && e.kind != opWipe {
		return e.end
	}
	return e.b
}

// follower returns a definite change among ks whose key is before t and
// that surely follows e, or nil.
func follower(ks []keyed, t time.Duration, e *histOp, inst int) *histOp {
	n := sort.Search(len(ks), func(i int) bool { return ks[i].key >= t })
	if n == 0 || ks[n-1].maxA <= threshold(e, inst) {
		return nil
	}
	var best *histOp
	for _, k := range ks[:n] {
		if k.op.a > threshold(e, inst) && (best == nil || k.op.a > best.a) {
			best = k.op
		}
	}
	return best
}

// check runs every check of the history and returns the violations.
func (c *checker) check() []string {
	c.windows()
	c.index()
	for _, r := range c.ops {
		if r.kind != opGet || !r.ok {
			continue
		}
		x := c.ids[r.id]
		if r.found {
			w := c.byValue[r.value]
			switch {
			case w == nil || w.id != r.id:
				c.report("unknown:"+r.value, "%s read %q for %s, a value never written to it", c.names[r.inst], r.value, r.id)
				continue
			case w.start >= r.end:
				c.report("early:"+r.value, "%s read %q before its write began", c.names[r.inst], r.value)
				continue
			}
			if r.inst >= c.stores {
				c.plainValue(r, w, x)
			} else {
				c.storeValue(r, w, x)
			}
		} else if r.inst >= c.stores {
			c.plainAbsent(r, x)
		}
	}
	for _, d := range c.disagreed {
		x := c.ids[d.id]
		var r, w *histOp
		for _, o := range x.all {
			if o.inst == d.inst && o.kind == opGet && o.start == d.start {
				r = o
			}
		}
		if r == nil {
			continue
		}
		if r.found {
			w = c.byValue[r.value]
		}
		c.report("disagreed:"+d.id+c.names[d.inst], "trace of %s's last read of %s at the quiescent point where it disagreed with Redis:\n%s", c.names[d.inst], d.id, c.trace(x, r, w, nil))
	}
	return c.found
}

// strength says how many acknowledged store writes the checker could
// count on (definite), per store.
func (c *checker) strength() string {
	var b strings.Builder
	for s := range c.stores {
		acked, definite := 0, 0
		for _, o := range c.ops {
			if o.inst == s && o.kind == opSet && o.ok {
				acked++
				if o.definite {
					definite++
				}
			}
		}
		fmt.Fprintf(&b, "%s %d/%d ", c.names[s], definite, acked)
	}
	return strings.TrimSpace(b.String())
}

// plainValue: invariant 1 for a value read by the plain client.
func (c *checker) plainValue(r, w *histOp, x *idIndex) {
	for i := range c.names {
		if f := follower(x.byB[i], r.start, w, i); f != nil {
			c.report("plain:"+w.value, "plain read of %s returned %q although a definite %s replaced it before the read began (an acknowledged write or delete lost, or a value back from the dead)\n%s",
				r.id, w.value, f.kind, c.trace(x, r, w, f))
			return
		}
	}
}

// plainAbsent: invariant 1 for a read that found nothing.
func (c *checker) plainAbsent(r *histOp, x *idIndex) {
	ds := x.deletes // by start: the latest are the likeliest
	for i := sort.Search(len(ds), func(i int) bool { return ds[i].a >= r.end }) - 1; i >= 0; i-- {
		if c.candidate(ds[i], r.start, x) {
			return
		}
	}
	if c.candidate(nil, r.start, x) { // the initial state, absent
		return
	}
	var last *histOp
	for _, ks := range x.byB {
		for _, k := range ks {
			if k.key < r.start && k.op.kind == opSet && (last == nil || k.op.a > last.a) {
				last = k.op
			}
		}
	}
	c.report(fmt.Sprintf("absent:%s:%d", r.id, r.start/time.Second), "plain read of %s found nothing although every delete was surely followed by a definite write: an acknowledged write was lost\n%s",
		r.id, c.trace(x, r, last, nil))
}

// candidate reports whether e (nil: the initial absence) may be the last
// change of the id seen by a read beginning at t.
func (c *checker) candidate(e *histOp, t time.Duration, x *idIndex) bool {
	for i := range c.names {
		ks := x.byB[i]
		n := sort.Search(len(ks), func(j int) bool { return ks[j].key >= t })
		if n == 0 {
			continue
		}
		if e == nil || ks[n-1].maxA > threshold(e, i) {
			return false
		}
	}
	return true
}

// storeValue: invariant 2 for a value a store returned.
func (c *checker) storeValue(r, w *histOp, x *idIndex) {
	if f := follower(x.byEnd[r.inst], r.start, w, r.inst); f != nil {
		c.report("own:"+w.value+c.names[r.inst], "%s returned %q for %s after its own definite %s of it had ended\n%s",
			c.names[r.inst], w.value, r.id, f.kind, c.trace(x, r, w, f))
		return
	}
	if c.degradedDuring(r.inst, r) {
		return
	}
	if p := gone(x, w, r.start-invalidDelay); p != nil {
		c.report("gone:"+w.value+c.names[r.inst], "%s returned %q for %s more than %v after Redis was seen not to hold it any more, while it was not degraded (an invalidation missed: a stale or revoked session served)\n  P> %s\n%s",
			c.names[r.inst], w.value, r.id, invalidDelay, c.describe(p), c.trace(x, r, w, nil))
		return
	}
	for i := range c.names {
		if i == r.inst {
			continue
		}
		if f := follower(x.byB[i], r.start-c.grace[i], w, i); f != nil {
			c.report("stale:"+w.value+c.names[r.inst], "%s returned %q for %s more than %v after a definite %s on %s replaced it in Redis, while it was not degraded (a stale or revoked session served)\n%s",
				c.names[r.inst], w.value, r.id, c.grace[i], f.kind, c.names[i], c.trace(x, r, w, f))
			return
		}
	}
}

// gone returns a plain read that ended before t and shows that Redis no
// longer held the value of w: w surely took effect (definite) and ended
// its window before the read began, and the read returned something else.
// Values being unique, the value never comes back, and whatever replaced
// it was pushed to every store with a working stream.
func gone(x *idIndex, w *histOp, t time.Duration) *histOp {
	if !w.definite {
		return nil
	}
	ps := x.plainReads
	for i := sort.Search(len(ps), func(i int) bool { return ps[i].start > w.b }); i < len(ps) && ps[i].start < t; i++ {
		if p := ps[i]; p.end < t && (!p.found || p.value != w.value) {
			return p
		}
	}
	return nil
}

func (c *checker) report(key, format string, args ...any) {
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	msg := fmt.Sprintf(format, args...)
	if len(c.found) >= maxTraces { // the headline only
		msg, _, _ = strings.Cut(msg, "\n")
	}
	c.found = append(c.found, fmt.Sprintf("seed=%d: ", c.seed)+msg)
}

// maxTraces is how many violations are reported with their trace.
const maxTraces = 6

// trace prints the operations of the id around W and F (every write and
// delete, and the reads of R's instance), then R, the faults and the
// states of the stores involved.
func (c *checker) trace(x *idIndex, r, w, f *histOp) string {
	from, to := r.start-time.Second, r.end
	if w != nil {
		from = w.start - 100*time.Millisecond
	}
	if f != nil {
		from, to = min(from, f.start-100*time.Millisecond), max(w.end, f.end)+100*time.Millisecond
	}
	reads := to // R's instance's reads are shown until then
	if w != nil {
		reads = min(to, max(w.end, from)+500*time.Millisecond)
	}
	var lines []string
	context := 0 // lines not marked
	for _, o := range x.all {
		mark := "   "
		switch o {
		case r:
			mark = "R> "
		case w:
			mark = "W> "
		case f:
			mark = "F> "
		default:
			if o.end < from-300*time.Millisecond || o.start > to || (o.end < from && o.inst != r.inst) || // R's instance: a little more
				(o.kind == opGet && (o.inst != r.inst || o.start > reads)) {
				continue
			}
			context++
		}
		lines = append(lines, mark+c.describe(o))
	}
	var b strings.Builder
	skipped := 0
	for i, l := range lines {
		if context > 150 && !strings.HasSuffix(l[:3], "> ") && i >= 20 && i < len(lines)-130 {
			skipped++
			continue
		}
		if skipped > 0 {
			fmt.Fprintf(&b, "     … %d operations\n", skipped)
			skipped = 0
		}
		fmt.Fprintf(&b, "  %s\n", l)
	}
	for _, fr := range c.faults {
		if fr.end >= from-time.Second && fr.start <= r.end {
			fmt.Fprintf(&b, "  fault [%v, %v] %s\n", fmtDur(fr.start), fmtDur(fr.end), fr.what)
		}
	}
	if r.inst < c.stores {
		c.transitions(&b, r.inst, from-time.Second, to)
	}
	if f != nil && f.inst < c.stores && f.inst != r.inst {
		c.transitions(&b, f.inst, from-time.Second, to)
	}
	return b.String()
}

// transitions prints how a store's breaker, outage tier and stream changed
// between from and to, as its Stats saw them.
func (c *checker) transitions(b *strings.Builder, store int, from, to time.Duration) {
	last := ""
	for _, o := range c.obs[store] {
		if o.end < from || o.start > to {
			continue
		}
		now := fmt.Sprintf("breaker %s, pending %v, stream %s", o.breaker, o.pending > 0, o.stream)
		if now != last {
			fmt.Fprintf(b, "  %s at %v: %s\n", c.names[store], fmtDur(o.start), now)
			last = now
		}
	}
	for _, w := range c.degraded[store] {
		if w.end >= from && w.start <= to {
			fmt.Fprintf(b, "  %s degraded [%v, %v]\n", c.names[store], fmtDur(w.start), fmtDur(w.end))
		}
	}
}

func (c *checker) describe(o *histOp) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%-6s %s", c.names[o.inst], o.kind)
	if o.id != "" {
		fmt.Fprintf(&s, "(%s", o.id)
		if o.kind == opSet || o.found {
			fmt.Fprintf(&s, "=%s", shortValue(o.value))
		}
		s.WriteString(")")
	}
	fmt.Fprintf(&s, " [%v, %v]", fmtDur(o.start), fmtDur(o.end))
	if o.cancel {
		s.WriteString(" (its ctx cancelled within 2 ms)")
	}
	if !o.ok {
		fmt.Fprintf(&s, " err=%q", o.err)
	} else if o.kind == opGet && !o.found {
		s.WriteString(" not found")
	}
	if o.kind != opGet && o.kind != opTouch {
		fmt.Fprintf(&s, " window [%v, %v] definite=%v", fmtDur(o.a), fmtDur(o.b), o.definite)
	}
	return s.String()
}

func fmtDur(d time.Duration) string {
	if d == forever {
		return "∞"
	}
	return d.Round(100 * time.Microsecond).String()
}

func shortValue(v string) string {
	if i := strings.IndexByte(v, '|'); i >= 0 {
		return v[:i] + "|…"
	}
	return v
}

// TestHistoryChecker runs the checker on small histories: those that no
// correct store can produce must be reported, those that a correct store
// can produce (concurrency, replay after an outage, failed writes, stale
// reads while degraded) must not. Stores A and B, the plain client, Redis.
func TestHistoryChecker(t *testing.T) {
	const (
		A, B, plain, redis = 0, 1, 2, 3
	)
	s := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	set := func(inst int, v string, start, end float64) histOp {
		return histOp{inst: inst, kind: opSet, id: "x", value: v, ok: true, start: s(start), end: s(end)}
	}
	del := func(inst int, start, end float64) histOp {
		return histOp{inst: inst, kind: opDelete, id: "x", ok: true, start: s(start), end: s(end)}
	}
	get := func(inst int, v string, start, end float64) histOp {
		return histOp{inst: inst, kind: opGet, id: "x", value: v, found: v != "", ok: true, start: s(start), end: s(end)}
	}
	failed := func(o histOp) histOp { o.ok, o.err = false, "i/o timeout"; return o }
	type pending struct {
		store    int
		from, to float64 // the store's outage tier holds something
	}
	type failure struct {
		store    int
		from, to float64
	}
	for _, tc := range []struct {
		name    string
		ops     []histOp
		pending []pending
		fails   []failure
		want    string // a word of the violation, "" for noTime
	}{
		{name: "an acknowledged write lost", want: "found nothing",
			ops: []histOp{set(plain, "v1", 1, 2), get(plain, "", 3, 4)}},
		{name: "a delete concurrent with the write", ops: []histOp{set(plain, "v1", 1, 2), del(plain, 1.5, 3), get(plain, "", 4, 5)}},
		{name: "a write concurrent with the delete", ops: []histOp{set(plain, "v1", 1, 2), del(plain, 1.5, 3), get(plain, "v1", 4, 5)}},
		{name: "a deleted value back", want: "replaced it before the read began",
			ops: []histOp{set(plain, "v1", 1, 2), del(plain, 2.5, 3), get(plain, "v1", 4, 5)}},
		{name: "a failed write may land", ops: []histOp{set(plain, "v1", 1, 2), failed(set(plain, "v2", 3, 4)), get(plain, "v2", 5, 6), get(plain, "v1", 7, 8)}},
		{name: "an outage write replayed after another's delete",
			ops:     []histOp{set(A, "v1", 1, 2), del(plain, 3, 3.5), get(plain, "v1", 6, 7)},
			pending: []pending{{A, 1.5, 5}}},
		{name: "a write of a store followed by its own delete comes back", want: "replaced it before the read began",
			ops:     []histOp{set(A, "v1", 1, 2), del(A, 3, 3.5), get(plain, "v1", 6, 7)},
			pending: []pending{{A, 1.5, 5}}},
		{name: "a store serves its own deleted value", want: "its own definite Delete",
			ops: []histOp{set(plain, "v1", 0.5, 0.8), del(A, 1, 2), get(A, "v1", 2.5, 2.6)}},
		{name: "a store serves a value replaced elsewhere", want: "more than 1s after a definite Set on plain",
			ops: []histOp{set(plain, "v1", 1, 2), set(plain, "v2", 3, 4), get(B, "v1", 5.5, 5.6)}},
		{name: "within the invalidation delay", ops: []histOp{set(plain, "v1", 1, 2), set(plain, "v2", 3, 4), get(B, "v1", 4.5, 4.6)}},
		{name: "stale while degraded", ops: []histOp{set(plain, "v1", 1, 2), set(plain, "v2", 3, 4), get(B, "v1", 5.5, 5.6)},
			fails: []failure{{B, 5.4, 5.45}}},
		{name: "stale until healthy again", ops: []histOp{set(plain, "v1", 1, 2), set(plain, "v2", 3, 4), get(B, "v1", 5.5, 5.6)},
			fails: []failure{{B, 4.5, 4.6}}, pending: []pending{{B, 4.5, 5.7}}},
		{name: "an unknown change missed", want: "seen not to hold it",
			ops:     []histOp{set(A, "v1", 1, 2), del(B, 0.9, 1.2), get(plain, "", 3, 3.1), get(A, "v1", 4.5, 4.6)},
			pending: []pending{{B, 1, 2.5}}},
		{name: "a value never written", want: "never written", ops: []histOp{get(B, "v9", 1, 2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(2)
			rec.ops = append([]histOp{{inst: redis, kind: opWipe, ok: true}}, tc.ops...)
			for store := range 2 {
				for at := 0.0; at < 10; at += 0.05 {
					o := observation{store: store, start: s(at), end: s(at + 0.001), breaker: "closed", stream: "tracking"}
					for _, p := range tc.pending {
						if p.store == store && at >= p.from && at < p.to {
							o.pending, o.breaker = 1, "open"
						}
					}
					rec.obs = append(rec.obs, o)
				}
			}
			for _, f := range tc.fails {
				rec.fails[f.store] = append(rec.fails[f.store], interval{s(f.from), s(f.to)})
			}
			rec.quiet = []quietPoint{{at: s(9.5), drops: []uint64{0, 0}}}
			grace := []time.Duration{time.Second, time.Second, time.Second, time.Second}
			found := newChecker(1, []string{"A", "B", "plain", "redis"}, 2, grace, rec).check()
			switch {
			case tc.want == "" && len(found) > 0:
				t.Errorf("a correct history was reported:\n%s", strings.Join(found, "\n"))
			case tc.want != "" && (len(found) == 0 || !strings.Contains(found[0], tc.want)):
				t.Errorf("found %q; want a violation saying %q", found, tc.want)
			}
		})
	}
}
