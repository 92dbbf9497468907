package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// The randomized fault test (issue 9, section G). Three stores and a plain
// go-redis client run random Get/Set/Delete/Touch on a few ids from
// faultWorkers goroutines, while faults are injected at random, one at a
// time: kill -9 and restart (with its data, or empty), SIGSTOP/SIGCONT,
// store C cut off alone by a proxy, the invalidation connections killed
// (CLIENT KILL TYPE pubsub), FLUSHDB, a list put under the prefix by
// another client (WRONGTYPE), and later a packet held past OpTimeout
// (see faultHold). Chaos phases of a few seconds, some ending in the middle
// of a fault, alternate with quiescent checks; history_test.go checks the
// whole history at the end.
//
// A seed chooses the variant (broadcast or per-key tracking, or publish
// invalidation; B's local tier on or off) and every random choice: the sequence of faults and of
// operations, not their timing, so a seed narrows a failure down but may
// not replay it exactly. Every failure message starts with the seed.
//
//	SESSIONTIER_FAULT_SEED=n          replay a run's choices
//	SESSIONTIER_FAULT_DURATION=20s    how long (at most 60s under CI=true)

const (
	faultIDs      = 8      // ids in constant use, and one written by C only:
	rareID        = "rare" // a list put there by another client stays a while
	faultWorkers  = 4
	faultPrefix   = "session:"
	largeValue    = 5000                   // bytes: more than A's and C's outage tiers hold
	plainTimeout  = 250 * time.Millisecond // bound of the plain client's commands
	invalidDelay  = time.Second            // how late an invalidation may reach a store
	healTimeout   = 20 * time.Second       // for every store to recover after the faults
	agreeTimeout  = 3 * time.Second        // for every store to agree with Redis
	monitorPeriod = 2 * time.Millisecond
	cutStore      = 2 // C, behind the proxy
)

var storeNames = []string{"A", "B", "C"}

// faultParams reads the seed and the duration from the environment.
func faultParams(t *testing.T) (seed uint64, d time.Duration) {
	t.Helper()
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("SESSIONTIER_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SESSIONTIER_FAULT_SEED=%q: %v", s, err)
		}
	}
	d = 20 * time.Second
	if s := os.Getenv("SESSIONTIER_FAULT_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("seed=%d: SESSIONTIER_FAULT_DURATION=%q: %v", seed, s, err)
		}
	}
	if os.Getenv("CI") == "true" && d > time.Minute {
		d = time.Minute
	}
	return seed, d
}

// faultRun is one run of the randomized fault test.
type faultRun struct {
	t       *testing.T
	seed    uint64
	publish bool // InvalidationPublish; the plain client then only reads
	perKey  bool // InvalidationPerKey; otherwise, broadcast tracking (InvalidationTracking)
	ttl     time.Duration

	srv      *redistest.Server
	proxy    *redistest.Proxy
	aofDir   string
	plain    *goredis.Client
	opts     []tiered.Options
	stores   []*tiered.Store
	ids      []string
	rec      *recorder
	seq      atomic.Uint64   // makes every value unique
	reported map[string]bool // disagreements at quiescent points already reported
	stuck    bool            // the run ended without a quiescent point
}

func (r *faultRun) plainInst() int { return len(r.stores) }
func (r *faultRun) faultInst() int { return len(r.stores) + 1 }

