package bench

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const interval = 100 * time.Millisecond

// Interval is one 100ms slice of the outage timeline.
type Interval struct {
	At            time.Duration // from the start of the run
	Ops, Errors   int64
	P99           time.Duration
	FallbackBytes int64  // sessiontier only
	PendingWrites int    // sessiontier only
	Breaker       string // sessiontier only
}

// Timeline is W4 for one target.
type Timeline struct {
	Target            string
	Intervals         []Interval
	CutAt, RestoreAt  time.Duration
	ReplayDone        time.Duration // from RestoreAt until nothing was pending; -1: not within the run
	Slowest           time.Duration
	Errors            int64
	MaxFallbackBytes  int64
	FallbackByteLimit int64
	Alerts            []string
}

// slotHist is a concurrent latency histogram, 20% buckets, for one
// interval.
type slotHist struct{ counts [128]atomic.Int64 }

func (h *slotHist) add(d time.Duration) {
	i := 0
	if d > 1 {
		i = min(int(math.Log(float64(d))/math.Log(1.2)), len(h.counts)-1)
	}
	h.counts[i].Add(1)
}

func (h *slotHist) p99() time.Duration {
	var n int64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	if n == 0 {
		return 0
	}
	rank, seen := int64(math.Ceil(0.99*float64(n))), int64(0)
	for i := range h.counts {
		if seen += h.counts[i].Load(); seen >= rank {
			return time.Duration(math.Pow(1.2, float64(i+1)))
		}
	}
	return 0
}

// outageTimeline runs W1 on t while Redis is cut off for the middle third
// of the run.
func outageTimeline(ctx context.Context, s *Server, t Target, name string, cfg Config, tick func(float64)) (Timeline, error) {
	total := 3 * cfg.OutagePart
	slots := int(total/interval) + 1
	ops, errs := make([]atomic.Int64, slots), make([]atomic.Int64, slots)
	lat := make([]slotHist, slots)
	var slowest atomic.Int64
	tl := Timeline{Target: name, CutAt: cfg.OutagePart, RestoreAt: 2 * cfg.OutagePart, ReplayDone: -1}
	st, isStore := t.(*sessiontierTarget)
	if isStore {
		tl.FallbackByteLimit = cfg.Budget
	}
	start := time.Now()
	deadline := start.Add(total)
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		run := op("W1", t, cfg, w)
		wg.Go(func() {
			for {
				t0 := time.Now()
				if t0.After(deadline) {
					return
				}
				err := run(ctx)
				d := time.Since(t0)
				slot := min(int(t0.Sub(start)/interval), slots-1)
				ops[slot].Add(1)
				if err != nil {
					errs[slot].Add(1)
				}
				lat[slot].add(d)
				if int64(d) > slowest.Load() {
					slowest.Store(int64(d)) // racy max: good enough for a report
				}
			}
		})
	}
	samples := make([]Interval, slots)
	cut, restored := false, false
	var restoreErr error
	for now := time.Now(); now.Before(deadline); now = time.Now() {
		at := now.Sub(start)
		if !cut && at >= tl.CutAt {
			s.Cut()
			cut = true
		}
		if !restored && at >= tl.RestoreAt {
			restoreErr = s.Restore()
			restored = true
		}
		slot := min(int(at/interval), slots-1)
		if isStore {
			x := st.Stats()
			samples[slot] = Interval{FallbackBytes: x.FallbackBytes, PendingWrites: x.PendingWrites, Breaker: x.Breaker}
			tl.MaxFallbackBytes = max(tl.MaxFallbackBytes, x.FallbackBytes)
			if restored && tl.ReplayDone < 0 && x.PendingWrites == 0 && x.PendingDeletes == 0 && x.Breaker == "closed" {
				tl.ReplayDone = at - tl.RestoreAt
			}
		}
		tick(float64(at) / float64(total))
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	for i := range slots {
		iv := samples[i]
		iv.At, iv.Ops, iv.Errors, iv.P99 = time.Duration(i)*interval, ops[i].Load(), errs[i].Load(), lat[i].p99()
		tl.Errors += iv.Errors
		tl.Intervals = append(tl.Intervals, iv)
	}
	tl.Slowest = time.Duration(slowest.Load())
	if isStore {
		for _, a := range st.raised() {
			tl.Alerts = append(tl.Alerts, string(a.Kind)+": "+a.Message)
		}
	}
	return tl, restoreErr
}
