package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestDeleteAfterAnEvictedWriteInFlightIsNotUndone: a write accepted
// during an outage is being replayed when a newer write of another session
// evicts it from a full outage tier (its loss is counted: it may not
// land). The same store then deletes that session: nothing of it is
// pending any more, so the Delete goes to Redis at once and succeeds. The
// replay's SET, sent before the eviction, arrives after the DEL (the key
// was absent, so the DEL did not touch the transaction's WATCH): the
// deleted session must not be back. Found by TestRandomFaults, whose store
// A holds 4 pending writes.
func TestDeleteAfterAnEvictedWriteInFlightIsNotUndone(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, s := smallOutageStore(t, m.opt)
			plain := srv.Client()
			tripper := strings.Repeat("t", small)
			doomed := "doomed-" + strings.Repeat("d", small-7)

			srv.Pause()
			if err := s.Set(bg, "tripper", []byte(tripper), time.Hour); err != nil { // times out: the breaker opens
				t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
			}
			if err := s.Set(bg, "victim", []byte(doomed), time.Hour); err != nil {
				t.Fatal(err)
			}
			hold := proxy.Hold([]byte(doomed)) // the replay's SET of victim
			defer hold.Release()
			srv.Resume()
			<-hold.Held()

			// tripper is pending: this write queues behind it, and takes
			// the room of victim's.
			big := strings.Repeat("b", 3*small)
			if err := s.Set(bg, "tripper", []byte(big), time.Hour); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.PendingLost == 0 {
				t.Fatalf("Stats %+v: the pending write of victim was not evicted (the test's premise)", st)
			}
			if err := s.Delete(bg, "victim"); err != nil {
				t.Fatal(err)
			}
			hold.Release()
			waitReplayed(t, s)

			if v, err := plain.Get(bg, "session:victim").Result(); err == nil {
				t.Errorf("Redis holds %.16q for victim after its Delete returned nil: the replayed write landed after it", v)
			}
			if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
				t.Errorf("Get(victim) after its Delete = %.16q, %v; want ErrNotFound", v, err)
			}
			if v := plain.Get(bg, "session:tripper").Val(); v != big {
				t.Errorf("Redis holds %.16q for tripper; want the last acknowledged write", v)
			}
		})
	}
}

// TestEvictedOutageWriteIsNotServedOnceRedisIsBack: a write accepted into
// the outage tier after the breaker closed (queued behind its session's
// delete, being replayed) is evicted from the full tier before it is sent:
// it is lost, counted and alerted. Its value never reaches Redis, and no
// invalidation will ever tell the store: the local copy it left must not
// be served once Redis is back (it was, for Local.TTL). Found by
// TestRandomFaults.
func TestEvictedOutageWriteIsNotServedOnceRedisIsBack(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, s := smallOutageStore(t, m.opt)
			plain := srv.Client()
			srv.Pause()
			if err := s.Set(bg, "other", []byte(strings.Repeat("o", small)), time.Hour); err != nil { // times out: the breaker opens
				t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
			}
			if err := s.Delete(bg, "victim"); err != nil { // a tombstone; Redis holds no victim
				t.Fatal(err)
			}
			hold := proxy.Hold([]byte("session:victim")) // the replay's DEL
			defer hold.Release()
			srv.Resume()
			<-hold.Held()

			lost := "lost-" + strings.Repeat("l", small-5)
			if err := s.Set(bg, "victim", []byte(lost), time.Hour); err != nil { // queued behind the delete
				t.Fatal(err)
			}
			if err := s.Set(bg, "other", []byte(strings.Repeat("b", 3*small)), time.Hour); err != nil { // takes its room
				t.Fatal(err)
			}
			if st := s.Stats(); st.PendingLost != 1 {
				t.Fatalf("Stats %+v: want the pending write of victim evicted (the test's premise)", st)
			}
			hold.Release()
			waitReplayed(t, s)

			if v, err := plain.Get(bg, "session:victim").Result(); err == nil {
				t.Fatalf("Redis holds %.16q for victim: the lost write was sent (the test's premise)", v)
			}
			if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
				t.Errorf("Get(victim) once Redis is back = %.16q, %v; want ErrNotFound: the lost write was never in Redis", v, err)
			}
		})
	}
}

// cachingModes are the invalidation modes of a store whose local tier
// is kept coherent.
var cachingModes = append([]mode{{"publish", tiered.InvalidationPublish, "publish"}}, trackingModes...)

// probeModes are the modes of the tests whose breaker probe is held in the
// network: per-key tracking is left out, as its tracking connection,
// reconnecting after the pause on its own schedule, fails calls that open
// the breaker again and drops the copies these tests hold (the path under
// test, Store.requeue, does not depend on the mode).
var probeModes = cachingModes[:2]

// small is the size of the values that smallOutageStore's outage tier
// holds two of, beside a third whose id is pending.
const small = 64

