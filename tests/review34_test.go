package tests

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/tiered"
)

// replayRaceStore returns a store (broadcast tracking) whose n sessions
// were written "v" while Redis was up, then "x" during an outage: n
// pending writes. Redis is still paused and the breaker open.
func replayRaceStore(t *testing.T, n int) (*env, *tiered.Store, []string) {
	t.Helper()
	e, s, ids := touchRaceStore(t, n)
	for _, id := range ids {
		mustSet(t, s, id, "x")
	}
	if st := s.Stats(); st.PendingWrites != n {
		t.Fatalf("PendingWrites = %d; want %d", st.PendingWrites, n)
	}
	return e, s, ids
}

// A Delete and a Touch of a session with a pending write, at once while
// Redis comes back and the tier is replayed: once the Delete returned the
// session is never served again, here or in Redis.
func TestReview34DeleteAndTouchDuringReplayLeaveItDeleted(t *testing.T) {
	e, s, ids := replayRaceStore(t, 2000)
	e.srv.Resume()
	var served atomic.Int64
	atOnce(ids, touch(t, s), func(id string) {
		if err := s.Delete(bg, id); err != nil {
			t.Errorf("Delete(%s) = %v", id, err)
			return
		}
		if v, err := s.Get(bg, id); !errors.Is(err, tiered.ErrNotFound) {
			served.Add(1)
			t.Logf("Get(%s) right after its Delete = %q, %v", id, v, err)
		}
	})
	waitReplayed(t, s)
	for _, id := range ids {
		if v, err := s.Get(bg, id); !errors.Is(err, tiered.ErrNotFound) {
			served.Add(1)
			t.Logf("Get(%s) after the replay = %q, %v", id, v, err)
		}
	}
	if n := served.Load(); n > 0 {
		t.Fatalf("%d reads of %d sessions deleted during the replay served them", n, len(ids))
	}
	if keys := e.plain.Keys(bg, "session:s*").Val(); len(keys) != 0 {
		t.Fatalf("%d deleted sessions in Redis after the replay (e.g. %s = %q)", len(keys), keys[0], e.plain.Get(bg, keys[0]).Val())
	}
}

// A Set and a Touch of a session with a pending write, at once while
// Redis comes back and the tier is replayed: the Set's value is served
// once it returned, and is Redis's after the replay, with no conflict.
func TestReview34SetAndTouchDuringReplayKeepTheSet(t *testing.T) {
	e, s, ids := replayRaceStore(t, 2000)
	e.srv.Resume()
	var older atomic.Int64
	atOnce(ids, touch(t, s), func(id string) {
		mustSet(t, s, id, "y")
		if v, err := s.Get(bg, id); err != nil || string(v) != "y" {
			older.Add(1)
			t.Logf("Get(%s) right after its Set = %q, %v", id, v, err)
		}
	})
	waitReplayed(t, s)
	for _, id := range ids {
		if v, err := s.Get(bg, id); err != nil || string(v) != "y" {
			older.Add(1)
			t.Logf("Get(%s) after the replay = %q, %v", id, v, err)
		}
		if v := e.plain.Get(bg, "session:"+id).Val(); v != "y" {
			older.Add(1)
			t.Logf("Redis holds %q of %s after the replay", v, id)
		}
	}
	if n := older.Load(); n > 0 {
		t.Fatalf("%d reads of %d sessions set during the replay missed the Set (stats %+v)", n, len(ids), s.Stats())
	}
	if st := s.Stats(); st.ReplayConflicts != 0 || st.PendingLost != 0 {
		t.Fatalf("stats %+v: the replay conflicted with this instance's own writes", st)
	}
}

// Reads of sessions with pending writes while Redis comes back and the
// tier is replayed, and after: never the value the outage write replaced.
func TestReview34ReadsDuringReplayNeverGoBack(t *testing.T) {
	e, s, ids := replayRaceStore(t, 2000)
	var back atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := r; !stop.Load(); i++ {
				id := ids[i%len(ids)]
				if v, err := s.Get(bg, id); err != nil || string(v) != "x" {
					if back.Add(1) <= 5 {
						t.Logf("Get(%s) = %q, %v; want x", id, v, err)
					}
				}
			}
		})
	}
	e.srv.Resume()
	waitReplayed(t, s)
	deadline := time.Now().Add(300 * time.Millisecond) // reads after the replay too: the invalidations of the replayed SETs arrive
	waitFor(t, "reads after the replay", func() bool { return time.Now().After(deadline) })
	stop.Store(true)
	wg.Wait()
	if n := back.Load(); n > 0 {
		t.Fatalf("%d reads did not return the acknowledged outage write (stats %+v)", n, s.Stats())
	}
}

// A Set and a Delete of a held session at once while Redis stops
// answering (some sent and answered, some timed out and perhaps landed,
// some refused by the open breaker): what is served once both returned
// is what Redis holds after the replay, but for replay conflicts and
// lost writes, counted.
func TestReview34SetAndDeleteAsRedisHangsAgree(t *testing.T) {
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.Invalidation = tiered.InvalidationTracking
	s := e.store(t, opts)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprint("s", i)
		mustSet(t, s, ids[i], "v")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		atOnce(ids, func(id string) { s.Set(bg, id, []byte("y"), time.Hour) }, func(id string) { s.Delete(bg, id) })
	})
	e.srv.Pause()
	wg.Wait()
	served := make(map[string]string, len(ids))
	for _, id := range ids {
		v, err := s.Get(bg, id)
		switch {
		case errors.Is(err, tiered.ErrNotFound):
			served[id] = "<absent>"
		case err != nil:
			served[id] = "<" + err.Error() + ">"
		default:
			served[id] = string(v)
		}
	}
	e.srv.Resume()
	waitReplayed(t, s)
	mismatch := 0
	for _, id := range ids {
		got, err := e.plain.Get(bg, "session:"+id).Result()
		if err != nil {
			got = "<absent>"
		}
		if got != served[id] {
			if mismatch++; mismatch <= 5 {
				t.Logf("%s: served %q once the Set and the Delete returned; Redis holds %q after the replay", id, served[id], got)
			}
		}
	}
	st := s.Stats()
	if uint64(mismatch) > st.ReplayConflicts+st.PendingLost {
		t.Fatalf("%d of %d sessions end in Redis other than served, %d conflicts and %d lost counted (stats %+v)",
			mismatch, len(ids), st.ReplayConflicts, st.PendingLost, st)
	}
	t.Logf("%d mismatches, stats %+v", mismatch, st)
}
