package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// Second review of the replay notes (8622a0e). Each test says what it
// checks and what it found on 8622a0e.

// A write whose outcome is unknown adds its digest beside what is noted of
// the session (EndUnsure). For a session this instance knows nothing of
// (no copy, no note: a new session), what Redis holds before the write is
// unknown too, and lastSeen's default for "unknown", an absent key, must
// stay a base beside the digest: the write may not have landed. It does
// not: the note of the unsure write is the only base, so when the write
// did not land (here: its context was cancelled before it was sent; a
// login whose client went away), the acknowledged outage write of the new
// session conflicts with the absent key and is dropped. Before 8622a0e the
// failed write ended with EndDelete and the base was an absent key.
func TestReviewNotes2UnsureFirstWriteOfANewSession(t *testing.T) {
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	for _, m := range []tiered.Invalidation{tiered.InvalidationAuto, tiered.InvalidationTracking, tiered.InvalidationPublish} {
		t.Run(fmt.Sprint("invalidation-", m), func(t *testing.T) {
			r := newNotesRig(t, tiered.Options{Invalidation: m})
			if err := r.s.Set(cancelled, "fresh", []byte("v0"), time.Hour); err == nil {
				t.Fatal("a Set with a cancelled context succeeded")
			}
			if n := r.plain.Exists(bg, "session:fresh").Val(); n != 0 {
				t.Fatalf("the cancelled Set landed (EXISTS %d); the test needs it not to", n)
			}
			got, st := r.outage(t, nil)
			if got != "outage" || st.ReplayConflicts != 0 {
				t.Fatalf("Redis holds %q after the replay (%d conflicts); want the acknowledged outage write", got, st.ReplayConflicts)
			}
		})
	}
}

// The same with the first write of a new session sent when Redis became
// unreachable (the proxy cut this instance off: it never landed) and
// refused by the outage tier (too large): setPending ends it with
// EndUnsure, whose digest becomes the only base.
func TestReviewNotes2SentRefusedFirstWriteOfANewSession(t *testing.T) {
	r := newNotesRig(t, tiered.Options{Fallback: lru.Limits{MaxBytes: 4096}})
	r.proxy.Cut()
	if err := r.s.Set(bg, "fresh", make([]byte, 8192), time.Hour); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("a sent write too large for the outage tier returned %v; want ErrUnavailable", err)
	}
	if n := r.plain.Exists(bg, "session:fresh").Val(); n != 0 {
		t.Fatalf("the refused Set landed (EXISTS %d); the test needs it not to", n)
	}
	set(t, r.s, "fresh", "outage")
	r.proxy.Restore()
	waitReplayed(t, r.s)
	if got, st := r.plain.Get(bg, "session:fresh").Val(), r.s.Stats(); got != "outage" || st.ReplayConflicts != 0 {
		t.Fatalf("Redis holds %.8q after the replay (%d conflicts); want the acknowledged outage write", got, st.ReplayConflicts)
	}
}

