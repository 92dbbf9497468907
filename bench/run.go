// Package bench provides sessiontier's benchmark suite: workloads run
// against sessiontier and its peers on the same Redis, and a report with
// plots. The command `sessiontier bench` drives it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what a suite run measures.
type Config struct {
	Duration   time.Duration // per workload and target
	Workers    int
	Sessions   int
	ValueSize  int
	Workloads  []string      // of W1..W6
	Targets    []string      // names in Targets
	OutagePart time.Duration // W4: each of before, during and after
	Trials     int           // W5 revocations per target
	Budget     int64         // bytes every local cache may hold
	Seed       int64         // orders the targets of each workload
	Runs       int           // repetitions of every workload, interleaved; 0: 1
	Rate       int           // W1..W3 open loop at this many requests per second in all; 0: closed loop
	CheckState bool          // hash what Redis holds at each start (see State), not only count it
	Instances  []int         // W6: the numbers of instances attached, a point each; nil: DefaultInstances
}

// Result is one target under one workload.
type Result struct {
	Target, Workload string
	Ops, Errors      int64
	Elapsed          time.Duration
	P50, P99, P999   time.Duration
	CmdsPerOp        float64 // commands Redis processed per operation; -1: unknown
	RedisCPU         float64 // Redis's CPU time (INFO cpu) per second of the run: the share of a core it was busy; -1: unknown
	RedisCPUPerOp    float64 // Redis's CPU time per operation, in seconds; -1: unknown
	RoundTripsPerOp  float64 // writes to the target's connections per operation; -1: unknown
	AllocsPerOp      float64 // the harness's own included (see Report.HarnessAllocs)
	PeakHeap         uint64  // HeapInuse, sampled every 50 ms: follows the allocation rate too
	LiveHeap         uint64  // HeapAlloc after a GC at the end, the target still open, less HeapAlloc after a GC at the start
	Start            State   // what Redis held when the target started
	Run              int     // which repetition, from 1
}

// Throughput returns operations per second.
func (r Result) Throughput() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

// Workloads describes W1..W6 for the report.
var Workloads = map[string]string{
	"W1": "read-mostly: Zipf(1.1) over the sessions, 95% reads, 5% writes",
	"W2": "read-only: Zipf(1.1), 100% reads",
	"W3": "login storm: 100% writes of new sessions",
	"W4": "outage timeline: W1, Redis cut off, back",
	"W5": "revocation: Delete on one instance, time until another answers not-found",
	"W6": "fan-out: Redis's write throughput with sessiontier instances attached, broadcast against per-key invalidation",
}

func sessionID(i int) string { return fmt.Sprintf("bench-%07d", i) }

// sessionIDs returns the ids of n sessions, built once: the timed loop
// picks from it, so that formatting an id is not part of what is measured.
func sessionIDs(n int) []string {
	idsMu.Lock()
	defer idsMu.Unlock()
	if len(ids) != n {
		ids = make([]string, n)
		for i := range ids {
			ids[i] = sessionID(i)
		}
	}
	return ids
}

var (
	idsMu sync.Mutex // guards ids
	ids   []string
)

