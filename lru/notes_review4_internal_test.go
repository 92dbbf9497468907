package lru

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/sessiontier/sessiontier/internal/tiertest"
)

// Review 4 (910f221: the notes in pointer-free slots linked by index).
// Each test says what it checks and what it found on 910f221.

// orderOf returns the hashes noted, probation's then protected's, each
// from the least to the most recently used, walking the lists from their
// tails.
func orderOf(n *notes) []uint64 {
	var hs []uint64
	for seg := range n.seg {
		for i := n.seg[seg].tail; i != noNote; i = n.slots[i].prev {
			hs = append(hs, n.slots[i].h)
			if len(hs) > len(n.slots) {
				return hs // a cycle: checkNotes reports it
			}
		}
	}
	return hs
}

// A slot freed by any path (forget, eviction past max keys, trim past the
// budget, known, clear) and taken by another key must not carry the older
// digests (notes.more) of the key that held it, nor their cost: the new
// key would get bases it never wrote (a replay onto another session's
// value), and the bytes charged would drift. Passes on 910f221.
func TestReview4NotesReusedSlotStartsClean(t *testing.T) {
	dA := func(j int) Digest { return Digest{0xA, byte(j + 1)} }
	fillA := func(n *notes, h uint64) {
		for j := range MaxNoted {
			n.put(h, dA(j), j == 0, 0, 1000)
		}
		if got := len(n.get(h, 0, nil)); got != MaxNoted {
			t.Fatalf("precondition: A notes %d digests; want %d", got, MaxNoted)
		}
	}
	const hA, hB, hC = 101, 202, 303
	dB, dB2, dC := Digest{0xB, 1}, Digest{0xB, 2}, Digest{0xC, 1}
	cases := []struct {
		name   string
		max    int
		free   func(n *notes) // frees A's slot
		reused uint64         // the key that then takes it
	}{
		{"forget", 4, func(n *notes) { n.forget(hA) }, hB},
		{"known", 4, func(n *notes) { n.known(hA, 0) }, hB},
		{"known-unsure-absent", 4, func(n *notes) {
			n.clear()
			n.put(hA, Absent, true, 0, 1000)
			n.markUnsure(hA, 0)
			n.known(hA, 0) // only the absent key: the note goes
		}, hB},
		{"evicted-past-max", 1, func(*notes) {}, hB}, // put B evicts A, B takes its slot
		{"trimmed-past-budget", 3, func(n *notes) {
			n.put(hC, dC, true, 0, 1000) // 808 + 208 > 808: A, the tail, is trimmed
			if n.find(hA, 0, false) != noNote {
				t.Fatal("precondition: A not trimmed")
			}
		}, hB},
		{"clear", 4, func(n *notes) { n.clear() }, hB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNotes(c.max)
			fillA(&n, hA)
			c.free(&n)
			n.put(c.reused, dB, true, 0, 1000)
			checkNotes(t, &n, 0)
			if got := n.get(c.reused, 0, nil); !slices.Equal(got, []Digest{dB}) {
				t.Fatalf("the key noted after A's slot was freed has %v; want only its own %v", got, dB)
			}
			// Overlapped: its older digests are its own, not A's.
			n.put(c.reused, dB2, false, 0, 1000)
			checkNotes(t, &n, 1)
			if got := n.get(c.reused, 0, nil); !slices.Equal(got, []Digest{dB, dB2}) {
				t.Fatalf("after an overlapped write the key has %v; want %v", got, []Digest{dB, dB2})
			}
			for i, more := range n.more {
				for _, d := range more {
					if d[0] == 0xA {
						t.Fatalf("slot %d (hash %d) keeps A's digest %v after A was dropped", i, n.slots[i].h, d)
					}
				}
			}
		})
	}
}

