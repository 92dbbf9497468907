package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Progress is told what the suite is doing.
type Progress interface {
	Step(desc string)  // a new workload and target
	Tick(frac float64) // how far the step is
}

// Report is the outcome of a suite run.
type Report struct {
	Config      Config
	Server      string // kind and version
	ServerKind  string
	Started     time.Time
	Took        time.Duration
	Machine     string
	Results     []Result
	Timelines   []Timeline
	Revocations []Revocation
	Fanouts     []Fanout
	Skipped     []string            // targets not run, with why
	Orders      map[string][]string // workload → the order its targets ran in
	Commit      string              // of the code measured; set by the caller
	// Harness is, per workload, the harness measured on a target that does
	// nothing: the report shows allocations net of its own, and its
	// latencies as the floor of what can be measured.
	Harness map[string]Result
}

// Run runs the suite against s.
func Run(ctx context.Context, cfg Config, s *Server, p Progress) (*Report, error) {
	rep := &Report{Config: cfg, Server: s.Version, ServerKind: s.Kind, Started: time.Now(),
		Machine: fmt.Sprintf("%s/%s, %d cores, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())}
	var targets []TargetInfo
	for _, name := range cfg.Targets {
		info, err := TargetByName(name)
		if err != nil {
			return nil, err
		}
		if info.NeedsTrack && s.Kind == "miniredis" {
			rep.Skipped = append(rep.Skipped, info.Name+": needs CLIENT TRACKING, which miniredis lacks")
			continue
		}
		targets = append(targets, info)
	}
	if slices.Contains(cfg.Workloads, "W6") && s.Kind == "miniredis" {
		rep.Skipped = append(rep.Skipped, "W6: needs CLIENT TRACKING, which miniredis lacks")
	}
	defer s.Cleanup(context.WithoutCancel(ctx))
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0))
	rep.Orders, rep.Harness = make(map[string][]string), make(map[string]Result)
	for _, w := range cfg.Workloads {
		if w == "W1" || w == "W2" || w == "W3" {
			rep.Harness[w] = harness(ctx, s, w, cfg)
		}
	}
	runs := max(cfg.Runs, 1)
	for run := 1; run <= runs; run++ {
		if err := rep.runOnce(ctx, s, cfg, targets, run, rng, p); err != nil {
			return nil, err
		}
	}
	// The report lists targets in Targets order, whatever order they ran in.
	rank := func(name string) int {
		return slices.IndexFunc(Targets, func(t TargetInfo) bool { return t.Name == name })
	}
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		if a.Workload != b.Workload {
			return strings.Compare(a.Workload, b.Workload)
		}
		return rank(a.Target) - rank(b.Target)
	})
	slices.SortStableFunc(rep.Timelines, func(a, b Timeline) int {
		if a.Outage != b.Outage {
			return strings.Compare(b.Outage, a.Outage) // "kill" before "hang"
		}
		return rank(a.Target) - rank(b.Target)
	})
	slices.SortStableFunc(rep.Revocations, func(a, b Revocation) int { return rank(a.Target) - rank(b.Target) })
	rep.Took = time.Since(rep.Started)
	return rep, nil
}

// runOnce runs every workload once. Every target of a workload starts
// from the same Redis, in an order drawn anew for each workload and run.
func (rep *Report) runOnce(ctx context.Context, s *Server, cfg Config, targets []TargetInfo, run int, rng *rand.Rand, p Progress) error {
	for _, w := range cfg.Workloads {
		if w == "W6" { // sessiontier alone, in both modes, whatever the targets
			if s.Kind == "miniredis" {
				continue
			}
			if err := rep.fanouts(ctx, s, cfg, run, rng, p); err != nil {
				return err
			}
			continue
		}
		order := slices.Clone(targets)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		if w == "W4" || w == "W5" { // nothing to measure of these there
			order = slices.DeleteFunc(order, func(t TargetInfo) bool { return t.ThroughputOnly })
		}
		if run == 1 {
			for _, info := range order {
				rep.Orders[w] = append(rep.Orders[w], info.Name)
			}
		}
		switch w {
		case "W1", "W2", "W3":
			for _, info := range order {
				p.Step(fmt.Sprintf("%s %s (run %d of %d)", w, info.Name, run, max(cfg.Runs, 1)))
				start, err := s.reset(ctx, cfg)
				if err != nil {
					return err
				}
				r, err := runOne(ctx, s, info, w, cfg, p.Tick)
				if err != nil {
					return fmt.Errorf("bench: %s %s: %w", w, info.Name, err)
				}
				r.Start, r.Run = start, run
				rep.Results = append(rep.Results, r)
			}
		case "W4":
			outages := []string{OutageKill}
			if s.CanHang() {
				outages = append(outages, OutageHang)
			}
			for _, outage := range outages {
				for _, info := range order {
					p.Step(fmt.Sprintf("W4 %s %s (run %d)", outage, info.Name, run))
					tl, err := rep.outage(ctx, s, info, outage, cfg, p)
					if err != nil {
						return fmt.Errorf("bench: W4 %s %s: %w", outage, info.Name, err)
					}
					tl.Run = run
					rep.Timelines = append(rep.Timelines, tl)
				}
			}
		case "W5":
			for _, info := range order {
				p.Step(fmt.Sprintf("W5 %s (run %d)", info.Name, run))
				if _, err := s.reset(ctx, cfg); err != nil {
					return err
				}
				r, err := revocation(ctx, info, s.Addr, cfg, p.Tick)
				if err != nil {
					return fmt.Errorf("bench: W5 %s: %w", info.Name, err)
				}
				r.Run = run
				rep.Revocations = append(rep.Revocations, r)
			}
		default:
			return fmt.Errorf("bench: unknown workload %q", w)
		}
	}
	return nil
}

// outage runs W4 on a new instance of info from the common start.
func (rep *Report) outage(ctx context.Context, s *Server, info TargetInfo, outage string, cfg Config, p Progress) (Timeline, error) {
	if _, err := s.reset(ctx, cfg); err != nil {
		return Timeline{}, err
	}
	t, err := info.New(s.Addr, cfg.Budget, cfg.Sessions)
	if err != nil {
		return Timeline{}, err
	}
	defer t.Close()
	if err := warm(ctx, t, info, cfg); err != nil {
		return Timeline{}, fmt.Errorf("warm-up: %w", err)
	}
	return outageTimeline(ctx, s, t, info.Name, outage, cfg, p.Tick)
}

func runOne(ctx context.Context, s *Server, info TargetInfo, workload string, cfg Config, tick func(float64)) (Result, error) {
	t, err := info.New(s.Addr, cfg.Budget, cfg.Sessions)
	if err != nil {
		return Result{}, err
	}
	defer t.Close()
	if err := warm(ctx, t, info, cfg); err != nil {
		return Result{}, fmt.Errorf("warm-up: %w", err)
	}
	return measure(ctx, s, t, info.Name, workload, cfg, tick), nil
}