// populate writes every session to Redis once, pipelined.
func populate(ctx context.Context, s *Server, cfg Config) error {
	value := make([]byte, cfg.ValueSize)
	p := s.admin.Pipeline()
	for i := range cfg.Sessions {
		p.Set(ctx, key(sessionID(i)), value, time.Hour)
		if p.Len() == 1000 || i == cfg.Sessions-1 {
			if _, err := p.Exec(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// warm reads every session once through t (a target without Redis gets
// them written), so that every cache starts full.
func warm(ctx context.Context, t Target, info TargetInfo, cfg Config) error {
	value := make([]byte, cfg.ValueSize)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < cfg.Sessions; i += 16 {
				var err error
				if info.Name == "golang-lru" {
					err = t.Set(ctx, sessionID(i), value, time.Hour)
				} else {
					_, err = t.Get(ctx, sessionID(i))
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// picker returns a per-worker Zipf(1.1) source of session indexes.
func picker(seed int64, n int) func() int {
	z := rand.NewZipf(rand.New(rand.NewSource(seed)), 1.1, 1, uint64(n-1))
	return func() int { return int(z.Uint64()) }
}

// op returns the operation a worker runs for a workload.
func op(workload string, t Target, cfg Config, worker int) func(ctx context.Context) error {
	value := make([]byte, cfg.ValueSize)
	pick, ids := picker(int64(worker+1), cfg.Sessions), sessionIDs(cfg.Sessions)
	r := rand.New(rand.NewSource(int64(worker + 1000)))
	n := 0
	switch workload {
	case "W2":
		return func(ctx context.Context) error { _, err := t.Get(ctx, ids[pick()]); return err }
	case "W3":
		prefix := fmt.Appendf(make([]byte, 0, 40), "new-%d-", worker) // room for n: appending to it allocates nothing
		return func(ctx context.Context) error {
			n++
			// One allocation, the id, as a service's id generator makes.
			id := string(strconv.AppendInt(prefix, int64(n), 10))
			return t.Set(ctx, id, value, 30*time.Second) // expire: W3 writes a lot
		}
	}
	return func(ctx context.Context) error { // W1, and W4's traffic
		id := ids[pick()]
		if r.Intn(100) < 5 {
			return t.Set(ctx, id, value, time.Hour)
		}
		_, err := t.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil // a session the outage lost: the service starts a new one
		}
		return err
	}
}

// heapSampler records the peak heap in use until stopped.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > h.peak.Load() {
				h.peak.Store(m.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) end() uint64 { close(h.stop); <-h.done; return h.peak.Load() }

// measure runs workload on t for cfg.Duration with cfg.Workers workers.
// tick is called every 100ms with the fraction done.
func measure(ctx context.Context, s *Server, t Target, name, workload string, cfg Config, tick func(float64)) Result {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	cmds0, cpu0 := s.Commands(ctx), s.CPU(ctx)
	var trips0 int64
	rt, counts := t.(roundTripper)
	if counts {
		trips0 = rt.RoundTrips()
	}
	heap := sampleHeap()
	var (
		ops, errs atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex // guards total
		total     hist
	)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	// Open loop: each worker has a schedule of intended starts, and a call
	// is timed from its intended start, so that a slow answer delays the
	// calls behind it in the latencies too (no coordinated omission).
	var period time.Duration
	if cfg.Rate > 0 {
		period = time.Duration(float64(time.Second) * float64(cfg.Workers) / float64(cfg.Rate))
	}
	for w := range cfg.Workers {
		run := op(workload, t, cfg, w)
		wg.Go(func() {
			var h hist
			next := start.Add(period * time.Duration(w) / time.Duration(cfg.Workers))
			for n := 0; ; n++ {
				var t0 time.Time
				if period > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d) // pacing the schedule
					}
					t0, next = next, next.Add(period)
					if t0.After(deadline) || time.Now().After(deadline) || ctx.Err() != nil {
						break
					}
				} else {
					if n%64 == 0 && time.Now().After(deadline) {
						break
					}
					t0 = time.Now()
				}
				if err := run(ctx); err != nil {
					errs.Add(1)
				}
				h.add(time.Since(t0))
			}
			ops.Add(h.n) // once: a counter shared by every call would be a contended cache line of the harness's
			mu.Lock()
			total.merge(&h)
			mu.Unlock()
		})
	}
	ticker := time.NewTicker(100 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-ticker.C:
			tick(min(1, float64(time.Since(start))/float64(cfg.Duration)))
			done = time.Now().After(deadline)
		case <-ctx.Done():
			done = true
		}
	}
	ticker.Stop()
	wg.Wait()
	elapsed := time.Since(start)
	peak := heap.end()
	n := float64(max(ops.Load(), 1))
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	r := Result{Target: name, Workload: workload, Ops: ops.Load(), Errors: errs.Load(), Elapsed: elapsed,
		P50: total.quantile(0.5), P99: total.quantile(0.99), P999: total.quantile(0.999),
		AllocsPerOp: float64(after.Mallocs-before.Mallocs) / n, PeakHeap: peak, CmdsPerOp: -1, RoundTripsPerOp: -1, RedisCPU: -1, RedisCPUPerOp: -1}
	if counts {
		r.RoundTripsPerOp = float64(rt.RoundTrips()-trips0) / n
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if after.HeapAlloc > before.HeapAlloc {
		r.LiveHeap = after.HeapAlloc - before.HeapAlloc // what the run added: the target's, mostly
	}
	if cmds1 := s.Commands(ctx); cmds0 >= 0 && cmds1 >= 0 {
		r.CmdsPerOp = float64(cmds1-cmds0-2) / n // less the two INFOs at the start
	}
	if cpu1 := s.CPU(ctx); cpu0 >= 0 && cpu1 >= 0 {
		r.RedisCPU, r.RedisCPUPerOp = (cpu1-cpu0)/elapsed.Seconds(), (cpu1-cpu0)/n
	}
	return r
}

// noop is a target that does nothing: measuring it gives the harness's
// own cost per operation (building ids, timing, counting).
type noop struct{}

func (noop) Get(context.Context, string) ([]byte, error)              { return nil, nil }
func (noop) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (noop) Delete(context.Context, string) error                     { return nil }
func (noop) Close() error                                             { return nil }
func (noop) RoundTrips() int64                                        { return 0 }

// harness measures the harness alone for workload, on the noop target:
// its allocations per operation, and the latencies it adds (in open loop,
// mostly the pacing timer's lateness).
func harness(ctx context.Context, s *Server, workload string, cfg Config) Result {
	cfg.Duration = min(cfg.Duration, 500*time.Millisecond)
	return measure(ctx, s, noop{}, "noop", workload, cfg, func(float64) {})
}
