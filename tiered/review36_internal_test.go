package tiered

import (
	"errors"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// openBreaker36 returns a breaker that rejects every call (ErrOpen) for an
// hour: a write it refuses is accepted into the outage tier unsent.
func openBreaker36(t *testing.T) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(breaker.Settings{Failures: 1, OpenTimeout: time.Hour}, func(error) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	b.Do(bg31, func() error { return errors.New("down") })
	if !b.Rejecting() {
		t.Fatal("the breaker did not open")
	}
	return b
}

// TestReview36SupersededWriteKeepsItsCopy: a change c that Redis took
// ends its local write (endLocal), then, in the window before requeue
// (announce; a round trip in publish mode), a Set P of the same id runs
// whole: the breaker refuses it, so it is accepted into the outage tier,
// unsent, and its local write, which overlapped no other, leaves P's
// value as a fresh copy (accepted: EndSet). requeue then finds P's pending
// write unsent and supersedes it (c, which Redis holds, replaces it) and
// ends its own local write with keepLocal: P's copy stays fresh and is
// served by localHit once the outage tier is empty. Redis holds c's
// outcome: after a Delete, the session deleted (and acknowledged) is
// readable here; after a Set, reads return P's value, which replay will
// never write, until the copy expires and they flip to c's value.
func TestReview36SupersededWriteKeepsItsCopy(t *testing.T) {
	for _, k := range []kind{kindDelete, kindSet} {
		t.Run(kindNames[k], func(t *testing.T) {
			srv := redistest.Start(t)
			s := review31Store(t, srv.Addr, Options{OpTimeout: 2 * time.Second})
			plain := srv.Client()
			if err := s.Set(bg31, "x", []byte("v0"), time.Hour); err != nil {
				t.Fatal(err)
			}
			// c, as write runs it, up to its endLocal.
			c := change{kind: k, id: "x", value: []byte("vc"), ttl: time.Hour}
			queue, _, mark, err := s.queues(bg31, c)
			if queue || err != nil {
				t.Fatalf("queues: %v, %v", queue, err)
			}
			w := s.beginLocal("x")
			if k == kindDelete {
				err = s.remote.Delete(bg31, "x")
			} else {
				err = s.remote.Set(bg31, "x", c.value, c.ttl)
			}
			if err != nil {
				t.Fatal(err)
			}
			s.endLocal(w, c, true)
			// P, whole, before c's requeue: refused by the breaker.
			brk := s.brk
			s.brk = openBreaker36(t)
			if err := s.Set(bg31, "x", []byte("v1"), time.Hour); err != nil {
				t.Fatalf("Set during the outage: %v", err)
			}
			s.brk = brk
			if st := s.Stats(); st.PendingWrites != 1 {
				t.Fatalf("P is not pending: %+v", st)
			}
			// c's requeue, as write calls it.
			if !(s.out.active() || s.out.changedSince() != mark) {
				t.Fatal("write would not requeue c")
			}
			if err := s.requeue(bg31, c, mark); err != nil {
				t.Fatalf("requeue: %v", err)
			}
			// c has returned: what Redis holds is c's outcome.
			inRedis, rerr := plain.Get(bg31, "session:x").Result()
			v, err := s.Get(bg31, "x")
			switch k {
			case kindDelete:
				if err == nil {
					t.Fatalf("x, deleted and acknowledged (Redis: %q, %v), is served here: %q (P's copy, whose pending write requeue superseded; Stats %+v)", inRedis, rerr, v, s.Stats())
				}
			default:
				if err != nil || string(v) != inRedis {
					t.Fatalf("Get after c returned: %q, %v; Redis holds %q (%v), and no replay will change it (Stats %+v): P's copy, superseded, is served", v, err, inRedis, rerr, s.Stats())
				}
			}
		})
	}
}