// The list's edges, step by step: removing the head, the tail, the only
// note; a freed slot taken again; the tail moved to the front by a touch
// and by a put; a put of a new key past max evicting the tail; trim
// removing several tails for one note grown. After each step the order,
// the links and the charge are checked. Passes on 910f221.
func TestReview4NotesListEdges(t *testing.T) {
	n := newNotes(3)
	d := Digest{1}
	step := 0
	want := func(order ...uint64) {
		t.Helper()
		step++
		checkNotes(t, &n, step)
		if got := orderOf(&n); !slices.Equal(got, order) && !(len(got) == 0 && len(order) == 0) {
			t.Fatalf("step %d: notes from the oldest %v; want %v", step, got, order)
		}
		if len(order) == 0 && n.seg != newNotes(n.max).seg {
			t.Fatalf("step %d: no note, but segments %+v", step, n.seg)
		}
		if len(n.slots) > n.max {
			t.Fatalf("step %d: %d slots for %d keys", step, len(n.slots), n.max)
		}
	}
	n.put(1, d, true, 0, 100)
	n.put(2, d, true, 0, 100)
	n.put(3, d, true, 0, 100)
	want(1, 2, 3)
	n.forget(3) // the head
	want(1, 2)
	n.forget(1) // the tail
	want(2)
	n.forget(2) // the only one
	want()
	n.put(4, d, true, 0, 100) // takes a free slot
	want(4)
	n.put(5, d, true, 0, 100)
	n.put(6, d, true, 0, 100)
	want(4, 5, 6)
	n.touch(4, 0, 200) // the tail to the front
	want(5, 6, 4)
	n.touch(4, 0, 200) // the head stays
	want(5, 6, 4)
	n.put(5, Digest{2}, false, 0, 100) // the tail, written again
	want(6, 4, 5)
	// Since 6a883d0 the notes are segmented: 4 and 5, used again, are
	// protected (probation first in want, then protected).
	n.put(7, d, true, 0, 100) // past max: probation's tail (6) goes, its slot taken
	want(7, 4, 5)
	n.known(5, 0) // protected's newest, forgotten
	want(7, 4)
	n.put(8, d, true, 0, 100)
	want(7, 8, 4)
	for j := range MaxNoted - 1 { // 7 grows to 16 digests: the budget
		n.put(7, Digest{9, byte(j)}, false, 0, 100)
	}
	want(7) // the two others were trimmed, probation's (8) first; 7, past protected's share of bytes, went back to probation
	if got := len(n.get(7, 0, nil)); got != MaxNoted {
		t.Fatalf("the note grown keeps %d digests; want %d", got, MaxNoted)
	}
	n.put(9, d, true, 0, 100) // a full note + 208: the full note, now probation's tail, is trimmed
	want(9)
	n.put(10, d, true, 0, 100)
	n.put(11, d, true, 0, 100)
	want(9, 10, 11)
	n.clear()
	want()
	n.put(12, d, true, 0, 100)
	n.put(13, d, true, 0, 100)
	n.put(14, d, true, 0, 100)
	n.put(15, d, true, 0, 100)
	want(13, 14, 15)
}

// The slots never outgrow max, at every size from 1 to 130 and at odd
// sizes around the doublings, whatever the mix of new keys, forgets and
// overlapped writes; and the notes stay consistent. Passes on 910f221.
func TestReview4NotesSlotsWithinMaxAtEverySize(t *testing.T) {
	sizes := []int{255, 256, 257, 511, 513, 1000, 1023, 1025}
	for m := 1; m <= 130; m++ {
		sizes = append(sizes, m)
	}
	for _, m := range sizes {
		r := rand.New(rand.NewPCG(uint64(m), 44))
		n := newNotes(m)
		for step := range 4 * m {
			h := uint64(r.IntN(3 * m))
			switch r.IntN(6) {
			case 0:
				n.forget(h)
			case 1:
				n.put(h, Digest{byte(step), 1}, false, 0, 1000)
			default:
				n.put(h, Digest{byte(step)}, true, 0, 1000)
			}
			if len(n.slots) > m || cap(n.slots) > m {
				t.Fatalf("max %d, step %d: %d slots (capacity %d)", m, step, len(n.slots), cap(n.slots))
			}
		}
		checkNotes(t, &n, m)
		// Every slot is either noted or free, once.
		free := 0
		for i := n.free; i != noNote; i = n.slots[i].next {
			free++
			if free > len(n.slots) {
				t.Fatalf("max %d: the free list loops", m)
			}
		}
		if free+len(n.at) != len(n.slots) {
			t.Fatalf("max %d: %d free + %d noted slots of %d", m, free, len(n.at), len(n.slots))
		}
	}
}

