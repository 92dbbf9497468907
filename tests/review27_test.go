package tests

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview27SupersededInFlightWriteEvictedThenDeleteIsNotUndone: the
// variant of TestDeleteAfterAnEvictedWriteInFlightIsNotUndone where the
// replay's write in flight is first superseded by a newer write of its
// session (queued behind it), and that newer write, never sent, is what
// the full outage tier evicts. outage.write carries old.sent into the new
// write's bases only, not into anything dropped() looks at: the newer
// write is dropped with sent false, so nothing is recorded in unfenced and
// the session has no outage state left. Its Delete then goes straight to
// Redis, and the replay's SET of the first write, sent before all this,
// lands after the DEL: the deleted session is back in Redis and readable.
//
// FAILED at 96a8cfc; fixed by the commit that added this test.
func TestReview27SupersededInFlightWriteEvictedThenDeleteIsNotUndone(t *testing.T) {
	for name, mode := range map[string]tiered.Invalidation{"tracking": tiered.InvalidationTracking, "per-key": tiered.InvalidationPerKey, "publish": tiered.InvalidationPublish} {
		t.Run(name, func(t *testing.T) {
			const small = 64
			srv, proxy, s := proxiedStore(t, tiered.Options{
				Invalidation: mode,
				OpTimeout:    time.Second, // the held replay must not time out
				Breaker:      breaker.Settings{Failures: 1, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: time.Second},
				Fallback:     lru.Limits{MaxEntries: 8, MaxBytes: 2*lru.EntryOverhead + 4*small},
			})
			plain := srv.Client()
			doomed := "doomed-" + strings.Repeat("d", small-7)

			srv.Pause()
			if err := s.Set(bg, "tripper", []byte(strings.Repeat("t", small)), time.Hour); err != nil { // times out: the breaker opens
				t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
			}
			if err := s.Set(bg, "victim", []byte(doomed), time.Hour); err != nil {
				t.Fatal(err)
			}
			hold := proxy.Hold([]byte(doomed)) // the replay's SET of victim
			defer hold.Release()
			srv.Resume()
			<-hold.Held()

			// victim is pending (in flight): this write queues behind it and
			// supersedes it; it is never sent.
			if err := s.Set(bg, "victim", []byte("v2-"+strings.Repeat("2", small-3)), time.Hour); err != nil {
				t.Fatal(err)
			}
			// tripper is pending: this write queues behind it and takes the
			// room of victim's newer write.
			big := strings.Repeat("b", 3*small)
			if err := s.Set(bg, "tripper", []byte(big), time.Hour); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.PendingLost == 0 || st.PendingWrites != 1 {
				t.Fatalf("Stats %+v: victim's newer write was not evicted (the test's premise)", st)
			}
			if err := s.Delete(bg, "victim"); err != nil {
				t.Fatal(err)
			}
			hold.Release()
			waitReplayed(t, s)
			time.Sleep(100 * time.Millisecond) // a next replay round, if any

			if v, err := plain.Get(bg, "session:victim").Result(); err == nil {
				t.Errorf("Redis holds %.16q for victim after its Delete returned nil: the replayed write in flight landed after it", v)
			}
			if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
				t.Errorf("Get(victim) after its Delete = %.16q, %v; want ErrNotFound", v, err)
			}
		})
	}
}