// TestRandomFaults is the randomized fault test described above.
func TestRandomFaults(t *testing.T) {
	seed, d := faultParams(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	r := &faultRun{t: t, seed: seed, publish: rng.IntN(3) == 0, ttl: max(10*time.Minute, 3*d),
		rec: newRecorder(len(storeNames)), reported: make(map[string]bool)}
	localOffB := rng.IntN(3) == 0
	r.perKey = !r.publish && rng.IntN(2) == 0
	t.Logf("seed=%d duration=%v publish=%v perKey=%v localOffB=%v (replay: SESSIONTIER_FAULT_SEED=%d)", seed, d, r.publish, r.perKey, localOffB, seed)

	r.srv = redistest.StartDurable(t)
	r.proxy = redistest.NewProxy(t, r.srv.Addr)
	r.plain = goredis.NewClient(&goredis.Options{Addr: r.srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { r.plain.Close() })
	r.aofDir = r.appendOnlyDir()
	for i := range faultIDs {
		r.ids = append(r.ids, fmt.Sprintf("f%d", i))
	}
	r.ids = append(r.ids, rareID)
	for i, name := range storeNames {
		addr := r.srv.Addr
		if i == cutStore {
			addr = r.proxy.Addr
		}
		client := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		client.AddHook(failHook{r.rec, i})
		t.Cleanup(func() { client.Close() })
		opts := r.storeOptions(i, localOffB && name == "B")
		s, err := tiered.New(client, opts)
		if err != nil {
			t.Fatalf("seed=%d: New: %v", seed, err)
		}
		t.Cleanup(func() { s.Close() })
		r.opts, r.stores = append(r.opts, opts), append(r.stores, s)
	}
	for _, s := range r.stores {
		waitStream(t, s)
	}
	r.rec.add(histOp{inst: r.faultInst(), kind: opWipe, ok: true}) // Redis starts empty

	stopMonitor := r.monitor()
	defer stopMonitor() // also on t.Fatal
	end := time.Now().Add(d)
	for phase := 1; time.Now().Before(end); phase++ {
		chaos := min(time.Until(end), time.Duration(1500+rng.IntN(2500))*time.Millisecond)
		r.chaos(rng, phase, chaos)
		if !r.quiesce(phase) {
			break
		}
	}
	stopMonitor()
	r.close()
	r.finish()
}

// storeOptions: small timeouts and breaker settings so that outages are
// found and healed fast. A's tiers hold fewer entries than the ids in use,
// so that their bounds are reached and outage writes are lost (counted).
// B and C hold every id, so that an outage write replays onto what they
// saw; C, which is cut off alone, cannot hold a large value in its outage
// tier and keeps few tombstones.
func (r *faultRun) storeOptions(i int, localOff bool) tiered.Options {
	o := tiered.Options{
		OpTimeout: 50 * time.Millisecond,
		Breaker:   breaker.Settings{Failures: 2, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 500 * time.Millisecond},
		Local:     lru.Limits{MaxEntries: 16, MaxBytes: 16 << 10, TTL: time.Minute},
		Fallback:  lru.Limits{MaxEntries: 64, MaxBytes: 64 << 10},
		Telemetry: telemetry.Options{OnAlert: func(a telemetry.Alert) { r.rec.alert(i, a) }},
	}
	switch {
	case r.publish:
		o.Invalidation = tiered.InvalidationPublish
	case r.perKey:
		o.Invalidation = tiered.InvalidationPerKey
	default: // not InvalidationAuto, which is per-key tracking
		o.Invalidation = tiered.InvalidationTracking
	}
	switch i {
	case 0:
		o.Local.MaxEntries = 6
		o.Fallback = lru.Limits{MaxEntries: 4, MaxBytes: 4 * (lru.EntryOverhead + 40)}
	case cutStore:
		o.Fallback = lru.Limits{MaxEntries: 16, MaxBytes: 16 * (lru.EntryOverhead + 40)}
		o.MaxTombstones = 3
	}
	if localOff {
		o.Local = lru.Limits{MaxEntries: -1}
	}
	return o
}

// appendOnlyDir returns where the server keeps its append-only file, which
// a restart "empty" removes.
func (r *faultRun) appendOnlyDir() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	dir, err := r.plain.ConfigGet(ctx, "dir").Result()
	if err != nil {
		r.t.Fatalf("seed=%d: CONFIG GET dir: %v", r.seed, err)
	}
	name, err := r.plain.ConfigGet(ctx, "appenddirname").Result()
	if err != nil || dir["dir"] == "" || name["appenddirname"] == "" {
		r.t.Fatalf("seed=%d: CONFIG GET appenddirname: %v %v", r.seed, name, err)
	}
	return filepath.Join(dir["dir"], name["appenddirname"])
}

// monitor calls Stats on every store all the time, records it and checks
// the bounds of the tiers. The returned func stops it (idempotent).
func (r *faultRun) monitor() (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			default:
			}
			for i := range r.stores {
				r.observe(i)
			}
			time.Sleep(monitorPeriod) // the sampling period, not a wait for a condition
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited }) }
}

