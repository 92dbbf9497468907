package tests

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
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

// The outage benchmarks report what issue #3 asks to measure:
//
//	go test -run '^$' -bench 'WhileRedisHangs|Replay' -benchtime 1x ./tests   (or -count N)
func benchEnv(b *testing.B, durable bool) (*redistest.Server, *goredis.Client) {
	b.Helper()
	srv := redistest.Start(b)
	if durable {
		srv = redistest.StartDurable(b)
	}
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 64})
	b.Cleanup(func() { client.Close() })
	return srv, client
}

// BenchmarkGetWhileRedisHangs: sessions are read (95%: half local hits,
// half misses) and written (5%) while Redis is frozen with SIGSTOP. Phase
// one, 64 workers until the breaker opens: it reports the slowest call,
// which OpTimeout (100ms) bounds. Phase two, the breaker open: it reports
// the p50, p99 and max latency of b.N calls made by as many workers as
// there are cores, so that the figures are the store's and not the time
// goroutines spend waiting for a core.
func BenchmarkGetWhileRedisHangs(b *testing.B) {
	srv, client := benchEnv(b, false)
	var opened atomic.Bool
	s, err := tiered.New(client, tiered.Options{
		Breaker: breaker.Settings{OpenTimeout: time.Hour},
		Telemetry: telemetry.Options{OnAlert: func(a telemetry.Alert) {
			if a.Kind == telemetry.AlertBreakerOpen {
				opened.Store(true)
			}
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const sessions = 10_000
	ids := make([]string, sessions)
	value := make([]byte, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("sess-%06d", i)
		if err := s.Set(context.Background(), ids[i], value, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	op := func(r *rand.Rand) time.Duration {
		start := time.Now()
		switch n := r.IntN(100); {
		case n < 5:
			s.Set(ctx, ids[r.IntN(sessions)], value, time.Hour)
		case n < 50:
			s.Get(ctx, ids[r.IntN(sessions)]) // in the local tier
		default:
			s.Get(ctx, fmt.Sprint("unknown-", r.IntN(sessions))) // a miss
		}
		return time.Since(start)
	}
	// run runs fn on workers goroutines and merges the latencies.
	run := func(workers int, fn func(r *rand.Rand) []time.Duration) []time.Duration {
		var (
			mu  sync.Mutex // guards all
			all []time.Duration
			wg  sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				d := fn(rand.New(rand.NewPCG(uint64(w), 1)))
				mu.Lock()
				all = append(all, d...)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(all)
		return all
	}

	srv.Pause()
	defer srv.Resume()
	before := run(64, func(r *rand.Rand) (d []time.Duration) {
		for !opened.Load() {
			d = append(d, op(r))
		}
		return d
	})
	workers := runtime.GOMAXPROCS(0)
	b.ResetTimer()
	after := run(workers, func(r *rand.Rand) (d []time.Duration) {
		for range max(b.N/workers, 1) {
			d = append(d, op(r))
		}
		return d
	})
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(float64(len(d))*p))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(before[len(before)-1].Milliseconds()), "max-ms-before-open")
	b.ReportMetric(pct(after, 0.50), "p50-µs-open")
	b.ReportMetric(pct(after, 0.99), "p99-µs-open")
	b.ReportMetric(pct(after, 1), "max-µs-open")
}

// BenchmarkReplay100k: 100,000 writes of 1 KiB of new sessions accepted
// while Redis is down; it reports the time from Redis answering again to
// the outage tier being drained into Redis, without any user traffic.
func BenchmarkReplay100k(b *testing.B) { benchReplay(b, false, false) }

// BenchmarkReplay100kUpdates is BenchmarkReplay100k for 100,000 sessions
// this store wrote before the outage: each replay checks, in Redis, that
// the key still holds what the store wrote (the replay script), where a
// new session's needs only an absent key (SET NX).
func BenchmarkReplay100kUpdates(b *testing.B) { benchReplay(b, true, false) }

// BenchmarkReplay100kUpdatesScript is BenchmarkReplay100kUpdates through a
// one-shard ring, replayed as on a cluster: the values read by script,
// compared here, and written by the replay script.
func BenchmarkReplay100kUpdatesScript(b *testing.B) { benchReplay(b, true, true) }

func benchReplay(b *testing.B, updates, script bool) {
	const n = 100_000
	for range b.N {
		b.StopTimer()
		srv, client := benchEnv(b, false)
		var store goredis.UniversalClient = client
		if script {
			ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": srv.Addr}, ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 64})
			b.Cleanup(func() { ring.Close() })
			store = ring
		}
		local := lru.Limits{MaxEntries: -1}
		if updates { // the notes of what the store wrote
			local = lru.Limits{MaxEntries: 2 * n, MaxBytes: 512 << 20}
		}
		s, err := tiered.New(store, tiered.Options{
			Breaker:  breaker.Settings{Failures: 1, OpenTimeout: 10 * time.Millisecond, MaxOpenTimeout: 20 * time.Millisecond},
			Fallback: lru.Limits{MaxEntries: 2 * n, MaxBytes: 512 << 20},
			Local:    local,
		})
		if err != nil {
			b.Fatal(err)
		}
		id := func(i int) string { return fmt.Sprintf("replay-%06d", i) }
		value := make([]byte, 1024)
		if updates {
			for i := range n {
				if err := s.Set(context.Background(), id(i), value, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			value = bytes.Repeat([]byte{1}, 1024)
		}
		down, up := srv.Kill, srv.Restart
		if updates {
			down, up = srv.Pause, srv.Resume // Redis keeps what the store wrote
		}
		down()
		for i := range n {
			if err := s.Set(context.Background(), id(i), value, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		if st := s.Stats(); st.PendingWrites < n-1 { // with Pause, the first write may be sent
			b.Fatalf("PendingWrites = %d; want %d", st.PendingWrites, n)
		}
		up()
		b.StartTimer()
		start, cpu := time.Now(), redisCPU(b, client)
		for s.Stats().PendingWrites > 0 {
			time.Sleep(time.Millisecond) // polling the drain
		}
		took := time.Since(start)
		b.StopTimer()
		b.ReportMetric(1000*(redisCPU(b, client)-cpu), "redis-cpu-ms") // of the drain, as INFO cpu tells it
		if n := client.DBSize(context.Background()).Val(); n != 100_000 {
			b.Fatalf("Redis holds %d keys after replay; want 100000", n)
		}
		if got, _ := client.Get(context.Background(), "session:"+id(n-1)).Bytes(); !bytes.Equal(got, value) {
			b.Fatalf("Redis holds %d bytes %.8x… of the last session after replay; want the outage write", len(got), got)
		}
		if st := s.Stats(); st.ReplayConflicts != 0 {
			b.Fatalf("%d replay conflicts; want none", st.ReplayConflicts)
		}
		b.ReportMetric(float64(took.Milliseconds()), "ms-to-drain")
		s.Close()
	}
}

// redisCPU is the CPU time, user and system, that the server of client
// has used, in seconds (INFO cpu).
func redisCPU(tb testing.TB, client *goredis.Client) float64 {
	tb.Helper()
	info := client.Info(context.Background(), "cpu").Val() // one reply, both fields of one instant
	var total float64
	for _, field := range []string{"used_cpu_user:", "used_cpu_sys:"} {
		_, rest, ok := strings.Cut(info, field)
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 64)
		if !ok || err != nil {
			tb.Fatalf("INFO cpu without %s: %q", field, info)
		}
		total += v
	}
	return total
}
