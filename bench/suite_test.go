package bench

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
)

type quiet struct{}

func (quiet) Step(string)  {}
func (quiet) Tick(float64) {}

// TestEveryTargetStartsFromTheSameState: whatever the targets before it
// wrote (W1's updates, W3's new sessions), each target of a workload
// starts from the same Redis: the same keys, the same values.
func TestEveryTargetStartsFromTheSameState(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") == "true" {
		t.Fatal("redis-server is not installed (CI=true)")
	}
	s, err := StartServer("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := Config{Duration: 200 * time.Millisecond, Workers: 4, Sessions: 300, ValueSize: 32,
		Workloads: []string{"W1", "W3"}, Targets: []string{"sessiontier", "go-redis", "go-redis-cache", "golang-lru"},
		Budget: 1 << 20, Seed: 1, CheckState: true, OutagePart: time.Second, Trials: 1, Runs: 2}
	rep, err := Run(context.Background(), cfg, s, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range cfg.Workloads {
		var first *Result
		n := 0
		for i := range rep.Results {
			r := &rep.Results[i]
			if r.Workload != w {
				continue
			}
			n++
			if r.Start.Keys != int64(cfg.Sessions) || r.Start.Digest == "" {
				t.Errorf("%s %s started with %d keys (digest %q); want the %d sessions", w, r.Target, r.Start.Keys, r.Start.Digest, cfg.Sessions)
			}
			// A target's commands keep Redis busy: some share of its one
			// core, never more than the machine has.
			if busy := r.CmdsPerOp > 0.1; r.RedisCPU < 0 || r.RedisCPU > float64(runtime.NumCPU())+0.5 || busy && (r.RedisCPU == 0 || r.RedisCPUPerOp <= 0) {
				t.Errorf("%s %s: Redis CPU %.3f cores, %.3gs/op; want a measured share", w, r.Target, r.RedisCPU, r.RedisCPUPerOp)
			}
			if first == nil {
				first = r
			} else if r.Start != first.Start {
				t.Errorf("%s: %s started from %+v, %s from %+v", w, first.Target, first.Start, r.Target, r.Start)
			}
		}
		if n != cfg.Runs*len(cfg.Targets) {
			t.Errorf("%s ran %d times; want %d runs of %d targets", w, n, cfg.Runs, len(cfg.Targets))
		}
		if len(rep.Orders[w]) != len(cfg.Targets) {
			t.Errorf("%s order %v; want every target", w, rep.Orders[w])
		}
	}
	if st, err := s.state(context.Background(), false); err != nil || st.Keys == 0 {
		t.Fatalf("after the run: %+v, %v; want the last workload's keys still there on a server the suite started", st, err)
	}
}

// TestOnYourRedisOnlyThePrefixIsTouched: with --redis the suite resets and
// finally removes the keys under Prefix, and nothing else.
func TestOnYourRedisOnlyThePrefixIsTouched(t *testing.T) {
	srv := redistest.Start(t)
	user := srv.Client()
	ctx := context.Background()
	user.Set(ctx, "user:keep", "mine", 0)
	user.Set(ctx, "session:keep", "mine too", 0)
	s, err := StartServer("redis://" + srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := Config{Duration: 100 * time.Millisecond, Workers: 2, Sessions: 100, ValueSize: 16,
		Workloads: []string{"W1", "W3"}, Targets: []string{"sessiontier", "go-redis"},
		Budget: 1 << 20, Seed: 2, CheckState: true, OutagePart: time.Second, Trials: 1}
	rep, err := Run(ctx, cfg, s, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Start.Keys != int64(cfg.Sessions) {
			t.Errorf("%s %s started with %d keys under the prefix; want %d", r.Workload, r.Target, r.Start.Keys, cfg.Sessions)
		}
	}
	if st, err := s.state(ctx, false); err != nil || st.Keys != 0 {
		t.Fatalf("after the run %d keys remain under %s (%v); want none", st.Keys, Prefix, err)
	}
	for k, want := range map[string]string{"user:keep": "mine", "session:keep": "mine too"} {
		if v, err := user.Get(ctx, k).Result(); err != nil || v != want {
			t.Errorf("%s = %q, %v; the suite touched a key that is not its own", k, v, err)
		}
	}
}

func TestMedianAndSpread(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want string
	}{
		{[]float64{5}, "5"},
		{[]float64{3, 1, 2}, "2 [1–3]"},
		{[]float64{4, 1, 2, 3}, "2.5 [1–4]"},
	} {
		if got := spread(c.in, func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }); got != c.want {
			t.Errorf("spread(%v) = %q; want %q", c.in, got, c.want)
		}
	}
}