func (r *faultRun) observe(i int) tiered.Stats {
	start := r.rec.now()
	st := r.stores[i].Stats()
	r.rec.observe(newObservation(i, start, r.rec.now(), st))
	o := r.opts[i]
	tombs := o.MaxTombstones
	if tombs == 0 {
		tombs = tiered.DefaultMaxTombstones
	}
	switch {
	case !o.Local.Disabled() && (st.LocalEntries > o.Local.MaxEntries || st.LocalBytes > o.Local.MaxBytes):
		r.rec.violationOnce("local"+storeNames[i], "seed=%d: %s's local tier exceeds its bounds: %d entries, %d bytes; limits %d, %d", r.seed, storeNames[i], st.LocalEntries, st.LocalBytes, o.Local.MaxEntries, o.Local.MaxBytes)
	case st.FallbackEntries > o.Fallback.MaxEntries || st.FallbackBytes > o.Fallback.MaxBytes:
		r.rec.violationOnce("outage"+storeNames[i], "seed=%d: %s's outage tier exceeds its bounds: %d entries, %d bytes; limits %d, %d", r.seed, storeNames[i], st.FallbackEntries, st.FallbackBytes, o.Fallback.MaxEntries, o.Fallback.MaxBytes)
	case st.PendingDeletes > tombs:
		r.rec.violationOnce("tombs"+storeNames[i], "seed=%d: %s holds %d tombstones; limit %d", r.seed, storeNames[i], st.PendingDeletes, tombs)
	}
	return st
}

// chaos runs random operations from faultWorkers goroutines while this
// goroutine injects faults, for d; every fault is healed when it returns.
func (r *faultRun) chaos(rng *rand.Rand, phase int, d time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range faultWorkers {
		wrng := rand.New(rand.NewPCG(r.seed, uint64(phase*faultWorkers+w+2)))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.randomOp(wrng)
			}
		})
	}
	var once sync.Once
	stopWorkers := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopWorkers() // also on t.Fatal in a fault
	until := time.Now().Add(d)
	for {
		gap := time.Duration(20+rng.IntN(300)) * time.Millisecond
		if time.Now().Add(gap).After(until) {
			time.Sleep(time.Until(until)) // the chaos phase's length
			if rng.IntN(2) == 0 {
				// The phase ends during a fault, healed once the workers
				// stopped: what recovery does (a replay) is the last
				// change before the quiescent check, not hidden by later
				// writes.
				r.randomFault(rng, stopWorkers)
			}
			return
		}
		time.Sleep(gap) // time between faults
		r.randomFault(rng, func() {})
	}
}

func (r *faultRun) value(inst int, large bool) string {
	v := fmt.Sprintf("v%d-%s", r.seq.Add(1), r.instName(inst))
	if large {
		v += "|" + strings.Repeat("x", largeValue)
	}
	return v
}

func (r *faultRun) instName(i int) string {
	switch {
	case i < len(storeNames):
		return storeNames[i]
	case i == r.plainInst():
		return "plain"
	}
	return "redis"
}

func (r *faultRun) randomOp(rng *rand.Rand) {
	inst := rng.IntN(len(r.stores) + 1)
	id := r.ids[rng.IntN(faultIDs)]
	p := rng.IntN(100) // < 45 reads
	if rng.IntN(100) < 3 {
		id = rareID
		if inst != cutStore {
			p = 0 // only C, which is cut off most, writes it
		}
	}
	if inst == r.plainInst() {
		if r.publish {
			p = 0 // stores in publish mode cannot see other clients' writes
		}
		r.plainOp(id, p)
		return
	}
	ctx := context.Background()
	o := histOp{inst: inst, id: id}
	if rng.IntN(100) < 3 { // the caller gives up
		c, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
		defer timer.Stop()
		defer cancel()
		ctx, o.cancel = c, true
	}
	s := r.stores[inst]
	var err error
	switch {
	case p < 45:
		o.kind, o.start = opGet, r.rec.now()
		var v []byte
		v, err = s.Get(ctx, id)
		o.value, o.found = string(v), err == nil
		if errors.Is(err, tiered.ErrNotFound) {
			err = nil
		}
	case p < 75:
		o.kind, o.value = opSet, r.value(inst, rng.IntN(50) == 0)
		o.start = r.rec.now()
		err = s.Set(ctx, id, []byte(o.value), r.ttl)
	case p < 88:
		o.kind, o.start = opDelete, r.rec.now()
		err = s.Delete(ctx, id)
	default:
		o.kind, o.start = opTouch, r.rec.now()
		err = s.Touch(ctx, id, r.ttl)
	}
	o.end = r.rec.now()
	r.done(&o, err)
}

