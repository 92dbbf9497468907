package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// Review 4 (910f221: the notes in pointer-free slots linked by index),
// through tiered.Store against a real redis-server. Per-key mode (Auto):
// a Set of a session this instance does not hold keeps only a note.

// replayOutage pauses Redis, trips the breaker, writes "outage" to each of
// ids (acknowledged by the outage tier), resumes Redis and waits for the
// replay.
func (r *notesRig) replayOutage(t *testing.T, ids ...string) tiered.Stats {
	t.Helper()
	r.srv.Pause()
	set(t, r.s, "tripper", "x")
	for _, id := range ids {
		set(t, r.s, id, "outage")
	}
	r.srv.Resume()
	waitReplayed(t, r.s)
	return r.s.Stats()
}

// A flood of new sessions, 2.5 times Local.MaxEntries (one shard of 600
// notes: slots evicted from the tail and taken again): the notes of the
// most recently written sessions stay bases, the least recently written
// are forgotten first. An outage write of a recent session replays onto
// the store's own value; one of a recent session deleted elsewhere
// meanwhile conflicts (not revived); one of the first session, whose note
// the flood evicted, conflicts as the README says (its base is gone).
// Passes on 910f221.
func TestReview4FloodOfNewSessionsKeepsTheRecentBases(t *testing.T) {
	const max, sessions = 600, 1500
	r := newNotesRig(t, tiered.Options{Local: lru.Limits{MaxEntries: max}})
	id := func(i int) string { return fmt.Sprint("s-", i) }
	for i := range sessions {
		set(t, r.s, id(i), fmt.Sprint("v-", i))
	}
	if err := r.plain.Del(bg, "session:"+id(sessions-1)).Err(); err != nil { // a logout elsewhere
		t.Fatal(err)
	}
	st := r.replayOutage(t, id(0), id(sessions-2), id(sessions-1), id(sessions-max+10))
	got := func(i int) string { return r.plain.Get(bg, "session:"+id(i)).Val() }
	if g := got(sessions - 2); g != "outage" {
		t.Fatalf("a recent session holds %q after the replay (%d conflicts); want the acknowledged outage write", g, st.ReplayConflicts)
	}
	if g := got(sessions - max + 10); g != "outage" {
		t.Fatalf("one of the oldest sessions still noted holds %q after the replay (%d conflicts); want the acknowledged outage write", g, st.ReplayConflicts)
	}
	if g := got(sessions - 1); g != "" {
		t.Fatalf("a session deleted elsewhere holds %q after the replay: revived", g)
	}
	if g := got(0); g != "v-0" {
		t.Fatalf("the first session, its note evicted by the flood, holds %q; want its value kept (a conflict: more than MaxEntries noted?)", g)
	}
	if st.ReplayConflicts != 2 {
		t.Fatalf("%d replay conflicts; want 2 (the session deleted elsewhere, the one whose note was evicted)", st.ReplayConflicts)
	}
}

// A FLUSHDB forgets the notes (notes.clear); the sessions written after it
// are noted again, in the cleared notes. An outage write of a session
// flushed replays onto the absent key; of a session written after the
// flush, onto its note; of one written after the flush and deleted
// elsewhere, conflicts (not revived). Passes on 910f221.
func TestReview4FlushDBThenNewNotes(t *testing.T) {
	r := newNotesRig(t, tiered.Options{Local: lru.Limits{MaxEntries: 600}})
	for i := range 300 {
		set(t, r.s, fmt.Sprint("before-", i), "v")
	}
	before := r.s.Stats().Invalidations
	if err := r.plain.FlushDB(bg).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flush to reach the store", func() bool { return r.s.Stats().Invalidations > before })
	for i := range 200 { // 300 + 200 notes: within the 600, had the flush not cleared them
		set(t, r.s, fmt.Sprint("after-", i), fmt.Sprint("v-", i))
	}
	if err := r.plain.Del(bg, "session:after-7").Err(); err != nil { // a logout elsewhere
		t.Fatal(err)
	}
	st := r.replayOutage(t, "before-3", "after-5", "after-7")
	for id, want := range map[string]string{"before-3": "outage", "after-5": "outage", "after-7": ""} {
		if got := r.plain.Get(bg, "session:"+id).Val(); got != want {
			t.Fatalf("%s holds %q after the replay (%d conflicts); want %q", id, got, st.ReplayConflicts, want)
		}
	}
	if st.ReplayConflicts != 1 {
		t.Fatalf("%d replay conflicts; want 1 (the session deleted elsewhere)", st.ReplayConflicts)
	}
}

// A slot freed with older digests must not pass them to the next key that
// takes it. Sessions whose first write was cancelled (EndUnsure: the
// absent key and the write's digest noted, the absent key kept in
// notes.more) are evicted by a flood of new sessions, whose notes take
// their slots. Each of the flood's last sessions then has a cancelled
// write (its digest joins the note beside the first) and is deleted
// elsewhere. Were the absent key inherited from a freed slot, it would be
// a base of the session and its outage write would revive it; every one
// must conflict. Passes on 910f221.
func TestReview4ReusedNoteSlotsDoNotReviveSessions(t *testing.T) {
	const max = 600
	r := newNotesRig(t, tiered.Options{Local: lru.Limits{MaxEntries: max}})
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	for i := range 40 {
		if err := r.s.Set(cancelled, fmt.Sprint("y-", i), []byte("never"), time.Hour); err == nil {
			t.Fatal("a Set with a cancelled context succeeded")
		}
	}
	if n := r.plain.Exists(bg, "session:y-0").Val(); n != 0 {
		t.Fatalf("the cancelled Set landed (EXISTS %d); the test needs it not to", n)
	}
	const flood = max + 60
	for i := range flood {
		set(t, r.s, fmt.Sprint("s-", i), fmt.Sprint("v-", i))
	}
	var ids []string
	for i := flood - 80; i < flood; i++ {
		id := fmt.Sprint("s-", i)
		if err := r.s.Set(cancelled, id, []byte("cancelled"), time.Hour); err == nil {
			t.Fatal("a Set with a cancelled context succeeded")
		}
		if err := r.plain.Del(bg, "session:"+id).Err(); err != nil { // a logout elsewhere
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	st := r.replayOutage(t, ids...)
	for _, id := range ids {
		if got := r.plain.Get(bg, "session:"+id).Val(); got != "" {
			t.Fatalf("%s, deleted elsewhere, holds %q after the replay: revived (%d conflicts)", id, got, st.ReplayConflicts)
		}
	}
	if st.ReplayConflicts != uint64(len(ids)) {
		t.Fatalf("%d replay conflicts; want %d", st.ReplayConflicts, len(ids))
	}
}
