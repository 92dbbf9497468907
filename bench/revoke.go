package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Revocation is W5 for one target: after a Delete on instance A, how long
// until instance B answers not-found.
type Revocation struct {
	Target        string
	Trials, Seen  int // Seen: revocations B saw within Timeout
	P50, P99, Max time.Duration
	Timeout       time.Duration
	Run           int // which repetition, from 1
}

// revocation measures W5 with W1 traffic from cfg.Workers/8 workers on A.
func revocation(ctx context.Context, info TargetInfo, addr string, cfg Config, tick func(float64)) (Revocation, error) {
	r := Revocation{Target: info.Name, Trials: cfg.Trials, Timeout: min(cfg.Duration, 500*time.Millisecond)}
	a, err := info.New(addr, cfg.Budget, cfg.Sessions)
	if err != nil {
		return r, err
	}
	defer a.Close()
	b, err := info.New(addr, cfg.Budget, cfg.Sessions)
	if err != nil {
		return r, err
	}
	defer b.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range max(cfg.Workers/8, 1) {
		run := op("W1", a, cfg, w)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					run(ctx)
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	value := make([]byte, cfg.ValueSize)
	var seen []time.Duration
	for i := range cfg.Trials {
		tick(float64(i) / float64(cfg.Trials))
		id := fmt.Sprintf("revoke-%d-%d", time.Now().UnixNano(), i)
		if err := a.Set(ctx, id, value, time.Hour); err != nil {
			return r, err
		}
		for range 2 { // B holds it, as an instance serving the user would
			if _, err := b.Get(ctx, id); err != nil {
				return r, fmt.Errorf("bench: W5: B cannot read the session: %w", err)
			}
		}
		if err := a.Delete(ctx, id); err != nil {
			return r, err
		}
		start := time.Now()
		for time.Since(start) < r.Timeout {
			if _, err := b.Get(ctx, id); errors.Is(err, ErrNotFound) {
				seen = append(seen, time.Since(start))
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	r.Seen = len(seen)
	if len(seen) > 0 {
		slices.Sort(seen)
		q := func(p float64) time.Duration { return seen[min(len(seen)-1, int(p*float64(len(seen))))] }
		r.P50, r.P99, r.Max = q(0.5), q(0.99), seen[len(seen)-1]
	}
	return r, nil
}