func (r *faultRun) plainOp(id string, p int) histOp {
	ctx, cancel := context.WithTimeout(context.Background(), plainTimeout)
	defer cancel()
	key := faultPrefix + id
	o := histOp{inst: r.plainInst(), id: id}
	var err error
	switch {
	case p < 45:
		o.kind, o.start = opGet, r.rec.now()
		o.value, err = r.plain.Get(ctx, key).Result()
		o.found = err == nil
		if errors.Is(err, goredis.Nil) {
			err = nil
		}
	case p < 75:
		o.kind, o.value = opSet, r.value(o.inst, false)
		o.start = r.rec.now()
		err = r.plain.Set(ctx, key, o.value, r.ttl).Err()
	case p < 88:
		o.kind, o.start = opDelete, r.rec.now()
		err = r.plain.Del(ctx, key).Err()
	default:
		o.kind, o.start = opTouch, r.rec.now()
		err = r.plain.PExpire(ctx, key, r.ttl).Err()
	}
	o.end = r.rec.now()
	r.done(&o, err)
	return o
}

func (r *faultRun) done(o *histOp, err error) {
	o.ok = err == nil
	if err != nil {
		o.err = err.Error()
	}
	r.rec.add(*o)
}

type faultKind int

const (
	faultKill faultKind = iota
	faultPause
	faultCut
	faultKillStream
	faultFlush
	faultWrongType
	faultHold
	numFaults
)

// randomFault injects a fault and heals it, calling beforeHeal just
// before it heals.
func (r *faultRun) randomFault(rng *rand.Rand, beforeHeal func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hold := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo)) * time.Millisecond }
	start := r.rec.now()
	switch kind := faultKind(rng.IntN(int(numFaults))); kind {
	case faultKill:
		r.srv.Kill()
		time.Sleep(hold(20, 400)) // Redis stays down
		empty := rng.IntN(2) == 0
		if empty {
			if err := os.RemoveAll(r.aofDir); err != nil {
				r.t.Fatalf("seed=%d: removing the append-only file: %v", r.seed, err)
			}
		}
		beforeHeal()
		wiped := r.rec.now() // nothing is served before the new process starts
		r.srv.Restart()
		if empty {
			r.rec.add(histOp{inst: r.faultInst(), kind: opWipe, ok: true, start: start, end: wiped})
		}
		r.rec.fault(start, "kill -9, restart (empty: %v)", empty)
	case faultPause:
		r.srv.Pause()
		time.Sleep(hold(20, 400)) // Redis stays frozen
		beforeHeal()
		r.srv.Resume()
		r.rec.fault(start, "SIGSTOP, SIGCONT")
	case faultCut:
		r.proxy.Cut()
		time.Sleep(hold(20, 800)) // C stays cut off
		if !r.publish && rng.IntN(2) == 0 {
			r.wrongType(ctx, rareID) // what C wrote of it meanwhile replays onto a list
			time.Sleep(hold(10, 200))
		}
		beforeHeal()
		r.proxy.Restore()
		r.rec.fault(start, "C cut off")
	case faultKillStream:
		beforeHeal()
		err := r.plain.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
		r.rec.fault(start, "CLIENT KILL TYPE pubsub: %v", err)
	case faultFlush:
		if r.publish {
			return // stores in publish mode cannot see it
		}
		beforeHeal()
		err := r.plain.FlushDB(ctx).Err()
		r.rec.add(histOp{inst: r.plainInst(), kind: opFlush, ok: err == nil, err: fmt.Sprint(err), start: start, end: r.rec.now()})
		r.rec.fault(start, "FLUSHDB: %v", err)
	case faultWrongType:
		if r.publish {
			return // stores in publish mode cannot see it
		}
		beforeHeal()
		r.wrongType(ctx, r.ids[rng.IntN(len(r.ids))])
	case faultHold:
		// A command of C's held in the network past OpTimeout, then
		// delivered (issue 9, item 3): C gives up on its next SET, which
		// lands later, possibly after newer writes. The checker needs no
		// change: a write landing late is what it must catch, as a value
		// back after a newer definite change.
		h := r.proxy.Hold([]byte("\r\nset\r\n"))
		time.Sleep(hold(60, 400))
		beforeHeal()
		h.Release()
		r.rec.fault(start, "held a SET of C's")
	}
}

