package tiered

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

var bg31 = context.Background()

// review31Store returns a store on addr whose recovery loop is stopped, so
// that the test makes each Fence (settle) itself, at the moment it
// chooses; Close still makes the final replay.
func review31Store(t *testing.T, addr string, opts Options) *Store {
	t.Helper()
	client := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	s, err := New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); client.Close() })
	s.endLife()
	s.bg.Wait()
	return s
}

// doubt31 reports a Set of id whose caller gave up, ended without a reply.
func doubt31(s *Store, id, value string) {
	s.abandoned(redis.Abandoned{ID: id, Kind: redis.WriteSet, Value: []byte(value)})
}

// TestReview31SettledFullForgetsTheDoubt: settled keeps at most
// MaxTombstones ids, and fenced drops the others silently (no settledAll
// fallback, unlike unfenced's unfencedAll). A Set of x sent before a
// write of x in doubt was recorded, and answered after the Fence that
// settled it, may have been undone by that write landing in between:
// with room in settled it is requeued (as in
// TestReview30WriteLandedBeforeTheFenceIsRequeued); with settled full of
// other ids fenced within settledFor, unfencedSince finds nothing and the
// Set is not requeued: Redis may keep the late value.
func TestReview31SettledFullForgetsTheDoubt(t *testing.T) {
	for _, full := range []bool{false, true} {
		name := "settled has room"
		if full {
			name = "settled full"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			proxy := redistest.NewProxy(t, srv.Addr)
			s := review31Store(t, proxy.Addr, Options{OpTimeout: 2 * time.Second, MaxTombstones: 2})
			if full {
				doubt31(s, "a", "late-a")
				doubt31(s, "b", "late-b")
				s.settle(bg31, s.out.fenceMark()) // settled: {a, b}, for settledFor
			}
			hold := proxy.Hold([]byte("x-new"))
			defer hold.Release()
			errc := make(chan error, 1)
			go func() { errc <- s.Set(bg31, "x", []byte("x-new"), time.Hour) }()
			<-hold.Held()                     // sent, not executed yet
			doubt31(s, "x", "x-late")         // a write of x in doubt, which may land after x-new
			s.settle(bg31, s.out.fenceMark()) // the Fence: nothing lands after it
			hold.Release()                    // x-new answered after the Fence
			if err := <-errc; err != nil {
				t.Fatalf("Set: %v", err)
			}
			if st := s.Stats(); st.PendingWrites != 1 {
				t.Fatalf("a Set answered after the Fence that settled a write of its id in doubt recorded after it was sent: %d pending writes, want 1 (requeued)", st.PendingWrites)
			}
		})
	}
}

// TestReview31DeleteThatWaitedForTheFenceIsReplayedLater: a Delete of x
// waits for the Fence of a write of x in doubt (mark taken before the
// wait). Meanwhile another write of x is reported in doubt; the Fence
// covers both, and only then is the Delete sent: nothing can land after
// it. Yet requeue finds settled[x].seq > mark and records the Delete as a
// tombstone, acknowledged to its caller. The tombstone's replay, an
// unconditional DEL, then deletes the session that was set since (a new
// login on another instance, here a plain client).
func TestReview31DeleteThatWaitedForTheFenceIsReplayedLater(t *testing.T) {
	srv := redistest.Start(t)
	s := review31Store(t, srv.Addr, Options{OpTimeout: 2 * time.Second})
	doubt31(s, "x", "late1")
	errc := make(chan error, 1)
	go func() { errc <- s.Delete(bg31, "x") }()
	waitFor31(t, "the Delete to wait for the Fence", func() bool {
		s.out.mu.Lock()
		defer s.out.mu.Unlock()
		return s.out.fenceDone != nil
	})
	doubt31(s, "x", "late2")          // a second write of x in doubt, before the Fence
	s.settle(bg31, s.out.fenceMark()) // covers both: the Delete is sent after it
	if err := <-errc; err != nil {
		t.Fatalf("Delete: %v", err)
	}
	plain := srv.Client()
	if err := plain.Set(bg31, "session:x", "new-login", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	pending := s.Stats().PendingDeletes
	s.replay(bg31, false) // what the recovery loop does at once
	if v, err := plain.Get(bg31, "session:x").Result(); err != nil || v != "new-login" {
		t.Fatalf("Redis holds %q (%v) after a session set since the Delete: the Delete, sent after the Fence, was requeued (%d pending deletes) and replayed over it", v, err, pending)
	}
}

func waitFor31(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition
	}
}

// TestReview31WaitForTheFenceOpensTheBreaker: a Set of x waits for the
// Fence of a write of x in doubt, and the wait and the Redis call share one
// OpTimeout. The Fence comes late in that budget (it waited for a lane's
// batch, or Redis was briefly slow); the SET then has a few milliseconds,
// and Redis, which answers it in tens, is counted by the breaker as
// failing: brk.Do is given the caller's context, not the call's, so the
// deadline the wait shortened is an infrastructure failure. With
// Breaker.Failures 1 the breaker opens, and the store serves every session
// from memory, although Redis answered everything it was given in time.
func TestReview31WaitForTheFenceOpensTheBreaker(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	const opTimeout = 300 * time.Millisecond
	s := review31Store(t, proxy.Addr, Options{OpTimeout: opTimeout, Breaker: breakerSettings31()})
	doubt31(s, "x", "late")
	hold := proxy.Hold([]byte("x-new")) // Redis answers the SET once released
	defer hold.Release()
	errc := make(chan error, 1)
	go func() { errc <- s.Set(bg31, "x", []byte("x-new"), time.Hour) }()
	waitFor31(t, "the Set to wait for the Fence", func() bool {
		s.out.mu.Lock()
		defer s.out.mu.Unlock()
		return s.out.fenceDone != nil
	})
	time.Sleep(opTimeout - 30*time.Millisecond) // the Fence is made late in the Set's budget
	s.settle(bg31, s.out.fenceMark())
	<-hold.Held()
	time.AfterFunc(50*time.Millisecond, hold.Release) // Redis answers the SET in 50ms
	err := <-errc
	if st := s.Stats(); st.Breaker != "closed" {
		t.Fatalf("after a Set that waited for the Fence and had %v left for a SET Redis answers in 50ms (Set: %v), the breaker is %s: Redis was counted as failing", 30*time.Millisecond, err, st.Breaker)
	}
}

func breakerSettings31() breaker.Settings {
	return breaker.Settings{Failures: 1, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour}
}
