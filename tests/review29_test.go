package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// review29ProbeWhileATouchQueues is probeWhileATouchQueues with the
// store's options adjusted by tweak, and a check of the store's Stats
// once the probe returned (nil: none).
func review29ProbeWhileATouchQueues(t *testing.T, tweak func(*tiered.Options), probe func(*tiered.Store) error, want string, stats func(*testing.T, tiered.Stats)) {
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			srv, s, _, hold := heldProbeStore(t, m, tweak, "victim")
			plain := srv.Client()
			probed := make(chan error, 1)
			go func() { probed <- probe(s) }()
			<-hold.Held()
			if err := s.Touch(bg, "victim", time.Hour); err != nil {
				t.Fatalf("Touch while the probe is on its way = %v; want the held copy extended", err)
			}
			hold.Release()
			if err := <-probed; err != nil {
				t.Fatalf("probe = %v", err)
			}
			if stats != nil {
				stats(t, s.Stats())
			}
			check := func(when string) {
				t.Helper()
				v, err := s.Get(bg, "victim")
				if want == "" && !errors.Is(err, tiered.ErrNotFound) || want != "" && string(v) != want {
					t.Errorf("Get(victim) %s = %.16q, %v; want %.16q", when, v, err, want)
				}
			}
			check("once the probe returned")
			waitReplayed(t, s)
			if v := plain.Get(bg, "session:victim").Val(); v != want {
				t.Errorf("Redis holds %.16q for victim after the replay; want %.16q", v, want)
			}
			check("after the replay")
		})
	}
}

// FAILED at b45c92a, fixed by 00a3e25 (all three modes): Get(victim) once the probe
// returned = "held-here", <nil>; want "newer-nnn...".
//
// TestReview29SetTooLargeForTheOutageTierSentWhileATouchQueues: as
// TestSetSentWhileATouchQueuesIsNotUndone, but the probe's value is larger
// than the whole outage tier (Options.Fallback.MaxBytes): requeue's
// outage.write returns stored false and changes nothing, and requeue
// ignores it, so the Touch's pending write of the older copy stays. The
// Set returned nil and Redis holds its value, yet the store serves the
// older copy until the replay (read after write broken), and the replay
// then conflicts (replay_conflict) with the store's own write.
func TestReview29SetTooLargeForTheOutageTierSentWhileATouchQueues(t *testing.T) {
	big := "newer-" + strings.Repeat("n", 300)
	review29ProbeWhileATouchQueues(t,
		func(o *tiered.Options) { o.Fallback = lru.Limits{MaxEntries: 8, MaxBytes: lru.EntryOverhead + 100} },
		func(s *tiered.Store) error { return s.Set(bg, "victim", []byte(big), time.Hour) },
		big, nil)
}

// FAILED at b45c92a, fixed by 00a3e25 (all three modes, when the replay has not drained the
// other tombstone first): Delete(victim) = ErrUnavailable with no
// tombstones_full alert, and Get(victim) = "held-here" while Redis holds
// no victim.
//
// TestReview29DeleteSentWhileATouchQueuesWithTombstonesFull: as
// TestDeleteSentWhileATouchQueuesIsNotUndone, but while the Delete (the
// half-open probe) is on its way, a Delete of another session, refused by
// the breaker, takes the last tombstone (MaxTombstones 1) before the Touch
// queues the held copy. The DEL lands; requeue cannot record a tombstone
// and returns ErrUnavailable. Two problems:
//   - no tombstones_full alert, unlike a Delete refused by the tier in
//     Store.pending: the operator is not told deletes are failing;
//   - Redis no longer holds victim, yet the store serves the Touch's
//     pending copy of it (the very state b45c92a set out to avoid: the
//     Touch, concurrent, should take effect first), and a retried Delete
//     queues behind it and fails too, until the replay.
//
// Requeue could instead drop the Touch's pending write (never sent: Redis
// holds what c left) when no tombstone is left.
func TestReview29DeleteSentWhileATouchQueuesWithTombstonesFull(t *testing.T) {
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			log := &alertLog{}
			srv, s, _, hold := heldProbeStore(t, m, func(o *tiered.Options) {
				o.MaxTombstones = 1
				o.Telemetry = telemetry.Options{OnAlert: log.hook}
			}, "victim", "other")
			plain := srv.Client()
			probed := make(chan error, 1)
			go func() { probed <- s.Delete(bg, "victim") }()
			<-hold.Held()
			if err := s.Delete(bg, "other"); err != nil { // refused: the last tombstone
				t.Fatalf("Delete(other) while the probe is on its way = %v", err)
			}
			if err := s.Touch(bg, "victim", time.Hour); err != nil {
				t.Fatalf("Touch while the probe is on its way = %v", err)
			}
			hold.Release()
			err := <-probed
			t.Logf("Delete(victim) = %v", err)
			if n, _ := plain.Exists(bg, "session:victim").Result(); n != 0 {
				t.Fatalf("Redis still holds victim: the DEL did not land (the test's premise)")
			}
			if err == nil {
				return // recorded after all
			}
			if !errors.Is(err, tiered.ErrUnavailable) {
				t.Fatalf("Delete(victim) = %v; want nil or ErrUnavailable", err)
			}
			if n, _ := log.total(telemetry.AlertTombstonesFull); n == 0 {
				t.Errorf("Delete(victim) returned %v, tombstones full, but no tombstones_full alert fired", err)
			}
			v, gerr := s.Get(bg, "victim")
			t.Logf("Get(victim) = %q, %v; Stats %+v", v, gerr, s.Stats())
			if err := gerr; err == nil {
				t.Errorf("Get(victim) after its DEL landed in Redis = %q: the Touch's copy, queued before, is served", v)
			}
		})
	}
}

