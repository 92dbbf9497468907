package lru_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
)

// noteWrite ends a write of key that keeps no value (a session not held)
// by noting d for an hour, as the store's Set of such a session does.
func noteWrite(c *lru.Cache, key string, d lru.Digest) {
	w := c.Begin(key)
	c.SeenFor(&w)
	c.EndNoted(w, d, time.Hour)
}

// notesLost returns how many of the sessions user0 … user<n-1> no longer
// have d alone noted.
func notesLost(c *lru.Cache, n int, d lru.Digest) int {
	lost := 0
	for i := range n {
		if got := c.Noted(fmt.Sprint("user", i)); !slices.Equal(got, []lru.Digest{d}) {
			lost++
		}
	}
	return lost
}

func digestOf(s string) lru.Digest {
	var d lru.Digest
	copy(d[:], s)
	return d
}

// A write that keeps no value notes its digest, which replaces what was
// noted before; one that overlapped another write of its key, or an
// Invalidate, adds to it instead: either may be the value at the source.
func TestEndNotedReplacesUnlessOverlapped(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	a, b, x := digestOf("a"), digestOf("b"), digestOf("x")

	w := c.Begin("k")
	c.SeenFor(&w)
	c.EndNoted(w, a, time.Hour)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{a}) {
		t.Fatalf("Noted = %v, want [a]", got)
	}
	w = c.Begin("k")
	c.EndNoted(w, b, time.Hour)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{b}) {
		t.Fatalf("after a second write Noted = %v, want [b] alone", got)
	}

	w1, w2 := c.Begin("k"), c.Begin("k") // overlapping writes
	c.EndNoted(w2, x, time.Hour)
	c.EndNoted(w1, a, time.Hour)
	if got := c.Noted("k"); !slices.Contains(got, x) || !slices.Contains(got, a) {
		t.Fatalf("after overlapping writes Noted = %v, want both", got)
	}

	w = c.Begin("k")
	c.EndNoted(w, b, time.Hour)
	w = c.Begin("k")
	c.Invalidate()
	c.EndNoted(w, x, time.Hour)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{b, x}) {
		t.Fatalf("after a write that an Invalidate overlapped Noted = %v, want [b x]", got)
	}
}

// EndNoted drops the entry as EndDelete does; EndDelete and Purge forget
// the notes; Noted hands out a copy.
func TestNotesAreDroppedWithTheKey(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("k", []byte("v"), time.Hour, time.Hour)
	w := c.Begin("k")
	c.EndNoted(w, digestOf("a"), time.Hour)
	if v, ok := c.Seen("k"); ok {
		t.Fatalf("EndNoted left the entry %q", v)
	}
	got := c.Noted("k")
	got[0] = digestOf("changed")
	if again := c.Noted("k"); again[0] != digestOf("a") {
		t.Fatal("Noted returned the Cache's own slice")
	}

	c.EndDelete(c.Begin("k"))
	if got := c.Noted("k"); got != nil {
		t.Fatalf("EndDelete left the note %v", got)
	}

	c.EndNoted(c.Begin("k"), digestOf("a"), time.Hour)
	c.Purge()
	if got, st := c.Noted("k"), c.Stats(); got != nil || st.Notes != 0 {
		t.Fatalf("Purge left %v (%d notes)", got, st.Notes)
	}
}

// At most MaxNoted digests are noted of a key, the newest kept.
func TestNotesOfAKeyAreBounded(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	var ws []lru.Write
	for range lru.MaxNoted + 4 {
		ws = append(ws, c.Begin("k"))
	}
	for i, w := range ws {
		c.EndNoted(w, digestOf(fmt.Sprint(i)), time.Hour)
	}
	got := c.Noted("k")
	if len(got) != lru.MaxNoted || got[lru.MaxNoted-1] != digestOf(fmt.Sprint(lru.MaxNoted+3)) || got[0] != digestOf("4") {
		t.Fatalf("Noted = %d digests ending %v; want the newest %d", len(got), got[len(got)-1], lru.MaxNoted)
	}
}

// The notes are bounded like the entries: once full, the key noted first
// is forgotten first, and a freed slot is reused.
func TestNotesAreBoundedByMaxEntries(t *testing.T) {
	const max = 600 // one shard
	c := newCache(t, lru.Limits{MaxEntries: max}, nil)
	for i := range 2 * max {
		c.EndNoted(c.Begin(fmt.Sprint(i)), digestOf(fmt.Sprint(i)), time.Hour)
		if n := c.Stats().Notes; n > max {
			t.Fatalf("%d notes after %d writes; bound %d", n, i+1, max)
		}
	}
	if c.Noted("0") != nil || c.Noted(fmt.Sprint(max-1)) != nil {
		t.Fatal("the keys noted first are still noted")
	}
	for _, k := range []string{fmt.Sprint(max), fmt.Sprint(2*max - 1)} {
		if got := c.Noted(k); !slices.Equal(got, []lru.Digest{digestOf(k)}) {
			t.Fatalf("Noted(%s) = %v: a recent note was forgotten", k, got)
		}
	}
	c.EndDelete(c.Begin(fmt.Sprint(max)))
	c.EndNoted(c.Begin("new"), digestOf("new"), time.Hour)
	if n := c.Stats().Notes; n != max {
		t.Fatalf("%d notes, want %d", n, max)
	}
}

