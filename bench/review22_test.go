package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
)

// sameConn returns n ids that the target sends on one connection.
func sameConn(tg *pipelineTarget, prefix string, n int) []string {
	var ids []string
	want := tg.conn(prefix + "0")
	for i := 0; len(ids) < n; i++ {
		if id := fmt.Sprintf("%s%d", prefix, i); tg.conn(id) == want {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestReview22PipelineRESPEdges: values far above the reader's 64 KiB
// buffer, the empty value, a nil bulk and an error reply, all on one
// connection and in one pipeline: each caller gets its own reply, and an
// error reply fails only its own call.
func TestReview22PipelineRESPEdges(t *testing.T) {
	tg, rs := startPipeline(t)
	admin := rs.Client()
	ctx := context.Background()
	ids := sameConn(tg, "edge-", 6)
	if err := admin.RPush(ctx, Prefix+ids[3], "x").Err(); err != nil { // a list: GET answers WRONGTYPE
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)  // 200 KiB
	huge := bytes.Repeat([]byte("fedcba9876543210"), (3<<20)/16) // 3 MiB
	vals := map[string][]byte{ids[0]: big, ids[1]: {}, ids[2]: []byte("small"), ids[5]: huge}
	for id, v := range vals {
		if err := tg.Set(ctx, id, v, time.Hour); err != nil {
			t.Fatalf("Set(%s, %d bytes): %v", id, len(v), err)
		}
	}
	for round := range 20 {
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Go(func() {
				got, err := tg.Get(ctx, id)
				switch id {
				case ids[3]:
					if err == nil || errors.Is(err, ErrNotFound) || !bytes.Contains([]byte(err.Error()), []byte("WRONGTYPE")) {
						t.Errorf("round %d: Get of a list: %v; want WRONGTYPE", round, err)
					}
				case ids[4]:
					if !errors.Is(err, ErrNotFound) {
						t.Errorf("round %d: Get of a missing key: %q, %v; want ErrNotFound", round, got, err)
					}
				default:
					if err != nil || !bytes.Equal(got, vals[id]) {
						t.Errorf("round %d: Get(%s) = %d bytes, %v; want its own %d bytes", round, id, len(got), err, len(vals[id]))
					}
				}
			})
		}
		wg.Wait()
	}
}

// TestReview22PipelineCloseWithEverySlotTaken: Redis frozen (SIGSTOP), both
// batches of a connection written and unanswered, callers queued behind
// them and the writer waiting for a slot: Close fails every call and stops
// every goroutine. Callers come one at a time until some connection is in
// that state (all at once, with large values, the first batch can take
// them all, its write blocked on the frozen Redis, and the second slot is
// never taken).
func TestReview22PipelineCloseWithEverySlotTaken(t *testing.T) {
	tg, rs := startPipeline(t)
	ctx := context.Background()
	if err := tg.Set(ctx, "warm", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	rs.Pause()
	defer rs.Resume()
	v := bytes.Repeat([]byte("v"), 1024)
	const maxCallers = 4096
	errs := make(chan error, maxCallers)
	var wg sync.WaitGroup
	full := func() bool {
		for _, c := range tg.conns {
			c.mu.Lock()
			queued := len(c.waiting)
			c.mu.Unlock()
			if len(c.slots) == pipelineInFlight && queued > 0 {
				return true
			}
		}
		return false
	}
	for i := 0; !full(); i++ {
		if i == maxCallers {
			t.Fatal("no connection got both slots taken with calls queued behind them")
		}
		wg.Go(func() { errs <- tg.Set(ctx, fmt.Sprintf("k%d", i), v, time.Hour) })
		time.Sleep(time.Millisecond) // polling the condition
	}
	closed := make(chan struct{})
	go func() { tg.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with both slots taken on a frozen Redis")
	}
	callersDone := make(chan struct{})
	go func() { wg.Wait(); close(callersDone) }()
	select {
	case <-callersDone:
	case <-time.After(10 * time.Second):
		t.Fatal("callers still waiting after Close")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, errPipeClosed) {
			t.Errorf("a call pending at Close returned %v; want errPipeClosed", err)
		}
	}
	tg.Close() // twice: returns at once
}

// TestReview22PipelineServerDiesMidBatch: Redis frozen with batches in
// flight, then killed: every caller fails (none hangs), later calls fail at
// once, and Close stops the goroutines.
func TestReview22PipelineServerDiesMidBatch(t *testing.T) {
	tg, rs := startPipeline(t)
	ctx := context.Background()
	if err := tg.Set(ctx, "warm", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	admin := rs.Client()
	for i := range 128 {
		if err := admin.Set(ctx, fmt.Sprintf("%sk%d", Prefix, i), fmt.Sprintf("v%d", i), time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close()
	rs.Pause() // SIGSTOP may land a little after kill(2) returns: a call may still be answered, with its own value
	errs := make(chan error, 128)
	var wg sync.WaitGroup
	for i := range 128 {
		wg.Go(func() {
			got, err := tg.Get(ctx, fmt.Sprintf("k%d", i))
			if err == nil && string(got) != fmt.Sprintf("v%d", i) {
				t.Errorf("Get(k%d) = %q: another caller's reply", i, got)
			}
			errs <- err
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for inflight := 0; inflight < pipelineConns; {
		inflight = 0
		for _, c := range tg.conns {
			if len(c.slots) > 0 {
				inflight++
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the calls were never written")
		}
		time.Sleep(time.Millisecond) // polling the condition
	}
	rs.Kill()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("callers still waiting after Redis died")
	}
	close(errs)
	for err := range errs {
		if errors.Is(err, ErrNotFound) {
			t.Errorf("a call in flight when Redis died returned %v; want its value or the connection's error", err)
		}
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := tg.Get(wait, id)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get(%s) after Redis died: %v; want the connection's error at once", id, err)
		}
	}
}

// TestReview22PipelineCloseRacesCallers: Close (twice, concurrently) while
// callers keep calling: every call returns, with its reply or
// errPipeClosed, and no goroutine is left.
func TestReview22PipelineCloseRacesCallers(t *testing.T) {
	tg, _ := startPipeline(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []error
	started := make(chan struct{}, 32)
	for w := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%d-%d", w, i)
				err := tg.Set(ctx, id, []byte(id), time.Hour)
				if err == nil {
					var got []byte
					got, err = tg.Get(ctx, id)
					if err == nil && string(got) != id {
						err = fmt.Errorf("Get(%s) = %q", id, got)
					}
				}
				if i == 10 {
					started <- struct{}{}
				}
				if err != nil {
					if !errors.Is(err, errPipeClosed) {
						mu.Lock()
						bad = append(bad, err)
						mu.Unlock()
					}
					return
				}
			}
		})
	}
	for range 32 {
		<-started
	}
	var closers sync.WaitGroup
	closers.Go(func() { tg.Close() })
	closers.Go(func() { tg.Close() })
	closers.Wait()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("callers still waiting after Close")
	}
	for _, err := range bad {
		t.Errorf("call during Close: %v; want its reply or errPipeClosed", err)
	}
}

// TestReview22PipelineCanceledCallIsNotSent: a call whose context has
// already ended returns the context's error, as go-redis does (its pool
// checks ctx before it writes); the pipeline still queues and sends the
// command, so a Set reported failed has changed Redis.
func TestReview22PipelineCanceledCallIsNotSent(t *testing.T) {
	tg, rs := startPipeline(t)
	admin := rs.Client()
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 10 {
		id := fmt.Sprintf("canceled-%d", i)
		if err := tg.Set(canceled, id, []byte("written"), time.Hour); err == nil {
			continue // the reply won the select: nothing to judge
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("Set with a canceled context: %v; want context.Canceled", err)
		}
		// A later call on the same connection is answered after the
		// canceled one, had it been sent.
		if _, err := tg.Get(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if n := admin.Exists(ctx, Prefix+id).Val(); n != 0 {
			t.Fatalf("Set(%s) returned context.Canceled, yet Redis holds the key: the command was sent after the caller's context had ended", id)
		}
		return
	}
	t.Fatal("every Set with a canceled context returned nil")
}

// TestReview22CountsAreExact: the INFO subtraction in measure: a target
// that does nothing costs Redis 0 commands per operation, the pipeline's
// GET exactly 1; Redis CPU is measured and sane.
func TestReview22CountsAreExact(t *testing.T) {
	rs := redistest.Start(t)
	s, err := StartServer("redis://" + rs.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cfg := Config{Duration: 200 * time.Millisecond, Workers: 4, Sessions: 100, ValueSize: 16}
	if _, err := s.reset(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	r := measure(ctx, s, noop{}, "noop", "W2", cfg, func(float64) {})
	if r.CmdsPerOp != 0 || r.RedisCPU < 0 || r.RedisCPUPerOp < 0 {
		t.Errorf("noop: %g cmds/op, Redis CPU %g, %gs/op; want 0 commands and a measured CPU", r.CmdsPerOp, r.RedisCPU, r.RedisCPUPerOp)
	}
	tg, err := newPipeline(s.Addr, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	r = measure(ctx, s, tg, "redis-pipeline", "W2", cfg, func(float64) {})
	if r.Errors != 0 || r.CmdsPerOp != 1 || r.RedisCPU <= 0 || r.RedisCPU > 64 || r.RedisCPUPerOp <= 0 {
		t.Errorf("redis-pipeline W2: %d errors, %g cmds/op, Redis CPU %g, %gs/op; want 1 GET per op and a share of a core", r.Errors, r.CmdsPerOp, r.RedisCPU, r.RedisCPUPerOp)
	}
}

// TestReview22ThroughputOnlyTargetsAreNotInW5Order: Report.Orders is
// "the order its targets ran in", and the report prints it as each
// workload's order; a ThroughputOnly target never runs in W4 or W5, yet it
// is listed in their orders.
func TestReview22ThroughputOnlyTargetsAreNotInW5Order(t *testing.T) {
	rs := redistest.Start(t)
	s, err := StartServer("redis://" + rs.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := Config{Duration: 200 * time.Millisecond, Workers: 8, Sessions: 100, ValueSize: 16,
		Workloads: []string{"W5"}, Targets: []string{"redis-pipeline", "go-redis"},
		Budget: 1 << 20, Seed: 1, Trials: 2, Runs: 1}
	rep, err := Run(context.Background(), cfg, s, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, r := range rep.Revocations {
		ran = append(ran, r.Target)
	}
	if slices.Contains(ran, "redis-pipeline") || !slices.Contains(ran, "go-redis") {
		t.Fatalf("W5 ran %v; want go-redis alone", ran)
	}
	if got := rep.Orders["W5"]; !slices.Equal(got, ran) {
		t.Errorf("W5 order reported %v; the targets that ran were %v", got, ran)
	}
}

// TestReview22TablesHaveTheHeadersColumns: the W1 table of the report and
// the summary have as many cells in every row as in their header, with
// the Redis CPU known ("0.61, 2.9µs/op"), unknown (—) or known in some
// runs only.
func TestReview22TablesHaveTheHeadersColumns(t *testing.T) {
	res := func(target string, run int, cpu float64) Result {
		return Result{Target: target, Workload: "W1", Run: run, Ops: 1000, Elapsed: time.Second, P50: time.Microsecond, P99: time.Millisecond,
			CmdsPerOp: 1, RoundTripsPerOp: -1, RedisCPU: cpu, RedisCPUPerOp: cpu / 1000, AllocsPerOp: 2}
	}
	rep := &Report{Config: Config{Workloads: []string{"W1"}, Runs: 2}, Harness: map[string]Result{"W1": {}},
		Results: []Result{res("go-redis", 1, 0.61), res("go-redis", 2, -1), res("rueidis", 1, -1), res("rueidis", 2, -1), res("redis-pipeline", 1, 0.9), res("redis-pipeline", 2, 0.8)}}
	dir := t.TempDir()
	if err := rep.Write(dir, "test"); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var header, rows int
	for _, l := range strings.Split(string(md), "\n") {
		if !strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "|---") {
			continue
		}
		cells := strings.Count(l, "|") - 1
		if header == 0 {
			header = cells
			continue
		}
		rows++
		if cells != header {
			t.Errorf("%d cells in %q; the header has %d", cells, l, header)
		}
	}
	if header != 14 || rows != 4 {
		t.Errorf("W1 table: %d columns, %d rows after the header; want 14 and 4 (separator and 3 targets)", header, rows)
	}
	if !strings.Contains(string(md), "| 0.85, 850µs/op |") || !strings.Contains(string(md), "| 0.61, 610µs/op |") {
		t.Errorf("Redis CPU cells not the median of the runs that measured it:\n%s", md)
	}
	var sum strings.Builder
	if err := rep.Summary(&sum); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(sum.String()), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "Redis CPU") || !strings.HasSuffix(lines[1], "0.61") ||
		!strings.HasSuffix(lines[2], "—") || !strings.HasSuffix(lines[3], "0.85") {
		t.Errorf("summary:\n%s", sum.String())
	}
}