// FAILED at b45c92a, fixed by 00a3e25 (all three modes): PendingLost 1 once the probe
// returned; Redis holds "" for other after the replay (tracking modes;
// in publish mode other's replay was already in flight and landed,
// though counted lost).
//
// TestReview29RequeuedSetEvictsAnotherSessionsWrite: while a Set of victim
// (the half-open probe) is on its way, a Set of other, refused by the
// breaker, is accepted into the outage tier (it never reached Redis), and
// a Touch queues victim's held copy there. The probe lands and returns
// nil; requeue then writes its value, which Redis already holds, into the
// outage tier, which is too small for it beside other's write: other's
// acknowledged write, which Redis does not have, is evicted (pending_lost)
// to make room for a copy of a value Redis has. Its loss is counted, but
// needless: dropping the Touch's pending write (never sent) would have
// superseded it at no cost.
func TestReview29RequeuedSetEvictsAnotherSessionsWrite(t *testing.T) {
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			srv, s, _, hold := heldProbeStore(t, m, func(o *tiered.Options) {
				o.Fallback = lru.Limits{MaxEntries: 8, MaxBytes: 2*lru.EntryOverhead + 4*small}
			}, "victim")
			plain := srv.Client()
			big := strings.Repeat("n", 3*small)
			probed := make(chan error, 1)
			go func() { probed <- s.Set(bg, "victim", []byte(big), time.Hour) }()
			<-hold.Held()
			otherValue := strings.Repeat("o", 2*small)
			if err := s.Set(bg, "other", []byte(otherValue), time.Hour); err != nil { // refused: pending
				t.Fatalf("Set(other) while the probe is on its way = %v", err)
			}
			if err := s.Touch(bg, "victim", time.Hour); err != nil {
				t.Fatalf("Touch while the probe is on its way = %v", err)
			}
			hold.Release()
			if err := <-probed; err != nil {
				t.Fatalf("probe = %v", err)
			}
			if st := s.Stats(); st.PendingLost != 0 {
				t.Errorf("Stats once the probe returned: %+v; want no pending write lost: victim's value is in Redis already", st)
			}
			waitReplayed(t, s)
			if v := plain.Get(bg, "session:other").Val(); v != otherValue {
				t.Errorf("Redis holds %.16q for other after the replay; want its acknowledged write", v)
			}
			if v := plain.Get(bg, "session:victim").Val(); v != big {
				t.Errorf("Redis holds %.16q for victim after the replay; want the probe's", v)
			}
		})
	}
}

// Passed at b45c92a. Per-key mode, where it flaked (the tracking
// connection reconnecting after the pause reopened the breaker), is left
// out: see probeModes.
//
// TestReview29DeleteSentWhileASetQueues: as
// TestDeleteSentWhileATouchQueuesIsNotUndone, with a Set of victim,
// refused by the breaker, accepted into the outage tier (and the local
// copy) while the Delete is on its way: the Delete returned last, so the
// session is gone, at once, after the replay, and in Redis.
func TestReview29DeleteSentWhileASetQueues(t *testing.T) {
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			srv, s, clock, hold := heldProbeStore(t, m, nil, "victim")
			plain := srv.Client()
			probed := make(chan error, 1)
			go func() { probed <- s.Delete(bg, "victim") }()
			<-hold.Held()
			if err := s.Set(bg, "victim", []byte("concurrent"), time.Hour); err != nil {
				t.Fatalf("Set while the probe is on its way = %v", err)
			}
			hold.Release()
			if err := <-probed; err != nil {
				t.Fatalf("probe = %v", err)
			}
			{
				v, err := s.Get(bg, "victim")
				rv, rerr := plain.Get(bg, "session:victim").Result()
				t.Logf("once the Delete returned: Get = %.16q, %v; Redis = %.16q, %v; Stats %+v", v, err, rv, rerr, s.Stats())
			}
			check := func(when string) {
				t.Helper()
				for range 3 {
					if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
						t.Errorf("Get(victim) %s = %q, %v; want ErrNotFound", when, v, err)
					}
				}
			}
			check("once the Delete returned")
			waitReplayedAdvancing(t, s, clock)
			if n, _ := plain.Exists(bg, "session:victim").Result(); n != 0 {
				t.Errorf("Redis holds victim after the replay")
			}
			check("after the replay")
		})
	}
}

