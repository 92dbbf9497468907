package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sessiontier/sessiontier/tiered"
)

// Fanout is W6 at one point: Redis's write throughput while Instances
// sessiontier stores in invalidation mode Mode are attached to it.
type Fanout struct {
	Mode              string // "broadcast" or "per-key"
	Instances         int
	Writes, Errors    int64         // SETs acknowledged, SETs failed, in the window counted (see fanout)
	Elapsed           time.Duration // the window counted
	Held              int           // sessions the instances' local tiers held when the writes began
	Tracked           int64         // keys Redis tracked for its clients when the writes began (INFO tracking_total_keys); -1: unknown
	Invalidations     uint64        // invalidated sessions the instances received in the window, summed
	Reads, ReadErrors int64         // the instances' reads in the window
	RedisCPU          float64       // Redis's CPU time (user and system) in the window over its length, in cores; -1: unknown
	ClientCPU         float64       // this process's (the writers' and the instances'), the same way
	Run               int           // which repetition, from 1
}

// Throughput returns the SETs acknowledged per second.
func (f Fanout) Throughput() float64 { return float64(f.Writes) / f.Elapsed.Seconds() }

// fanoutModes are the invalidation modes W6 compares, in report order.
var fanoutModes = []struct {
	Name string
	Mode tiered.Invalidation
}{
	{"broadcast", tiered.InvalidationTracking},
	{"per-key", tiered.InvalidationPerKey},
}

// DefaultInstances are the numbers of instances W6 attaches, one point
// each, when Config.Instances is nil.
var DefaultInstances = []int{0, 1, 10, 40}

const (
	fanoutWriters  = 8     // writing connections, each with one pipeline in flight
	fanoutPipeline = 64    // SETs per pipeline
	fanoutReaders  = 16    // goroutines reading through the attached instances
	fanoutReadRate = 1_600 // reads per second through the attached instances, in all
)

// fanouts runs W6 once: each mode, in an order drawn for the run, at each
// number of instances, from a reset Redis.
func (rep *Report) fanouts(ctx context.Context, s *Server, cfg Config, run int, rng *rand.Rand, p Progress) error {
	modes := slices.Clone(fanoutModes)
	rng.Shuffle(len(modes), func(i, j int) { modes[i], modes[j] = modes[j], modes[i] })
	counts := cfg.Instances
	if counts == nil {
		counts = DefaultInstances
	}
	for _, m := range modes {
		if run == 1 {
			rep.Orders["W6"] = append(rep.Orders["W6"], m.Name)
		}
		for _, n := range counts {
			p.Step(fmt.Sprintf("W6 %s, N=%d (run %d of %d)", m.Name, n, run, max(cfg.Runs, 1)))
			if _, err := s.reset(ctx, cfg); err != nil {
				return err
			}
			f, err := fanout(ctx, s, m.Name, m.Mode, n, cfg, p.Tick)
			if err != nil {
				return fmt.Errorf("bench: W6 %s, N=%d: %w", m.Name, n, err)
			}
			f.Run = run
			rep.Fanouts = append(rep.Fanouts, f)
		}
	}
	return nil
}

