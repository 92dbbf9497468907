package tests

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview14WriteSentAnotherWayIsBoundedByOpTimeout: on a hung Redis
// (SIGSTOP), two writes fill the tracking connection's batches in flight
// and the next ones queue behind them, until the connection's read
// deadline drops it and the flusher answers them "not sent"; they then go
// through the lanes. Each Set must still return within OpTimeout of its
// start, not wait OpTimeout in the queue and OpTimeout again on a lane.
func TestReview14WriteSentAnotherWayIsBoundedByOpTimeout(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		boundedOnHungRedis(t, m, "Set", func(s *tiered.Store, id string) {
			s.Set(bg, id, []byte("v"), time.Hour) // accepted into the outage tier: the time is what counts
		})
	})
}

// TestReview14TrackedReadSentAnotherWayIsBoundedByOpTimeout: the same for
// the reads that per-key mode sends on the tracking connection, which go
// through the caller's client once the connection is down.
func TestReview14TrackedReadSentAnotherWayIsBoundedByOpTimeout(t *testing.T) {
	boundedOnHungRedis(t, mode{"per-key", tiered.InvalidationPerKey, "per-key"}, "Get", func(s *tiered.Store, id string) {
		s.Get(bg, id)
	})
}

// boundedOnHungRedis pauses Redis, runs op on distinct ids spread over
// the first part of OpTimeout, and checks that each returned within about
// OpTimeout of its start.
func boundedOnHungRedis(t *testing.T, m mode, name string, op func(s *tiered.Store, id string)) {
	const opTimeout = 300 * time.Millisecond
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: m.opt, OpTimeout: opTimeout,
		Breaker: breaker.Settings{Failures: 1000, OpenTimeout: time.Hour}})
	mustSet(t, s, "warm", "x") // the tracking connection is up and carries writes
	e.srv.Pause()
	defer e.srv.Resume()

	const n = 8
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	// The calls are spread over the first part of OpTimeout, so that the
	// later ones find the connection busy with the first two.
	tick := time.NewTicker(opTimeout / 15)
	defer tick.Stop()
	for i := range n {
		if i > 0 {
			<-tick.C
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			op(s, fmt.Sprint("id", i))
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, d := range took {
		// Generous against scheduling noise; the fault makes it ~2x.
		if d > opTimeout+opTimeout/2 {
			t.Errorf("%s %d on a hung Redis took %v; want at most about OpTimeout (%v)", name, i, d, opTimeout)
		}
	}
}