// A write whose outcome is unknown (EndUnsure), or that overlapped another
// (EndDelete, EndKeep, EndTouch), leaves the entry out of service, still
// returned by Seen, and adds its outcome to the notes: the source may
// hold any of them.
func TestUnsureAndOverlappedEndingsKeepTheBases(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.Set("k", []byte("v1"), time.Hour, time.Hour)
	c.EndUnsure(c.Begin("k"), digestOf("v2"), time.Hour)
	if _, _, ok := c.Get("k"); ok {
		t.Fatal("the entry is served after a write of unknown outcome")
	}
	if v, ok := c.Seen("k"); !ok || string(v) != "v1" {
		t.Fatalf("Seen = %q, %v; want v1, out of service", v, ok)
	}
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{digestOf("v2")}) {
		t.Fatalf("Noted = %v, want [v2]", got)
	}

	c.Set("d", []byte("v1"), time.Hour, time.Hour)
	w1, w2 := c.Begin("d"), c.Begin("d")
	c.EndDelete(w1)
	c.EndKeep(w2)
	if v, ok := c.Seen("d"); !ok || string(v) != "v1" {
		t.Fatalf("after an overlapped delete Seen = %q, %v; want v1, out of service", v, ok)
	}
	if got := c.Noted("d"); !slices.Equal(got, []lru.Digest{lru.Absent}) {
		t.Fatalf("after an overlapped delete Noted = %v, want [Absent]", got)
	}
	c.EndDelete(c.Begin("d"))
	if _, ok := c.Seen("d"); ok || c.Noted("d") != nil {
		t.Fatal("a delete that overlapped nothing left a base")
	}
}

// A value the source is known to hold (a Fill, an EndSet that overlapped
// nothing, a Set) supersedes the notes; a note expires with the key.
func TestNotesGiveWayToNewerValues(t *testing.T) {
	clock := tiertest.NewClock()
	c := newCache(t, lru.Limits{}, clock)
	for name, store := range map[string]func(){
		"Fill": func() {
			tok := c.FillToken("k")
			c.Fill(tok, "k", []byte("read"), time.Hour, time.Hour)
		},
		"EndSet": func() { c.EndSet(c.Begin("k"), []byte("written"), time.Hour, time.Hour) },
		"Set":    func() { c.Set("k", []byte("set"), time.Hour, time.Hour) },
	} {
		c.EndNoted(c.Begin("k"), digestOf("old"), time.Hour)
		store()
		if got := c.Noted("k"); got != nil {
			t.Fatalf("after %s Noted = %v; want nothing", name, got)
		}
	}
	c.EndNoted(c.Begin("e"), digestOf("v"), time.Minute)
	clock.Advance(time.Minute)
	if got := c.Noted("e"); got != nil {
		t.Fatalf("Noted = %v after the key expired", got)
	}
}

// The outcome of a write that may still land (EndUnsure) survives a value
// read or written meanwhile, but for the absent key: the key is not absent
// now. A first unsure write of a key nothing is known of keeps Absent
// beside it: the key may still be as it was, unknown.
func TestUnsureNotesSurviveKnownValues(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	c.EndUnsure(c.Begin("k"), digestOf("maybe"), time.Hour)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{lru.Absent, digestOf("maybe")}) {
		t.Fatalf("Noted = %v; want [Absent maybe]", got)
	}
	tok := c.FillToken("k")
	c.Fill(tok, "k", []byte("read"), time.Hour, time.Hour)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{digestOf("maybe")}) {
		t.Fatalf("after a read Noted = %v; want [maybe]", got)
	}
	c.EndUnsure(c.Begin("d"), lru.Absent, time.Hour) // a delete that may land
	c.EndSet(c.Begin("d"), []byte("v"), time.Hour, time.Hour)
	if got := c.Noted("d"); got != nil {
		t.Fatalf("after a write Noted = %v; want nothing: the delete's absent key is no base", got)
	}
}

// TestNotesFloodResistance: the notes of sessions written here again and
// again survive a flood of sessions written once (a bot minting sessions),
// as the tiers' entries in use do (TestFloodResistance): a note noted
// again is protected, the flood churns probation.
func TestNotesFloodResistance(t *testing.T) {
	c := newCache(t, lru.Limits{MaxEntries: 1_000}, nil)
	for i := range 500 {
		noteWrite(c, fmt.Sprint("user", i), digestOf("v1"))
	}
	for round := range 20 {
		for i := range 500 {
			noteWrite(c, fmt.Sprint("user", i), digestOf(fmt.Sprint("v", round+2)))
		}
		for i := range 1_000 {
			noteWrite(c, fmt.Sprintf("bot%d-%d", round, i), digestOf("x"))
		}
	}
	if lost := notesLost(c, 500, digestOf("v21")); lost > 0 {
		t.Fatalf("%d of 500 sessions written again lost their note to a flood of 20,000 written once", lost)
	}
	if st := c.Stats(); st.Notes > 1_000 {
		t.Fatalf("%d notes kept; the bound is 1,000", st.Notes)
	}
}

// A delete that overlapped a write of its key, and ended first with no
// copy held, must leave the absent key among the notes the write's value
// then joins: the source may hold either. Its note expired at once, so
// only the write's value was noted (review 37's stress test: an outage
// write of the session then conflicted with the store's own delete).
func TestOverlappedDeleteEndingFirstKeepsTheAbsentKey(t *testing.T) {
	c, err := lru.New(lru.Limits{MaxEntries: 100, MaxBytes: 1 << 20}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	set := c.Begin("k")
	del := c.Begin("k")
	c.EndDelete(del)
	c.EndNoted(set, lru.Digest{1}, time.Hour)
	got := c.Noted("k")
	if !slices.Contains(got, lru.Absent) || !slices.Contains(got, lru.Digest{1}) {
		t.Fatalf("Noted = %v; want the absent key and the write's value", got)
	}
}