// fanout measures W6 at one point: n stores in invalidation mode mode are
// opened, instance i reads sessions i, i+n, … once (so that in per-key
// mode Redis tracks them for it) and they keep reading them, round robin,
// while fanoutWriters connections write the sessions, pipelined; the
// window counted lasts cfg.Duration, from once the writes have settled.
// Every store is closed and every goroutine stopped before it returns.
func fanout(ctx context.Context, s *Server, name string, mode tiered.Invalidation, n int, cfg Config, tick func(float64)) (f Fanout, err error) {
	f = Fanout{Mode: name, Instances: n, Tracked: -1, RedisCPU: -1}
	ids := sessionIDs(cfg.Sessions)
	share := (cfg.Sessions + n - 1) / max(n, 1)
	budget := 2 * int64(share) * int64(cfg.ValueSize+256) // what an instance reads, with room
	want := map[tiered.Invalidation]string{tiered.InvalidationTracking: "tracking", tiered.InvalidationPerKey: "per-key"}[mode]
	var stores []*sessiontierTarget
	defer func() {
		for _, st := range stores {
			err = errors.Join(err, st.Close())
		}
	}()
	for range n {
		st, err := openStore(s.directAddr(), budget, share, mode)
		if err != nil {
			return f, err
		}
		stores = append(stores, st)
		if got := st.Stats().Invalidation; got != want {
			return f, fmt.Errorf("an instance's invalidation stream is %q, not %q", got, want)
		}
	}
	// A read that answers not-found (a read of Redis that timed out does,
	// see tiered.Options.StrictReads) leaves the session out of the
	// instance's share: the sessions held column counts what was held.
	var warmErr atomic.Pointer[error]
	readShares(ctx, stores, ids, nil, func(err error) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			warmErr.CompareAndSwap(nil, &err)
		}
	})
	if err := warmErr.Load(); err != nil {
		return f, fmt.Errorf("warm-up: %w", *err)
	}
	for _, st := range stores {
		f.Held += st.Stats().LocalEntries
	}
	if v, err := strconv.ParseInt(s.info(ctx, "stats")["tracking_total_keys"], 10, 64); err == nil {
		f.Tracked = v
	}

	// The instances stay attached and keep reading their shares, paced.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	stopReaders := sync.OnceFunc(func() { close(stop); readers.Wait() })
	defer stopReaders()
	var reads, readErrs atomic.Int64
	if n > 0 {
		readers.Go(func() {
			readShares(ctx, stores, ids, stop, func(err error) {
				reads.Add(1)
				if err != nil {
					readErrs.Add(1)
				}
			})
		})
	}

	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = key(id)
	}
	value := make([]byte, cfg.ValueSize)
	var (
		writes, errs atomic.Int64
		halt         atomic.Bool
		writers      sync.WaitGroup
	)
	werrs := make([]error, fanoutWriters)
	for w := range fanoutWriters {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 6))
			werrs[w] = writeSessions(ctx, s.directAddr(), keys, value, r.IntN, &halt, &writes, &errs)
		})
	}
	// What the window counts, at its start and at its end.
	type counters struct {
		at                            time.Time
		writes, errs, reads, readErrs int64
		invalidations                 uint64
		redisCPU, clientCPU           float64
	}
	snapshot := func() counters {
		c := counters{at: time.Now(), writes: writes.Load(), errs: errs.Load(), reads: reads.Load(), readErrs: readErrs.Load(),
			redisCPU: s.CPU(ctx), clientCPU: processCPU()}
		for _, st := range stores {
			c.invalidations += st.Stats().Invalidations
		}
		return c
	}
	// The window begins once the writers have written every session about
	// three times (95% of them at least once), or after half the duration:
	// the sessions tracked for the instances at the start have then been
	// invalidated once, and Redis tracks those read since, as in a steady
	// state.
	began := time.Now()
	var first counters
	ticker := time.NewTicker(10 * time.Millisecond)
	for counting := false; ctx.Err() == nil; {
		select {
		case <-ticker.C:
		case <-ctx.Done():
			continue
		}
		if !counting {
			if writes.Load() >= 3*int64(len(keys)) || time.Since(began) >= cfg.Duration/2 {
				first, counting = snapshot(), true
			}
			continue
		}
		tick(min(1, float64(time.Since(first.at))/float64(cfg.Duration)))
		if time.Since(first.at) >= cfg.Duration {
			break
		}
	}
	ticker.Stop()
	halt.Store(true)
	writers.Wait()
	last := snapshot()
	stopReaders()
	if err := errors.Join(werrs...); err != nil {
		return f, fmt.Errorf("writing: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return f, err
	}
	f.Elapsed = last.at.Sub(first.at)
	f.Writes, f.Errors = last.writes-first.writes, last.errs-first.errs
	f.Reads, f.ReadErrors = last.reads-first.reads, last.readErrs-first.readErrs
	f.Invalidations = last.invalidations - first.invalidations
	if first.redisCPU >= 0 && last.redisCPU >= 0 {
		f.RedisCPU = (last.redisCPU - first.redisCPU) / f.Elapsed.Seconds()
	}
	f.ClientCPU = (last.clientCPU - first.clientCPU) / f.Elapsed.Seconds()
	return f, nil
}

// readShares has fanoutReaders goroutines read the sessions, session i
// through instance i%len(stores), and calls done after each read. With a
// nil stop each session is read once, at once; otherwise the sessions are
// read round robin, fanoutReadRate per second in all, until stop is
// closed.
func readShares(ctx context.Context, stores []*sessiontierTarget, ids []string, stop <-chan struct{}, done func(error)) {
	if len(stores) == 0 {
		return
	}
	var wg sync.WaitGroup
	for g := range fanoutReaders {
		wg.Go(func() {
			if stop == nil {
				for i := g; i < len(ids); i += fanoutReaders {
					_, err := stores[i%len(stores)].Get(ctx, ids[i])
					done(err)
				}
				return
			}
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for i := g; ; {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				for range fanoutReadRate / 100 / fanoutReaders {
					if i >= len(ids) {
						i = g
					}
					_, err := stores[i%len(stores)].Get(ctx, ids[i])
					done(err)
					i += fanoutReaders
				}
			}
		})
	}
	wg.Wait()
}

// writeSessions sends SET PX of value to keys drawn by pick, in pipelines
// of fanoutPipeline, on a connection of its own until halt is set, and
// counts the replies: raw RESP, the lightest of clients, so that Redis
// rather than the client sets the pace.
func writeSessions(ctx context.Context, addr string, keys []string, value []byte, pick func(int) int, halt *atomic.Bool, acked, failed *atomic.Int64) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	var buf []byte
	for ctx.Err() == nil && !halt.Load() {
		buf = buf[:0]
		for range fanoutPipeline {
			k := keys[pick(len(keys))]
			buf = append(buf, "*5\r\n$3\r\nSET\r\n$"...)
			buf = append(strconv.AppendInt(buf, int64(len(k)), 10), "\r\n"...)
			buf = append(append(buf, k...), "\r\n$"...)
			buf = append(strconv.AppendInt(buf, int64(len(value)), 10), "\r\n"...)
			buf = append(append(buf, value...), "\r\n$2\r\nPX\r\n$7\r\n3600000\r\n"...)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(buf); err != nil {
			return err
		}
		for range fanoutPipeline {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			if string(line) == "+OK\r\n" {
				acked.Add(1)
			} else {
				failed.Add(1) // an error reply: one line too
			}
		}
	}
	return nil
}

// processCPU returns the CPU seconds this process has used (user and
// system).
func processCPU() float64 {
	var u syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &u) != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()).Seconds()
}