// A write of a held session on the tracking connection that another write
// of its id overlapped ends in the order Redis ran them
// (lru.Cache.EndSetIfOverlapped): its value is then the one Redis holds,
// and is served. It must replace what is noted of the session, as a Fill
// or an EndSet that overlapped nothing does (README: "A value Redis is
// known to hold ... replaces them"). It does not: the notes stay beside a
// fresh copy, and nothing but a later Set or Fill forgets them.
//
// Here a logout of this instance fails (its context was cancelled:
// EndUnsure notes the absent key), the session goes on (v2, overlapped by
// another client's write, so ended by EndSetIfOverlapped), then another
// instance logs the session out. The outage write of this instance that
// follows must conflict (Redis wins: the key is absent). The stale note of
// the absent key makes it replay instead: the logged-out session is
// revived.
func TestReviewNotes2OrderedOverlappedSetForgetsTheNotes(t *testing.T) {
	for _, m := range trackingModes {
		t.Run(m.name, func(t *testing.T) {
			r := newNotesRig(t, tiered.Options{Invalidation: m.opt, OpTimeout: time.Second})
			set(t, r.s, "fresh", "v1")
			if v, err := r.s.Get(bg, "fresh"); err != nil || string(v) != "v1" { // held (per-key: tracked)
				t.Fatalf("Get = %q, %v", v, err)
			}
			cancelled, cancel := context.WithCancel(bg)
			cancel()
			if err := r.s.Delete(cancelled, "fresh"); err == nil {
				t.Fatal("a Delete with a cancelled context succeeded")
			}

			// v2, overlapped by another client's write that Redis runs first.
			const v2 = "v2-held-in-the-network"
			hold := r.proxy.Hold([]byte(v2))
			t.Cleanup(hold.Release)
			done := make(chan error, 1)
			go func() { done <- r.s.Set(bg, "fresh", []byte(v2), time.Hour) }()
			<-hold.Held()
			before := r.s.Stats().Invalidations
			if err := r.plain.Set(bg, "session:fresh", "other", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the other client's invalidation", func() bool { return r.s.Stats().Invalidations > before })
			hold.Release()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := r.plain.Get(bg, "session:fresh").Val(); got != v2 {
				t.Fatalf("Redis holds %q; want %q", got, v2)
			}
			if v, err := r.s.Get(bg, "fresh"); err != nil || string(v) != v2 {
				t.Fatalf("Get = %q, %v; want %q", v, err, v2)
			}

			before = r.s.Stats().Invalidations
			if err := r.plain.Del(bg, "session:fresh").Err(); err != nil { // a logout on another instance
				t.Fatal(err)
			}
			waitFor(t, "the logout's invalidation", func() bool { return r.s.Stats().Invalidations > before })
			if got, st := r.outage(t, nil); got != "" {
				t.Fatalf("Redis holds %q after the replay (%d conflicts): a session logged out elsewhere was revived", got, st.ReplayConflicts)
			}
		})
	}
}

// A Set whose caller gave up while it was in the network (EndUnsure: its
// digest joins the notes) can land after a read of Redis, which found the
// old value: the Fill forgets the note of the write, which lands next. The
// store then holds the old value as its only base while Redis holds the
// store's own write, and its acknowledged outage write conflicts with it
// and is dropped (README, Replay: a write replays onto "a value this
// instance wrote that may have landed"). The late reply reaches the store
// (broadcast mode: it revokes the copy as another client's change would;
// publish mode: nothing), but says nothing to the notes. Per-key mode
// reads behind the write on one connection: no read can come between.
func TestReviewNotes2CancelledSetLandingAfterAReadStaysABase(t *testing.T) {
	for _, m := range []tiered.Invalidation{tiered.InvalidationTracking, tiered.InvalidationPublish} {
		t.Run(fmt.Sprint("invalidation-", m), func(t *testing.T) {
			r := newNotesRig(t, tiered.Options{Invalidation: m, OpTimeout: 2 * time.Second})
			set(t, r.s, "fresh", "old")
			if v, err := r.s.Get(bg, "fresh"); err != nil || string(v) != "old" {
				t.Fatalf("Get = %q, %v", v, err)
			}
			const value = "new-value-held-in-the-network"
			hold := cancelWhileHeld(t, r.proxy, []byte(value), "Set", func(ctx context.Context) error {
				return r.s.Set(ctx, "fresh", []byte(value), time.Hour)
			})
			if v, err := r.s.Get(bg, "fresh"); err != nil || string(v) != "old" { // a read of Redis: not landed yet
				t.Fatalf("Get = %q, %v; want old", v, err)
			}
			hold.Release()
			waitFor(t, "the held SET to land", func() bool { return r.plain.Get(bg, "session:fresh").Val() == value })
			set(t, r.s, "other", "x") // broadcast: its OK follows the SET's on the same connection
			got, st := r.outage(t, nil)
			if got != "outage" || st.ReplayConflicts != 0 {
				t.Fatalf("Redis holds %q after the replay (%d conflicts); want the acknowledged outage write", got, st.ReplayConflicts)
			}
		})
	}
}

// "A note lasts as long as the session would" (README): a Touch makes the
// session last longer in Redis, but not its note. In per-key mode a Set of
// a session not held notes its digest until the Set's TTL; a Touch of the
// session (not held: nothing to extend here) leaves the note to expire
// with the old TTL. Past it the session has no base: (a) the acknowledged
// outage write conflicts with the store's own write, still in Redis, and
// is dropped; (b) a session logged out elsewhere is revived.
func TestReviewNotes2TouchExtendsTheNote(t *testing.T) {
	const short = 300 * time.Millisecond
	// The store's clock runs ahead of Redis's by what setTouched moves it:
	// the first TTL passes for the store's notes at once, while Redis, on
	// its own clock, holds the session it was told to keep for an hour.
	rig := func(t *testing.T) *notesRig {
		var ahead atomic.Int64
		r := newNotesRig(t, tiered.Options{Clock: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }})
		if err := r.s.Set(bg, "fresh", []byte("v1"), short); err != nil {
			t.Fatal(err)
		}
		if err := r.s.Touch(bg, "fresh", time.Hour); err != nil {
			t.Fatal(err)
		}
		ahead.Store(int64(2 * short)) // the first TTL passes; the session lives on in Redis
		if got := r.plain.Get(bg, "session:fresh").Val(); got != "v1" {
			t.Fatalf("Redis holds %q; want the touched v1", got)
		}
		return r
	}
	t.Run("own-write", func(t *testing.T) {
		r := rig(t)
		got, st := r.outage(t, nil)
		if got != "outage" || st.ReplayConflicts != 0 {
			t.Fatalf("Redis holds %q after the replay (%d conflicts); want the acknowledged outage write", got, st.ReplayConflicts)
		}
	})
	t.Run("deleted-elsewhere", func(t *testing.T) {
		r := rig(t)
		if err := r.plain.Del(bg, "session:fresh").Err(); err != nil { // a logout on another instance
			t.Fatal(err)
		}
		if got, st := r.outage(t, nil); got != "" {
			t.Fatalf("Redis holds %q after the replay (%d conflicts): a session deleted elsewhere was revived", got, st.ReplayConflicts)
		}
	})
}

