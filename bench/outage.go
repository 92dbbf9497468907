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

// Outage kinds of W4.
const (
	OutageKill = "kill" // Redis killed, restarted empty (or the user's Redis cut off by a proxy)
	OutageHang = "hang" // Redis frozen (SIGSTOP), then resumed with its data
)

// Timeline is W4 for one target and one kind of outage.
type Timeline struct {
	Target            string
	Outage            string        // OutageKill or OutageHang
	Phases            [3]PhaseStats // before, during, after the outage
	Run               int           // which repetition, from 1
	PendingAtEnd      int           // sessiontier: writes still waiting for replay when the run was counted
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

// outageTimeline runs W1, versioned (see ledger), on t while Redis is out
// (as outage says) for the middle third of the run; then, once a
// sessiontier target has replayed (or OutagePart more has passed), it
// counts what each phase's callers saw and which acknowledged writes Redis
// does not hold.
func outageTimeline(ctx context.Context, s *Server, t Target, name, outage string, cfg Config, tick func(float64)) (Timeline, error) {
	total := 3 * cfg.OutagePart
	slots := int(total/interval) + 1
	ops, errs := make([]atomic.Int64, slots), make([]atomic.Int64, slots)
	lat := make([]slotHist, slots)
	var slowest atomic.Int64
	tl := Timeline{Target: name, Outage: outage, CutAt: cfg.OutagePart, RestoreAt: 2 * cfg.OutagePart, ReplayDone: -1}
	book := newLedger(cfg.Sessions, cfg.ValueSize)
	st, isStore := t.(*sessiontierTarget)
	if isStore {
		tl.FallbackByteLimit = cfg.Budget
	}
	start := time.Now()
	deadline := start.Add(total)
	phaseOf := func(at time.Time) int {
		switch d := at.Sub(start); {
		case d < tl.CutAt:
			return 0
		case d < tl.RestoreAt:
			return 1
		}
		return 2
	}
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		run := book.op(t, cfg, w, phaseOf)
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
			if outage == OutageHang {
				s.Pause()
			} else {
				s.Cut()
			}
			cut = true
		}
		if !restored && at >= tl.RestoreAt {
			if outage == OutageHang {
				s.Resume()
			} else {
				restoreErr = s.Restore()
			}
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
		if restored && (!isStore || samples[slot].Breaker == "closed") {
			book.recovered.Store(true)
		}
		tick(float64(at) / float64(total))
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if restoreErr != nil {
		return tl, restoreErr
	}
	// Wait for the replay, so that a write still pending is not counted
	// lost; one not replayed by then is reported as pending.
	for end := time.Now().Add(max(10*time.Second, 2*cfg.OutagePart)); isStore; time.Sleep(10 * time.Millisecond) {
		x := st.Stats()
		if x.PendingWrites == 0 && x.PendingDeletes == 0 && x.Breaker == "closed" {
			if tl.ReplayDone < 0 {
				tl.ReplayDone = time.Since(start) - tl.RestoreAt
			}
			break
		}
		if time.Now().After(end) {
			tl.PendingAtEnd = x.PendingWrites
			break
		}
	}
	phases, err := book.settle(ctx, s, t)
	if err != nil {
		return tl, err
	}
	tl.Phases = phases
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
	return tl, nil
}