// wrongType makes another client keep a list under the prefix: a key of
// another type for id, until a store or a worker sets or deletes it. It is
// a write whose value no read can return (reads fail with WRONGTYPE).
func (r *faultRun) wrongType(ctx context.Context, id string) {
	o := histOp{inst: r.plainInst(), kind: opSet, id: id, value: fmt.Sprintf("list%d", r.seq.Add(1)), start: r.rec.now()}
	_, err := r.plain.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, faultPrefix+o.id) // RPUSH fails on a string
		p.RPush(ctx, faultPrefix+o.id, o.value)
		return nil
	})
	o.end = r.rec.now()
	r.done(&o, err)
	r.rec.fault(o.start, "DEL+RPUSH %s (a list: WRONGTYPE for GET): %v", o.id, err)
}

// quiesce waits for every store to recover (breaker closed, nothing
// pending, stream confirmed) and to agree with Redis on every id; it
// records the quiescent point. It returns false if the run cannot go on.
func (r *faultRun) quiesce(phase int) bool {
	deadline := time.Now().Add(healTimeout)
	for {
		var sick []string
		for i := range r.stores {
			st := r.observe(i)
			stream := st.Invalidation == "tracking" || st.Invalidation == "per-key" || st.Invalidation == "publish" || (st.Invalidation == "off" && r.opts[i].Local.Disabled())
			if st.Breaker != "closed" || st.PendingWrites+st.PendingDeletes > 0 || !stream {
				sick = append(sick, fmt.Sprintf("%s %+v", storeNames[i], st))
			}
		}
		if len(sick) == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.rec.violation("seed=%d: after chaos phase %d the faults were healed, yet within %v these stores did not recover (breaker closed, nothing pending, stream confirmed):\n  %s\n  keys in Redis: %s",
				r.seed, phase, healTimeout, strings.Join(sick, "\n  "), r.keyTypes())
			r.stuck = true
			return false
		}
		time.Sleep(5 * time.Millisecond) // polling the stores' recovery
	}
	deadline = time.Now().Add(agreeTimeout)
	for {
		diff, reads := r.compare()
		if len(diff) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var fresh []string // each disagreement is reported once: a stale copy may live for Local.TTL
			for i, d := range diff {
				if !r.reported[d] {
					r.reported[d] = true
					fresh = append(fresh, d)
					if reads[i] != nil {
						r.rec.mu.Lock()
						r.rec.disagreed = append(r.rec.disagreed, reads[i])
						r.rec.mu.Unlock()
					}
				}
			}
			if len(fresh) > 0 {
				r.rec.violation("seed=%d: after chaos phase %d, with every store recovered, these reads still disagreed with Redis after %v (a stale or revoked session served):\n  %s",
					r.seed, phase, agreeTimeout, strings.Join(fresh, "\n  "))
			}
			break // still a quiescent point: faults healed, nothing running, nothing pending
		}
		time.Sleep(10 * time.Millisecond) // polling for the stores to agree
	}
	q := quietPoint{}
	for i := range r.stores {
		st := r.observe(i)
		q.drops = append(q.drops, st.PendingLost+st.ReplayConflicts)
	}
	q.at = r.rec.now()
	r.rec.mu.Lock()
	r.rec.quiet = append(r.rec.quiet, q)
	r.rec.mu.Unlock()
	return true
}