// Coverage (passes on 8622a0e): a logout that overlapped a write of the
// same session now leaves the copy in the local tier, out of service,
// where it used to be dropped. It must not be served: not as a hit, not
// stale during an outage, not extended by an outage Touch.
func TestReviewNotes2OverlappedLogoutIsNeverServed(t *testing.T) {
	for _, m := range trackingModes {
		t.Run(m.name, func(t *testing.T) {
			r := newNotesRig(t, tiered.Options{Invalidation: m.opt, OpTimeout: time.Second})
			set(t, r.s, "s", "v1")
			if v, err := r.s.Get(bg, "s"); err != nil || string(v) != "v1" {
				t.Fatalf("Get = %q, %v", v, err)
			}
			const v2 = "v2-held-in-the-network"
			hold := r.proxy.Hold([]byte(v2))
			t.Cleanup(hold.Release)
			setDone, delDone := make(chan error, 1), make(chan error, 1)
			go func() { setDone <- r.s.Set(bg, "s", []byte(v2), time.Hour) }()
			<-hold.Held()
			go func() { delDone <- r.s.Delete(bg, "s") }()
			waitFor(t, "the DEL to wait behind the held SET", func() bool { return bytes.Contains(hold.Behind(), []byte("DEL")) })
			hold.Release()
			if err := <-setDone; err != nil {
				t.Fatal(err)
			}
			if err := <-delDone; err != nil {
				t.Fatal(err)
			}
			if n := r.plain.Exists(bg, "session:s").Val(); n != 0 {
				t.Fatalf("EXISTS = %d after the logout", n)
			}
			if v, err := r.s.Get(bg, "s"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Get after the logout = %q, %v", v, err)
			}
			r.srv.Pause()
			defer r.srv.Resume()
			set(t, r.s, "tripper", "x")
			if v, err := r.s.Get(bg, "s"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Get during the outage = %q, %v; want ErrNotFound", v, err)
			}
			if err := r.s.Touch(bg, "s", time.Hour); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Touch during the outage = %v; want ErrNotFound", err)
			}
			if v, err := r.s.Get(bg, "s"); !errors.Is(err, tiered.ErrNotFound) {
				t.Fatalf("Get after the outage Touch = %q, %v; want ErrNotFound", v, err)
			}
		})
	}
}
