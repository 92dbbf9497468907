package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
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
	Skipped     []string // targets not run, with why
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
	if err := populate(ctx, s, cfg); err != nil {
		return nil, fmt.Errorf("bench: writing the sessions: %w", err)
	}
	for _, w := range cfg.Workloads {
		switch w {
		case "W1", "W2", "W3":
			for _, info := range targets {
				p.Step(w + " " + info.Name)
				r, err := runOne(ctx, s, info, w, cfg, p.Tick)
				if err != nil {
					return nil, fmt.Errorf("bench: %s %s: %w", w, info.Name, err)
				}
				rep.Results = append(rep.Results, r)
			}
		case "W4":
			for _, info := range targets {
				if info.Name != "sessiontier" && info.Name != "go-redis" {
					continue
				}
				p.Step("W4 " + info.Name)
				t, err := info.New(s.Addr, cfg.Budget, cfg.Sessions)
				if err != nil {
					return nil, err
				}
				if err := warm(ctx, t, info, cfg); err != nil {
					t.Close()
					return nil, fmt.Errorf("bench: W4 %s: warm-up: %w", info.Name, err)
				}
				tl, err := outageTimeline(ctx, s, t, info.Name, cfg, p.Tick)
				t.Close()
				if err != nil {
					return nil, fmt.Errorf("bench: W4 %s: %w", info.Name, err)
				}
				rep.Timelines = append(rep.Timelines, tl)
				if err := populate(ctx, s, cfg); err != nil { // the restarted Redis is empty
					return nil, err
				}
			}
		case "W5":
			for _, info := range targets {
				if info.Name == "golang-lru" {
					continue // nothing shared between instances
				}
				p.Step("W5 " + info.Name)
				r, err := revocation(ctx, info, s.Addr, cfg, p.Tick)
				if err != nil {
					return nil, fmt.Errorf("bench: W5 %s: %w", info.Name, err)
				}
				rep.Revocations = append(rep.Revocations, r)
			}
		default:
			return nil, fmt.Errorf("bench: unknown workload %q", w)
		}
	}
	rep.Took = time.Since(rep.Started)
	return rep, nil
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

// baseline returns the go-redis result of a workload, if it was run.
func (r *Report) baseline(workload string) (Result, bool) {
	i := slices.IndexFunc(r.Results, func(x Result) bool { return x.Workload == workload && x.Target == "go-redis" })
	if i < 0 {
		return Result{}, false
	}
	return r.Results[i], true
}