// compare reads every id from Redis and from every store, recording the
// reads, and returns the disagreements with the store reads concerned.
func (r *faultRun) compare() (diff []string, reads []*histOp) {
	for _, id := range r.ids {
		want := r.plainOp(id, 0)
		if strings.HasPrefix(want.err, "WRONGTYPE") { // a list: every store must fail too
			for i, s := range r.stores {
				o := histOp{inst: i, kind: opGet, id: id, start: r.rec.now()}
				v, err := s.Get(context.Background(), id)
				o.end, o.value, o.found = r.rec.now(), string(v), err == nil
				r.done(&o, err)
				if o.ok {
					diff, reads = append(diff, fmt.Sprintf("%s Get(%s) = %q, nil; Redis holds a list", storeNames[i], id, shortValue(o.value))), append(reads, &o)
				}
			}
			continue
		}
		if !want.ok {
			diff, reads = append(diff, fmt.Sprintf("plain GET %s failed: %s", id, want.err)), append(reads, nil)
			continue
		}
		for i, s := range r.stores {
			o := histOp{inst: i, kind: opGet, id: id, start: r.rec.now()}
			v, err := s.Get(context.Background(), id)
			o.end, o.value, o.found = r.rec.now(), string(v), err == nil
			if errors.Is(err, tiered.ErrNotFound) {
				err = nil
			}
			r.done(&o, err)
			if !o.ok || o.found != want.found || o.value != want.value {
				reads = append(reads, &o)
				diff = append(diff, fmt.Sprintf("%s Get(%s) = %q found=%v err=%q; Redis holds %q found=%v", storeNames[i], id, shortValue(o.value), o.found, o.err, shortValue(want.value), want.found))
			}
		}
	}
	return diff, reads
}

// keyTypes lists the type of every id's key in Redis.
func (r *faultRun) keyTypes() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var types []string
	for _, id := range r.ids {
		types = append(types, id+"="+r.plain.Type(ctx, faultPrefix+id).Val())
	}
	return strings.Join(types, " ")
}

// close closes the stores: after the last quiescent point nothing is
// pending, so Close must report no loss.
func (r *faultRun) close() {
	for i, s := range r.stores {
		if err := s.Close(); err != nil && !r.stuck {
			r.rec.violation("seed=%d: %s.Close() = %v; want nil: nothing was pending", r.seed, storeNames[i], err)
		}
	}
}

// finish checks the alerts against the counters and the history, and
// reports every violation with the seed.
func (r *faultRun) finish() {
	t := r.t
	for i, s := range r.stores {
		st := s.Stats()
		var lost, conflicts int64
		for _, a := range r.rec.alerts {
			if a.store != i {
				continue
			}
			switch a.alert.Kind {
			case telemetry.AlertPendingLost:
				lost += a.alert.Count
			case telemetry.AlertReplayConflict:
				conflicts += a.alert.Count
			}
		}
		if uint64(lost) < st.PendingLost {
			r.rec.violation("seed=%d: %s counted %d lost writes but its pending_lost alerts count %d", r.seed, storeNames[i], st.PendingLost, lost)
		}
		if uint64(conflicts) < st.ReplayConflicts {
			r.rec.violation("seed=%d: %s counted %d replay conflicts but its replay_conflict alerts count %d", r.seed, storeNames[i], st.ReplayConflicts, conflicts)
		}
		t.Logf("seed=%d: %s: %+v", r.seed, storeNames[i], st)
	}
	names := append(append([]string{}, storeNames...), "plain", "redis")
	grace := make([]time.Duration, len(names))
	for i := range grace {
		grace[i] = invalidDelay
	}
	c := newChecker(r.seed, names, len(r.stores), grace, r.rec)
	violations := append(r.rec.violations, c.check()...)
	t.Logf("seed=%d: %d operations, %d quiescent points, %d faults; definite acknowledged store writes: %s", r.seed, len(r.rec.ops), len(r.rec.quiet), len(r.rec.faults), c.strength())
	for i, v := range violations {
		if i == 20 {
			t.Errorf("seed=%d: %d more violations", r.seed, len(violations)-i)
			break
		}
		t.Error(v)
	}
}