// smallOutageStore is a proxied store in mode whose outage tier holds two
// writes of small bytes, or one of 3*small, and whose replays, answered
// within a second, do not time out while the test holds them.
func smallOutageStore(t *testing.T, mode tiered.Invalidation) (*redistest.Server, *redistest.Proxy, *tiered.Store) {
	t.Helper()
	return proxiedStore(t, tiered.Options{
		Invalidation: mode,
		OpTimeout:    time.Second,
		Breaker:      breaker.Settings{Failures: 1, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: time.Second},
		Fallback:     lru.Limits{MaxEntries: 8, MaxBytes: 2*lru.EntryOverhead + 4*small},
	})
}

// TestDeleteSentWhileATouchQueuesIsNotUndone: a Delete is the breaker's
// half-open probe, on its way to Redis, when a Touch of the same session,
// refused by the breaker meanwhile, makes the copy held here a pending
// write (README: Touch "extends what this instance holds and replays it
// like a write"). The Delete then lands and returns nil: the session must
// not be served from the outage tier afterwards, nor replayed. The two
// were concurrent, so the Touch takes effect first. Found by
// TestRandomFaults.
func TestDeleteSentWhileATouchQueuesIsNotUndone(t *testing.T) {
	probeWhileATouchQueues(t, func(s *tiered.Store) error { return s.Delete(bg, "victim") }, "")
}

// TestSetSentWhileATouchQueuesIsNotUndone: as above, with a Set as the
// probe: once it returned, the store serves its value, not the older copy
// the Touch queued, and Redis ends with it.
func TestSetSentWhileATouchQueuesIsNotUndone(t *testing.T) {
	probeWhileATouchQueues(t, func(s *tiered.Store) error { return s.Set(bg, "victim", []byte("newer"), time.Hour) }, "newer")
}

// probeWhileATouchQueues runs probe, a change of victim, as the breaker's
// half-open probe, held in the network while a Touch of victim queues in
// the outage tier, and checks that the store and Redis then hold want
// ("": nothing) for victim, at once and after the replay.
func probeWhileATouchQueues(t *testing.T, probe func(*tiered.Store) error, want string) {
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			srv, s, clock, hold := heldProbeStore(t, m, nil, "victim")
			plain := srv.Client()
			probed := make(chan error, 1)
			go func() { probed <- probe(s) }()
			<-hold.Held()
			if err := s.Touch(bg, "victim", time.Hour); err != nil { // refused by the breaker: queued
				t.Fatalf("Touch while the probe is on its way = %v; want the held copy extended", err)
			}
			hold.Release()
			if err := <-probed; err != nil {
				t.Fatalf("probe = %v", err)
			}
			check := func(when string) {
				t.Helper()
				v, err := s.Get(bg, "victim")
				if want == "" && !errors.Is(err, tiered.ErrNotFound) || want != "" && string(v) != want {
					t.Errorf("Get(victim) %s = %.16q, %v; want %q", when, v, err, want)
				}
			}
			check("once the probe returned")
			waitReplayedAdvancing(t, s, clock)
			if v := plain.Get(bg, "session:victim").Val(); v != want {
				t.Errorf("Redis holds %.16q for victim after the replay; want %q", v, want)
			}
			check("after the replay")
		})
	}
}

// waitReplayedAdvancing is waitReplayed for a store whose breaker reads
// clock, which the recovery loop's real timer does not follow: while it
// waits, it moves clock past any backoff and reads a missing session, the
// breaker's probe if it opened again (in per-key mode the tracking
// connection, reconnecting since the pause, sometimes fails a call).
func waitReplayedAdvancing(t *testing.T, s *tiered.Store, clock *review27Clock) {
	t.Helper()
	waitFor(t, "the outage tier to drain", func() bool {
		st := s.Stats()
		if st.Breaker == "closed" && st.PendingWrites == 0 && st.PendingDeletes == 0 {
			return true
		}
		clock.ahead.Add(int64(2 * time.Hour))
		s.Get(bg, "probe-miss")
		return false
	})
}

// heldProbeStore returns a store in mode m (300ms OpTimeout, its breaker
// on clock, opts tweaked by tweak if not nil) holding the sessions held,
// whose breaker opened on a paused Redis, and is now half-open once Redis
// is back: the next call probes, and its command on victim is held in the
// network until hold is released.
func heldProbeStore(t *testing.T, m mode, tweak func(*tiered.Options), held ...string) (srv *redistest.Server, s *tiered.Store, clock *review27Clock, hold *redistest.Hold) {
	t.Helper()
	clock = &review27Clock{} // the breaker's: its backoff ends when the test says
	opts := tiered.Options{
		Invalidation: m.opt,
		OpTimeout:    300 * time.Millisecond,
		Breaker:      breaker.Settings{Failures: 1, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour, Clock: clock.now},
	}
	if tweak != nil {
		tweak(&opts)
	}
	srv, proxy, s := proxiedStore(t, opts)
	for _, id := range held {
		if err := s.Set(bg, id, []byte("held-here"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(bg, id); err != nil { // held here, in per-key mode too
			t.Fatal(err)
		}
	}
	srv.Pause()
	openBreaker(t, s)
	srv.Resume()
	waitStream(t, s)                            // reconnected: it fails nothing after the probe
	hold = proxy.Hold([]byte("session:victim")) // the probe's command
	t.Cleanup(hold.Release)
	clock.ahead.Store(int64(2 * time.Hour)) // half-open: the next call probes
	return srv, s, clock, hold
}