// review27Unfenced makes s hold more dropped-after-sent writes than
// MaxTombstones (1) remembers, during an outage: three Sets time out (each
// sent, perhaps landed) while Redis is frozen, the third opens the
// breaker, and two more writes (refused by the open breaker, so queued)
// evict the first two from the full outage tier. outage.dropped records
// the first in unfenced and sets unfencedAll for the second. Redis stays
// frozen: the caller resumes it.
func review27Unfenced(t *testing.T, s *tiered.Store, srvPause func()) {
	t.Helper()
	srvPause()
	for _, id := range []string{"a", "b", "c"} {
		if err := s.Set(bg, id, []byte("timed-out-"+id), time.Hour); err != nil {
			t.Fatalf("Set(%s) while Redis is frozen: %v; want it accepted into the outage tier", id, err)
		}
	}
	if st := s.Stats(); st.Breaker != "open" || st.PendingWrites != 3 {
		t.Fatalf("Stats %+v: want the breaker open and three writes pending (the test's premise)", st)
	}
	for _, id := range []string{"d", "e"} {
		if err := s.Set(bg, id, []byte("queued-"+id), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.PendingLost != 2 {
		t.Fatalf("Stats %+v: want the two oldest (sent) writes evicted (the test's premise)", st)
	}
}

// TestReview27TouchOfAHeldSessionDuringAnOutageWithUnfencedAll: README,
// "Outages degrade": during an outage Touch "extends what this instance
// holds and replays it like a write". Once more sent writes were dropped
// than MaxTombstones (outage.unfencedAll, new in 50930b7), outage.has is
// true for every id: Touch of a session held here (read before the
// outage, never written during it) queues "behind" outage state that is
// not its own, touchPending finds no pending write, skips the local copy
// because has(id) is true, and returns ErrNotFound: the caller (a session
// manager) logs the user out, and the session's expiry is not extended.
// With MaxTombstones large enough (the control), the same Touch returns
// nil. This lasts the whole outage: unfencedAll is cleared only by a Fence.
//
// FAILED at 96a8cfc; fixed by the commit that added this test.
func TestReview27TouchOfAHeldSessionDuringAnOutageWithUnfencedAll(t *testing.T) {
	for name, tombs := range map[string]int{"control (MaxTombstones 100)": 100, "MaxTombstones 1": 1} {
		t.Run(name, func(t *testing.T) {
			srv, _, s := proxiedStore(t, tiered.Options{
				OpTimeout:     200 * time.Millisecond,
				MaxTombstones: tombs,
				Breaker:       breaker.Settings{Failures: 3, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour}, // Redis stays out
				Fallback:      lru.Limits{MaxEntries: 3, MaxBytes: 1 << 20},
			})
			if err := s.Set(bg, "held", []byte("held-value"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Get(bg, "held"); err != nil || string(v) != "held-value" {
				t.Fatalf("Get(held) = %q, %v", v, err)
			}
			review27Unfenced(t, s, srv.Pause)
			defer srv.Resume()

			if err := s.Touch(bg, "held", 2*time.Hour); err != nil {
				t.Errorf("Touch(held) during the outage = %v; want nil: this instance holds the session (README: Touch extends what this instance holds)", err)
			}
			if v, err := s.Get(bg, "held"); err != nil || string(v) != "held-value" {
				t.Errorf("Get(held) during the outage = %q, %v; want the held value", v, err)
			}
		})
	}
}

// TestReview27TouchWhileRedisIsUpReturnsNotFoundWithUnfencedAll: the
// breaker is closed and Redis answers; a replay batch is in flight (held
// in the network). A write queued behind two of its sessions evicts them
// from the full outage tier: both were marked sent by outage.sending, and
// MaxTombstones is 1, so unfencedAll is set until the next Fence. Touch of
// "alive", a session Redis holds and this store never wrote during the
// outage, then returns ErrNotFound instead of extending it: the caller
// takes the session for gone (a logout), and Redis's TTL is not extended.
//
// FAILED at 96a8cfc; fixed by the commit that added this test.
func TestReview27TouchWhileRedisIsUpReturnsNotFoundWithUnfencedAll(t *testing.T) {
	srv, _, s, hold := unfencedAllStore(t, time.Second, 500)
	if err := srv.Client().Set(bg, "session:alive", "alive-value", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(bg, "alive", 2*time.Hour); err != nil {
		t.Errorf("Touch(alive) with Redis up and holding it = %v; want nil", err)
	}
	hold.Release()
	waitReplayed(t, s)
}

// TestReview27SetWhileRedisIsUpFailsWithUnfencedAll: same setup as
// TestReview27TouchWhileRedisIsUpReturnsNotFoundWithUnfencedAll (breaker
// closed, Redis answering, unfencedAll set by two sent writes evicted in
// flight from the full outage tier). unfencedAll arises only from drops,
// that is from a full tier (or expiries), and it routes every write to
// that tier: a Set of "other", a session this store never wrote during
// the outage, now needs room in the full outage tier although Redis is
// up, and returns ErrUnavailable ("the session does not fit in the outage
// tier"); one that fits evicts another pending write (more pending_lost).
// Now such a change waits, within OpTimeout, for the Fence that follows the
// held batch (Store.queues), and goes to Redis.
//
// FAILED at 96a8cfc; fixed by the commit that added this test.
func TestReview27SetWhileRedisIsUpFailsWithUnfencedAll(t *testing.T) {
	srv, _, s, hold := unfencedAllStore(t, time.Second, 500)
	plain := srv.Client()
	// The Set waits for the Fence that follows the held batch (or finds
	// it made, if the release comes first): it goes to Redis then.
	done := make(chan error, 1)
	go func() { done <- s.Set(bg, "other", []byte("written-here"), time.Hour) }()
	hold.Release()
	if err := <-done; err != nil {
		t.Errorf("Set(other) with Redis up and the breaker closed = %v; want nil", err)
	}
	waitReplayed(t, s)
	if v := plain.Get(bg, "session:other").Val(); v != "written-here" {
		t.Errorf("Redis holds %q for other; want the Set made with Redis up", v)
	}
}

// review27Clock is an Options.Clock that a test moves forward.
type review27Clock struct{ ahead atomic.Int64 }

func (c *review27Clock) now() time.Time { return time.Now().Add(time.Duration(c.ahead.Load())) }

// unfencedAllStore returns a store whose breaker is closed and Redis
// answering, with a replay batch held in the network (returned, to
// release) and unfencedAll set by two sent writes (a and b) evicted in
// flight from the full outage tier by a write of c of size bytes (490
// leaves room for a small write beside it, 500 does not).
func unfencedAllStore(t *testing.T, opTimeout time.Duration, size int) (*redistest.Server, *redistest.Proxy, *tiered.Store, *redistest.Hold) {
	t.Helper()
	srv, proxy, s := proxiedStore(t, tiered.Options{
		OpTimeout:     opTimeout,
		MaxTombstones: 1,
		Breaker:       breaker.Settings{Failures: 1, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: time.Second},
		Fallback:      lru.Limits{MaxEntries: 8, MaxBytes: 3*lru.EntryOverhead + 100},
	})
	srv.Pause()
	for _, id := range []string{"a", "b", "c"} {
		if err := s.Set(bg, id, []byte("val-"+id+"-xxx"), time.Hour); err != nil {
			t.Fatalf("Set(%s) while Redis is frozen: %v", id, err)
		}
	}
	hold := proxy.Hold([]byte("val-c-xxx")) // the replay's batch
	t.Cleanup(hold.Release)
	srv.Resume()
	<-hold.Held()
	if err := s.Set(bg, "c", []byte(strings.Repeat("C", size)), time.Hour); err != nil { // evicts a and b, both sent
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingLost != 2 || st.Breaker != "closed" {
		t.Fatalf("Stats %+v: want a and b evicted, the breaker closed (the test's premise)", st)
	}
	return srv, proxy, s, hold
}

// TestReview27SetWhileRedisIsUpIsDiscardedWithUnfencedAll: the tier has
// room this time: unfencedAll is set by two sent writes (in the replay
// batch held in the network) that expire meanwhile and are dropped by
// Touch (touchPending: "a pending write that has expired stays expired").
// With Redis up and the breaker closed:
//   - a Set of "other", a session another client wrote and this store
//     never read, queues in the outage tier, based on what this store last
//     saw of it: nothing (""). Its replay conflicts with Redis's value and
//     is dropped: the Set returned nil with Redis healthy, and is
//     discarded (counted as a replay conflict, so not silent, but a write
//     made with the breaker closed used to go to Redis and win);
//   - with MaxTombstones 1, a second Delete of an unrelated session returns
//     ErrUnavailable ("tombstones are full") while Redis is up.
//
// Now such changes wait, within OpTimeout, for the Fence that follows the
// held batch (Store.queues), and go to Redis.
//
// FAILED at 96a8cfc; fixed by the commit that added this test.
func TestReview27SetWhileRedisIsUpIsDiscardedWithUnfencedAll(t *testing.T) {
	clock := &review27Clock{}
	srv, proxy, s := proxiedStore(t, tiered.Options{
		OpTimeout:     time.Second, // the held replay must not time out
		MaxTombstones: 1,
		Clock:         clock.now,
		Breaker:       breaker.Settings{Failures: 1, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: time.Second, Clock: time.Now},
	})
	plain := srv.Client()
	if err := plain.Set(bg, "session:other", "written-elsewhere", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	if err := s.Set(bg, "c", []byte("val-c-xxx"), time.Hour); err != nil { // times out: the breaker opens
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.Set(bg, id, []byte("val-"+id+"-xxx"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	hold := proxy.Hold([]byte("val-c-xxx")) // the replay's batch
	defer hold.Release()
	srv.Resume()
	<-hold.Held()
	clock.ahead.Store(int64(2 * time.Minute)) // a and b expire in the outage tier
	for _, id := range []string{"a", "b"} {
		if err := s.Touch(bg, id, time.Hour); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("Touch(%s) of an expired pending write = %v; want ErrNotFound (the test's premise)", id, err)
		}
	}
	if st := s.Stats(); st.PendingWrites != 1 || st.Breaker != "closed" {
		t.Fatalf("Stats %+v: want a and b dropped, the breaker closed (the test's premise)", st)
	}
	// The changes wait for the Fence that follows the held batch (or find
	// it made, if the release comes first): they go to Redis then.
	done := make(chan error, 1)
	var delErr error
	go func() {
		if err := s.Set(bg, "other", []byte("written-here"), time.Hour); err != nil {
			done <- err
			return
		}
		for _, id := range []string{"x", "y"} {
			if err := s.Delete(bg, id); err != nil {
				delErr = err
			}
		}
		done <- nil
	}()
	hold.Release()
	if err := <-done; err != nil {
		t.Fatalf("Set(other) with Redis up = %v", err)
	}
	waitReplayed(t, s)

	if v := plain.Get(bg, "session:other").Val(); v != "written-here" {
		t.Errorf("Redis holds %q for other after its Set returned nil with Redis up (ReplayConflicts %d); want the Set applied", v, s.Stats().ReplayConflicts)
	}
	if delErr != nil {
		t.Errorf("Delete with Redis up and the breaker closed = %v; want nil", delErr)
	}
}
