package tests

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/tiered"
)

// TestReplayDrainsUnderSustainedRewrites: once Redis is back, sessions
// rewritten in a tight loop must not keep the outage tier from draining.
// A write of a session with a pending write queued behind it, so every
// replay round found a newer one: the replay never finished, and while
// the outage tier held anything, no read was served from the local tier.
// Each session is written by one writer, so its last acknowledged value
// is known: Redis must hold it in the end.
func TestReplayDrainsUnderSustainedRewrites(t *testing.T) {
	for _, m := range []tiered.Invalidation{tiered.InvalidationAuto, tiered.InvalidationTracking, tiered.InvalidationPublish} {
		t.Run(fmt.Sprint("invalidation-", m), func(t *testing.T) { drainsUnderSustainedRewrites(t, m) })
	}
}

func drainsUnderSustainedRewrites(t *testing.T, m tiered.Invalidation) {
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.Invalidation = m
	s := e.store(t, opts)
	const writers, ids = 8, 50
	var (
		stop    atomic.Bool
		written atomic.Int64
		wg      sync.WaitGroup
		last    [writers][ids]string // guarded by wg: read once the writers stopped
	)
	for g := range writers {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id, v := fmt.Sprintf("hot-%d-%d", g, i%ids), fmt.Sprintf("v%d", i)
				if err := s.Set(bg, id, []byte(v), time.Hour); err == nil {
					last[g][i%ids] = v
				}
				written.Add(1)
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	waitFor(t, "the writes to flow", func() bool { return written.Load() > 1000 })
	e.srv.Pause()
	openBreaker(t, s)
	w := written.Load()
	waitFor(t, "writes accepted during the outage", func() bool { return written.Load() > w+5000 })
	e.srv.Resume()
	waitReplayed(t, s) // while the writers go on
	stop.Store(true)
	wg.Wait()
	waitReplayed(t, s)
	for g := range writers {
		for i := range ids {
			id := fmt.Sprintf("hot-%d-%d", g, i)
			if got := e.plain.Get(bg, "session:"+id).Val(); got != last[g][i] {
				t.Fatalf("Redis holds %q of %s; want its last acknowledged write %q", got, id, last[g][i])
			}
		}
	}
}
