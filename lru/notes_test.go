package lru_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
)

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
	c.EndNoted(w, a)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{a}) {
		t.Fatalf("Noted = %v, want [a]", got)
	}
	w = c.Begin("k")
	c.EndNoted(w, b)
	if got := c.Noted("k"); !slices.Equal(got, []lru.Digest{b}) {
		t.Fatalf("after a second write Noted = %v, want [b] alone", got)
	}

	w1, w2 := c.Begin("k"), c.Begin("k") // overlapping writes
	c.EndNoted(w2, x)
	c.EndNoted(w1, a)
	if got := c.Noted("k"); !slices.Contains(got, x) || !slices.Contains(got, a) {
		t.Fatalf("after overlapping writes Noted = %v, want both", got)
	}

	w = c.Begin("k")
	c.EndNoted(w, b)
	w = c.Begin("k")
	c.Invalidate()
	c.EndNoted(w, x)
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
	c.EndNoted(w, digestOf("a"))
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

	c.EndNoted(c.Begin("k"), digestOf("a"))
	c.Purge()
	if got, st := c.Noted("k"), c.Stats(); got != nil || st.Notes != 0 {
		t.Fatalf("Purge left %v (%d notes)", got, st.Notes)
	}
}

// At most 8 digests are noted of a key, the newest kept.
func TestNotesOfAKeyAreBounded(t *testing.T) {
	c := newCache(t, lru.Limits{}, nil)
	var ws []lru.Write
	for range 12 {
		ws = append(ws, c.Begin("k"))
	}
	for i, w := range ws {
		c.EndNoted(w, digestOf(fmt.Sprint(i)))
	}
	got := c.Noted("k")
	if len(got) != 8 || got[7] != digestOf("11") || got[0] != digestOf("4") {
		t.Fatalf("Noted = %d digests ending %v; want the newest 8", len(got), got[len(got)-1])
	}
}

// The notes are bounded like the entries: once full, the key noted first
// is forgotten first, and a freed slot is reused.
func TestNotesAreBoundedByMaxEntries(t *testing.T) {
	const max = 600 // one shard
	c := newCache(t, lru.Limits{MaxEntries: max}, nil)
	for i := range 2 * max {
		c.EndNoted(c.Begin(fmt.Sprint(i)), digestOf(fmt.Sprint(i)))
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
	c.EndNoted(c.Begin("new"), digestOf("new"))
	if n := c.Stats().Notes; n != max {
		t.Fatalf("%d notes, want %d", n, max)
	}
}