// TestReview29SetSentWhileADeleteQueues: a Set of victim is the half-open
// probe when a Delete of victim, refused by the breaker, leaves a
// tombstone. The Set returned last: requeue records it after the
// tombstone (replayed DEL, then SET onto an absent key), so the store
// serves its value at once and after the replay, and Redis ends with it.
//
// Not a failure seen at b45c92a when the Set wins; but in publish mode it
// may not (1 run in 4): the Set's announce is a round trip to Redis
// before requeue, during which the recovery loop replays the tombstone's
// DEL after the SET landed; requeue then finds no state and the session
// ends deleted, though the Set returned last. That order is a valid
// linearization (the two overlapped), and the store stays consistent
// (NotFound, Redis empty), so "" is accepted as well, if consistent.
func TestReview29SetSentWhileADeleteQueues(t *testing.T) {
	review29ProbeWhileAChangeQueues(t,
		func(s *tiered.Store) error { return s.Set(bg, "victim", []byte("newer"), time.Hour) },
		func(s *tiered.Store) error { return s.Delete(bg, "victim") },
		"newer|")
}

// review29ProbeWhileAChangeQueues is probeWhileATouchQueues with
// concurrent, refused by the breaker, in place of the Touch. want "a|b"
// accepts a or b, the same at every check.
func review29ProbeWhileAChangeQueues(t *testing.T, probe, concurrent func(*tiered.Store) error, want string) {
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			want := want // each subtest picks its own
			srv, s, clock, hold := heldProbeStore(t, m, nil, "victim")
			plain := srv.Client()
			probed := make(chan error, 1)
			go func() { probed <- probe(s) }()
			<-hold.Held()
			if err := concurrent(s); err != nil {
				t.Fatalf("concurrent change while the probe is on its way = %v", err)
			}
			hold.Release()
			if err := <-probed; err != nil {
				t.Fatalf("probe = %v", err)
			}
			if alt, other, ok := strings.Cut(want, "|"); ok { // either, as the first read says
				want = alt
				if v, err := s.Get(bg, "victim"); err != nil || string(v) != alt {
					t.Logf("first Get(victim) once the probe returned = %.16q, %v: want %.16q throughout", v, err, other)
					want = other
				}
			}
			check := func(when string) {
				t.Helper()
				for range 3 {
					v, err := s.Get(bg, "victim")
					if want == "" && !errors.Is(err, tiered.ErrNotFound) || want != "" && string(v) != want {
						t.Errorf("Get(victim) %s = %.16q, %v; want %.16q", when, v, err, want)
					}
				}
			}
			{
				v, err := s.Get(bg, "victim")
				rv, rerr := plain.Get(bg, "session:victim").Result()
				t.Logf("once the probe returned: Get = %.16q, %v; Redis = %.16q, %v", v, err, rv, rerr)
			}
			t.Logf("Stats once the probe returned: %+v", s.Stats())
			check("once the probe returned")
			waitReplayedAdvancing(t, s, clock)
			if v := plain.Get(bg, "session:victim").Val(); v != want {
				t.Errorf("Redis holds %.16q for victim after the replay; want %.16q", v, want)
			}
			check("after the replay")
		})
	}
}

// TestReview29TouchSentWhileADeleteQueues: a Touch is the probe while a
// Delete, refused, leaves a tombstone: the Touch (found in Redis) must not
// revive the session; it stays deleted.
func TestReview29TouchSentWhileADeleteQueues(t *testing.T) {
	review29ProbeWhileAChangeQueues(t,
		func(s *tiered.Store) error {
			if err := s.Touch(bg, "victim", time.Hour); !errors.Is(err, tiered.ErrNotFound) { // it may find it deleted: concurrent
				return err
			}
			return nil
		},
		func(s *tiered.Store) error { return s.Delete(bg, "victim") },
		"")
}

// TestReview29SetSentWhileASetQueues: the probe's Set returned last: its
// value wins over the concurrent Set accepted into the outage tier.
func TestReview29SetSentWhileASetQueues(t *testing.T) {
	review29ProbeWhileAChangeQueues(t,
		func(s *tiered.Store) error { return s.Set(bg, "victim", []byte("newer"), time.Hour) },
		func(s *tiered.Store) error { return s.Set(bg, "victim", []byte("concurrent"), time.Hour) },
		"newer")
}
