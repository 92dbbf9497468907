package tests

import (
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// In per-key mode a Set of a session this instance does not hold keeps
// no local copy, only the digest of its value (lru.Cache.EndNoted): the
// base onto which a write of the session accepted during a later outage
// is replayed. These tests run that sequence: before, an instance's
// writes, others' changes or a FLUSHDB; then an outage write of the
// session; then the replay. They return what Redis holds afterwards.
func outageWriteAfter(t *testing.T, opts tiered.Options, before func(s *tiered.Store, plain *goredis.Client)) (string, tiered.Stats) {
	t.Helper()
	r := newNotesRig(t, opts) // tests/reviewnotes_test.go
	before(r.s, r.plain)
	return r.outage(t, nil)
}

func set(t *testing.T, s *tiered.Store, id, v string) {
	t.Helper()
	if err := s.Set(bg, id, []byte(v), time.Hour); err != nil {
		t.Fatal(err)
	}
}

// The store's own write of a new session is the base: the outage write
// replays onto it (it conflicted, and was dropped, before the digest was
// noted).
func TestOutageWriteAfterANewSessionsWriteReplaysOntoIt(t *testing.T) {
	for _, inv := range []tiered.Invalidation{tiered.InvalidationAuto, tiered.InvalidationTracking} {
		got, st := outageWriteAfter(t, tiered.Options{Invalidation: inv}, func(s *tiered.Store, _ *goredis.Client) {
			set(t, s, "fresh", "v1") // a new session: not kept here
			set(t, s, "fresh", "v2") // nor its update
		})
		if got != "outage" || st.ReplayConflicts != 0 {
			t.Fatalf("invalidation %d: Redis holds %q after the replay (%d conflicts); want the outage write", inv, got, st.ReplayConflicts)
		}
	}
}

// The digest is only what this instance wrote: a change made by another
// client since still wins the replay.
func TestOutageWriteAfterANewSessionChangedElsewhereConflicts(t *testing.T) {
	got, st := outageWriteAfter(t, tiered.Options{}, func(s *tiered.Store, plain *goredis.Client) {
		set(t, s, "fresh", "v1")
		if err := plain.Set(bg, "session:fresh", "theirs", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if got != "theirs" || st.ReplayConflicts != 1 {
		t.Fatalf("Redis holds %q after the replay (%d conflicts); want the other client's write, 1 conflict", got, st.ReplayConflicts)
	}
}

// A session the store deleted itself is absent as far as it knows: the
// outage write creates it again. A session another client deleted (a
// logout on another instance) is not revived by the replay: the key is
// absent, not the value noted. Without the digest, the replay took the
// absent key for its base and revived it.
func TestOutageWriteAfterANewSessionWasDeleted(t *testing.T) {
	got, st := outageWriteAfter(t, tiered.Options{}, func(s *tiered.Store, _ *goredis.Client) {
		set(t, s, "fresh", "v1")
		if err := s.Delete(bg, "fresh"); err != nil {
			t.Fatal(err)
		}
	})
	if got != "outage" || st.ReplayConflicts != 0 {
		t.Fatalf("after its own delete: Redis holds %q after the replay (%d conflicts); want the outage write", got, st.ReplayConflicts)
	}

	got, st = outageWriteAfter(t, tiered.Options{}, func(s *tiered.Store, plain *goredis.Client) {
		set(t, s, "fresh", "v1")
		if err := plain.Del(bg, "session:fresh").Err(); err != nil {
			t.Fatal(err)
		}
	})
	if got != "" || st.ReplayConflicts != 1 {
		t.Fatalf("after a delete elsewhere: Redis holds %q after the replay (%d conflicts); want the session to stay deleted", got, st.ReplayConflicts)
	}
}

// A FLUSHDB empties Redis: the digests noted before it are forgotten with
// the local copies, and the outage write replays onto the absent key.
func TestOutageWriteAfterANewSessionWasFlushed(t *testing.T) {
	got, st := outageWriteAfter(t, tiered.Options{}, func(s *tiered.Store, plain *goredis.Client) {
		set(t, s, "fresh", "v1")
		before := s.Stats().Invalidations
		if err := plain.FlushDB(bg).Err(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the flush to be heard", func() bool { return s.Stats().Invalidations > before })
	})
	if got != "outage" || st.ReplayConflicts != 0 {
		t.Fatalf("Redis holds %q after the replay (%d conflicts); want the outage write", got, st.ReplayConflicts)
	}
}

// A write that the outage tier refuses (ErrUnavailable: it does not fit)
// changes nothing: not the session's local copy, which still answers, nor
// the base of the next outage write, which still replays.
func TestARefusedOutageWriteKeepsTheBase(t *testing.T) {
	for _, held := range []bool{true, false} {
		r := newNotesRig(t, tiered.Options{Fallback: lru.Limits{MaxBytes: 4096}})
		srv, plain, s := r.srv, r.plain, r.s
		set(t, s, "sid", "v1")
		if held {
			if v, err := s.Get(bg, "sid"); err != nil || string(v) != "v1" {
				t.Fatalf("Get = %q, %v", v, err)
			}
		}
		srv.Pause()
		set(t, s, "tripper", "x")
		if err := s.Set(bg, "sid", make([]byte, 8192), time.Hour); !errors.Is(err, tiered.ErrUnavailable) {
			t.Fatalf("held %v: a write too large for the outage tier returned %v; want ErrUnavailable", held, err)
		}
		if held {
			if v, err := s.Get(bg, "sid"); err != nil || string(v) != "v1" {
				t.Fatalf("after the refused write Get = %q, %v; want the copy v1", v, err)
			}
		}
		set(t, s, "sid", "v2")
		srv.Resume()
		waitReplayed(t, s)
		if got, st := plain.Get(bg, "session:sid").Val(), s.Stats(); got != "v2" || st.ReplayConflicts != 0 {
			t.Fatalf("held %v: Redis holds %q after the replay (%d conflicts); want v2", held, got, st.ReplayConflicts)
		}
	}
}