// NoteBytes "is the heap a note of one digest may take", and
// extraDigestBytes "the heap a digest beyond a note's first may take": a
// note is charged NoteBytes plus extraDigestBytes per older digest. Right
// after the slots and the map of hashes double (2^k+1 notes), a note of
// one digest takes about 148 bytes, within its 208. A note of several
// digests keeps them in notes.more: a map entry (33 bytes a slot, at half
// load after its own doubling) and an array per note, which the 40 bytes
// charged per older digest do not cover. On 910f221 a note of two digests
// (an overlapped write; or an unsure note that a read reduced, its array
// of capacity 2 kept by known) takes 252 and 276 bytes, charged 248 (a
// full note 804, charged 808). The simplelru notes before took 204, 228
// and 756 bytes. Fails on 910f221 (the two-digest shapes).
func TestReview4NotesChargeCoversTheHeapRightAfterDoubling(t *testing.T) {
	shapes := []struct {
		name string
		note func(n *notes, h uint64)
	}{
		{"one-digest", func(n *notes, h uint64) { n.put(h, Digest{1}, true, 0, 1<<60) }},
		{"two-overlapped", func(n *notes, h uint64) {
			n.put(h, Digest{1}, true, 0, 1<<60)
			n.put(h, Digest{2}, false, 0, 1<<60)
		}},
		{"two-unsure-then-read", func(n *notes, h uint64) {
			n.put(h, Absent, true, 0, 1<<60)
			n.put(h, Digest{1}, false, 0, 1<<60)
			n.put(h, Digest{2}, false, 0, 1<<60)
			n.markUnsure(h, 0)
			n.known(h, 0) // keeps 1 and 2, not the absent key
		}},
		{"full", func(n *notes, h uint64) {
			for j := range MaxNoted {
				n.put(h, Digest{byte(j + 1)}, false, 0, 1<<60)
			}
		}},
	}
	for _, count := range []int{2049, 4097} {
		for _, shape := range shapes {
			t.Run(fmt.Sprint(shape.name, "-", count), func(t *testing.T) {
				before := tiertest.HeapAfterGC()
				n := new(notes)
				*n = newNotes(1 << 17) // room: the slots double freely
				for i := range count {
					shape.note(n, uint64(i+1)*0x9E3779B97F4A7C15>>16)
				}
				after := tiertest.HeapAfterGC()
				if n.len() != count {
					t.Fatalf("precondition: %d notes; want %d", n.len(), count)
				}
				perNote := float64(after-before) / float64(count)
				charged := float64(n.bytes) / float64(count)
				runtime.KeepAlive(n)
				t.Logf("%d notes of %d digests: heap %.1f bytes a note, charged %.0f", count, len(n.get(1*0x9E3779B97F4A7C15>>16, 0, nil)), perNote, charged)
				if perNote > charged {
					t.Fatalf("a note of %s takes %.1f heap bytes right after the slots doubled; it is charged %.0f (NoteBytes %d + %d per older digest)",
						shape.name, perNote, charged, NoteBytes, extraDigestBytes)
				}
			})
		}
	}
}

// Churn: many times max new keys noted, forgotten, superseded by reads,
// one digest each. Maps keep their tables (tombstones, no shrinking), the
// slots their array: the heap must stay within NoteBytes a key allowed,
// and not grow from the 10th round of churn to the 100th. Passes on
// 910f221.
func TestReview4NotesChurnHeapStaysBounded(t *testing.T) {
	const max = 3000
	before := tiertest.HeapAfterGC()
	n := new(notes)
	*n = newNotes(max)
	r := rand.New(rand.NewPCG(4, 4))
	next := uint64(0)
	churn := func(rounds int) {
		for range rounds * max {
			next++
			h := next * 0x9E3779B97F4A7C15 >> 16
			n.put(h, Digest{byte(next)}, true, 0, 1<<60)
			old := (next - uint64(r.IntN(max))) * 0x9E3779B97F4A7C15 >> 16
			switch r.IntN(4) {
			case 0:
				n.forget(old)
			case 1:
				n.known(old, 0)
			}
		}
	}
	churn(10)
	at10 := tiertest.HeapAfterGC()
	churn(90)
	at100 := tiertest.HeapAfterGC()
	runtime.KeepAlive(n)
	checkNotes(t, n, 0)
	per10, per100 := float64(at10-before)/max, float64(at100-before)/max
	t.Logf("heap per key allowed: %.1f bytes after 10 rounds of churn, %.1f after 100 (%d noted)", per10, per100, n.len())
	if per100 > NoteBytes {
		t.Fatalf("after churn the notes take %.1f heap bytes per key allowed; NoteBytes is %d", per100, NoteBytes)
	}
	if per100 > per10*1.1 {
		t.Fatalf("the notes' heap grows with churn: %.1f bytes per key allowed after 10 rounds, %.1f after 100", per10, per100)
	}
}
