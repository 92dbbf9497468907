package tests

import (
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// twoStores returns two stores on one Redis, with their streams up.
func twoStores(t *testing.T, e *env, opts tiered.Options) (a, b *tiered.Store) {
	return e.store(t, opts), e.store(t, opts)
}

// cached reads id on s until the read is a local hit (the invalidations of
// earlier writes have arrived), so that the test starts from a cached copy.
func cached(t *testing.T, e *env, s *tiered.Store, id, want string) {
	t.Helper()
	waitFor(t, "a cached copy of "+id, func() bool {
		v, err := s.Get(bg, id)
		if err != nil || string(v) != want {
			return false
		}
		before := e.reads(t)
		v, err = s.Get(bg, id)
		return err == nil && string(v) == want && e.reads(t) == before
	})
}

func waitGone(t *testing.T, s *tiered.Store, id string) {
	t.Helper()
	waitFor(t, id+" to be gone", func() bool {
		_, err := s.Get(bg, id)
		return errors.Is(err, tiered.ErrNotFound)
	})
}

func waitValue(t *testing.T, s *tiered.Store, id, want string) {
	t.Helper()
	waitFor(t, id+" to read "+want, func() bool {
		v, err := s.Get(bg, id)
		return err == nil && string(v) == want
	})
}

// TestDeleteOnOneInstanceIsSeenByTheOther: with tracking, in either mode
// (InvalidationAuto is per-key).
func TestDeleteOnOneInstanceIsSeenByTheOther(t *testing.T) {
	t.Run("auto", func(t *testing.T) { deleteSeenByTheOther(t, tiered.InvalidationAuto, "per-key") })
	t.Run("broadcast", func(t *testing.T) { deleteSeenByTheOther(t, tiered.InvalidationTracking, "tracking") })
}

func deleteSeenByTheOther(t *testing.T, mode tiered.Invalidation, stream string) {
	e := newEnv(t)
	a, b := twoStores(t, e, tiered.Options{Invalidation: mode})
	if st := a.Stats(); st.Invalidation != stream {
		t.Fatalf("invalidation mode %q; want %s against redis-server", st.Invalidation, stream)
	}
	mustSet(t, a, "victim", "logged in")
	cached(t, e, b, "victim", "logged in")
	if err := a.Delete(bg, "victim"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, b, "victim")
	if st := b.Stats(); st.Invalidations == 0 {
		t.Fatal("B counted no invalidation")
	}
}

// TestChangesByOtherClientsAreSeen: DEL, SET, EXPIRE and FLUSHDB made by
// a plain client reach both stores.
func TestChangesByOtherClientsAreSeen(t *testing.T) { forModes(t, changesByOtherClientsAreSeen) }

func changesByOtherClientsAreSeen(t *testing.T, m mode) {
	e := newEnv(t)
	a, b := twoStores(t, e, tiered.Options{Invalidation: m.opt})
	for _, s := range []*tiered.Store{a, b} {
		for _, id := range []string{"del", "set", "exp", "flush"} {
			mustSet(t, s, id, "v1")
		}
	}
	for _, s := range []*tiered.Store{a, b} {
		for _, id := range []string{"del", "set", "exp", "flush"} {
			cached(t, e, s, id, "v1")
		}
	}
	e.plain.Del(bg, "session:del")
	e.plain.Set(bg, "session:set", "v2", time.Hour)
	e.plain.Expire(bg, "session:exp", time.Second)
	for _, s := range []*tiered.Store{a, b} {
		waitGone(t, s, "del")
		waitValue(t, s, "set", "v2")
	}
	for _, s := range []*tiered.Store{a, b} {
		waitGone(t, s, "exp") // its expiry is an invalidation too
		cached(t, e, s, "flush", "v1")
	}
	e.plain.FlushDB(bg)
	for _, s := range []*tiered.Store{a, b} {
		waitGone(t, s, "flush")
	}
}

// TestKilledTrackingConnection: CLIENT KILL on the tracking connection
// raises invalidation_lost and makes the store read Redis instead of its
// local copies until tracking is back, which it is by itself.
func TestKilledTrackingConnection(t *testing.T) { forModes(t, killedTrackingConnection) }

func killedTrackingConnection(t *testing.T, m mode) {
	e := newEnv(t)
	log := &alertLog{}
	// OpTimeout is also the wait before subscribing again: 1s of window.
	s := e.store(t, tiered.Options{Invalidation: m.opt, OpTimeout: time.Second, Telemetry: telemetry.Options{OnAlert: log.hook}})
	mustSet(t, s, "x", "old")
	cached(t, e, s, "x", "old")

	if killed := killListeners(t, e); killed != 1 {
		t.Fatalf("killed %d tracking connections; want 1", killed)
	}
	waitFor(t, "invalidation_lost", func() bool { n, _ := log.total(telemetry.AlertInvalidationLost); return n == 1 })
	if st := s.Stats(); st.Invalidation != "connecting" {
		t.Fatalf("stream state %q right after the loss; want connecting", st.Invalidation)
	}
	// A change nobody tells this instance about: it must not serve its copy.
	e.plain.Set(bg, "session:x", "new", time.Hour)
	wantGet(t, s, "x", "new")
	// What was read during the window is not trusted either.
	e.plain.Set(bg, "session:x", "newer", time.Hour)
	wantGet(t, s, "x", "newer")
	if st := s.Stats(); st.Invalidation != "connecting" {
		t.Fatalf("the stream came back within the test's window (%q): the checks above proved nothing", st.Invalidation)
	}
	e.plain.Set(bg, "session:x", "new", time.Hour)
	waitFor(t, "tracking to resume", func() bool { return s.Stats().Invalidation == m.stream })
	cached(t, e, s, "x", "new")
	e.plain.Del(bg, "session:x")
	waitGone(t, s, "x")
	if n, _ := log.total(telemetry.AlertInvalidationLost); n != 1 {
		t.Fatalf("invalidation_lost fired %d times; want once", n)
	}
}

// TestPublishModeWithoutTracking: against an in-process Redis without
// CLIENT TRACKING the stores publish their own changes.
func TestPublishModeWithoutTracking(t *testing.T) {
	mr := miniredis.RunT(t)
	newStore := func() *tiered.Store {
		c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { c.Close() })
		s, err := tiered.New(c, tiered.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		waitStream(t, s)
		return s
	}
	a, b := newStore(), newStore()
	if st := a.Stats(); st.Invalidation != "publish" {
		t.Fatalf("invalidation mode %q; want publish against miniredis", st.Invalidation)
	}
	mustSet(t, a, "victim", "logged in")
	wantGet(t, b, "victim", "logged in")
	wantGet(t, b, "victim", "logged in") // a local hit now
	if err := a.Delete(bg, "victim"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, b, "victim")
	mustSet(t, a, "other", "v1")
	wantGet(t, b, "other", "v1")
	mustSet(t, a, "other", "v2")
	waitValue(t, b, "other", "v2")
}
