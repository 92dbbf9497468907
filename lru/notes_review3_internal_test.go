package lru

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// checkNotes checks that the bytes charged to n are the costs of the notes
// it holds, within its budget, and that it holds at most max keys, at
// most protMax of them protected; and that its two segments' lists link,
// from the front, every note of its map once, each slot in the segment it
// says and its older digests counted right.
func checkNotes(t *testing.T, n *notes, step int) {
	t.Helper()
	if len(n.at) == 0 {
		if n.bytes != 0 {
			t.Fatalf("step %d: no note but %d bytes charged", step, n.bytes)
		}
		return
	}
	var sum, prot int64
	seen := 0
	for seg := range n.seg {
		l := &n.seg[seg]
		prev, count := int32(noNote), 0
		for i := l.head; i != noNote; i = n.slots[i].next {
			s := &n.slots[i]
			if s.prev != prev || int(s.seg) != seg {
				t.Fatalf("step %d: slot %d of segment %d links back to %d, not %d, and says segment %d", step, i, seg, s.prev, prev, s.seg)
			}
			if j, ok := n.at[s.h]; !ok || j != i {
				t.Fatalf("step %d: slot %d in the list is not its hash's (%d, %v)", step, i, j, ok)
			}
			if int(s.older) != len(n.more[i]) {
				t.Fatalf("step %d: slot %d counts %d older digests, keeps %d", step, i, s.older, len(n.more[i]))
			}
			if len(n.more[i]) > MaxNoted-1 {
				t.Fatalf("step %d: a note keeps %d digests", step, len(n.more[i])+1)
			}
			sum += s.cost()
			if seg == protected {
				prot += s.cost()
			}
			seen++
			count++
			if seen > len(n.at) {
				t.Fatalf("step %d: the lists hold more than the %d notes of the map", step, len(n.at))
			}
			prev = i
		}
		if prev != l.tail || count != l.n {
			t.Fatalf("step %d: segment %d ends at %d with %d notes; tail %d, counted %d", step, seg, prev, count, l.tail, l.n)
		}
	}
	if seen != len(n.at) {
		t.Fatalf("step %d: the lists hold %d notes, the map %d", step, seen, len(n.at))
	}
	if n.seg[protected].n > n.protMax || prot != n.protBytes || prot > n.protMaxBytes {
		t.Fatalf("step %d: %d notes protected (at most %d), costing %d bytes, charged %d (at most %d)",
			step, n.seg[protected].n, n.protMax, prot, n.protBytes, n.protMaxBytes)
	}
	if len(n.more) > len(n.at) {
		t.Fatalf("step %d: older digests kept for %d slots, %d noted", step, len(n.more), len(n.at))
	}
	if sum != n.bytes {
		t.Fatalf("step %d: notes charged %d bytes; their costs sum to %d", step, n.bytes, sum)
	}
	if n.bytes > n.budget {
		t.Fatalf("step %d: notes charged %d bytes, over their budget %d", step, n.bytes, n.budget)
	}
	if len(n.at) > n.max || len(n.slots) > n.max {
		t.Fatalf("step %d: %d keys noted in %d slots, over %d", step, len(n.at), len(n.slots), n.max)
	}
}

// Review 3 (ac2c1ff): notes modified in place must keep the bytes charged
// equal to the costs of the notes held (the eviction callback subtracts
// the cost a note has when it goes), within the budget, at most max keys.
// Random put/known/forget/touch/markUnsure on few hashes, a moving clock.
// Passes.
func TestReview3NotesAccountingInPlace(t *testing.T) {
	for _, keys := range []int{1, 3, 8, 64} {
		t.Run(fmt.Sprint(keys), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(keys), 7))
			n := newNotes(keys)
			now := int64(0)
			for step := range 200_000 {
				h := uint64(r.IntN(keys * 3))
				d := Digest{byte(r.IntN(40))}
				if r.IntN(10) == 0 {
					d = Absent
				}
				switch r.IntN(8) {
				case 0, 1, 2:
					n.put(h, d, r.IntN(6) == 0, now, now+int64(r.IntN(1000)))
				case 3:
					n.known(h, now)
				case 4:
					n.forget(h)
				case 5:
					n.touch(h, now, now+int64(r.IntN(1000)))
				case 6:
					n.markUnsure(h, now)
				case 7:
					if r.IntN(500) == 0 {
						n.clear()
					}
					now += int64(r.IntN(50))
				}
				checkNotes(t, &n, step)
				if ds := n.get(h, now, nil); len(ds) > MaxNoted {
					t.Fatalf("step %d: %d digests noted of one key", step, len(ds))
				}
			}
		})
	}
}

// Review 3 (ac2c1ff): the same through the Cache's API, with overlapping
// and unknown-outcome writes, fills, touches, deletes and purges, an
// injected clock: every shard's notes stay within their bytes and keys,
// and Stats().Notes within MaxEntries. Passes.
func TestReview3CacheNotesStayBounded(t *testing.T) {
	const maxEntries = 64
	at := time.Unix(1_000_000, 0)
	c, err := New(Limits{MaxEntries: maxEntries, MaxBytes: 1 << 20, TTL: time.Minute}, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 9))
	var open []Write
	for step := range 100_000 {
		key := fmt.Sprint("k", r.IntN(3*maxEntries))
		d := Digest{byte(r.IntN(200)), 1}
		ttl := time.Duration(1+r.IntN(120)) * time.Second
		if len(open) > 0 && r.IntN(2) == 0 {
			i := r.IntN(len(open))
			w := open[i]
			open = slices.Delete(open, i, i+1)
			switch r.IntN(7) {
			case 0:
				c.EndNoted(w, d, ttl)
			case 1:
				c.EndUnsure(w, d, ttl)
			case 2:
				c.EndDelete(w)
			case 3:
				c.EndTouch(w, ttl)
			case 4:
				c.EndSet(w, []byte("v"), ttl, ttl)
			case 5:
				c.EndKeep(w)
			case 6:
				c.EndRevoke(w)
			}
		} else {
			switch r.IntN(12) {
			case 0:
				tok := c.FillToken(key)
				c.Fill(tok, key, []byte("f"), ttl, ttl)
			case 1:
				at = at.Add(time.Duration(r.IntN(5000)) * time.Millisecond)
			case 2:
				if r.IntN(200) == 0 {
					c.Purge()
				}
			case 3:
				c.Noted(key)
			default:
				if len(open) < 32 {
					open = append(open, c.Begin(key))
				}
			}
		}
		for i := range c.shards {
			checkNotes(t, &c.shards[i].notes, step)
		}
		if st := c.Stats(); st.Notes > maxEntries {
			t.Fatalf("step %d: Stats().Notes %d > MaxEntries %d", step, st.Notes, maxEntries)
		}
	}
}

// Review 3: notes expire with the injected clock; Touch extends them (and
// may shorten them: the source's TTL is what Touch set); an unsure write
// onto an expired note does not bring back the expired digests. Passes.
func TestReview3NotesExpireWithTheClock(t *testing.T) {
	at := time.Unix(1_000_000, 0)
	c, err := New(Limits{MaxEntries: 16}, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	d1, d2, d3 := Digest{1}, Digest{2}, Digest{3}
	c.EndNoted(c.Begin("k"), d1, 10*time.Second)
	at = at.Add(9 * time.Second)
	if got := c.Noted("k"); !slices.Equal(got, []Digest{d1}) {
		t.Fatalf("at 9s of 10s: Noted = %v", got)
	}
	c.EndTouch(c.Begin("k"), 10*time.Second) // now lives until 19s
	at = at.Add(5 * time.Second)             // 14s
	if got := c.Noted("k"); !slices.Equal(got, []Digest{d1}) {
		t.Fatalf("at 14s, touched at 9s for 10s: Noted = %v", got)
	}
	at = at.Add(5 * time.Second) // 19s
	if got := c.Noted("k"); got != nil {
		t.Fatalf("at 19s, touched at 9s for 10s: Noted = %v; want nothing", got)
	}
	c.EndUnsure(c.Begin("k"), d2, 10*time.Second)
	if got := c.Noted("k"); !slices.Equal(got, []Digest{Absent, d2}) {
		t.Fatalf("unsure write onto an expired note: Noted = %v; want [Absent d2]", got)
	}
	// A value read supersedes the note but for the unsure outcomes; the
	// absent key goes.
	tok := c.FillToken("k")
	c.Fill(tok, "k", []byte("x"), time.Second, time.Minute)
	if got := c.Noted("k"); !slices.Equal(got, []Digest{d2}) {
		t.Fatalf("after a fill: Noted = %v; want [d2]", got)
	}
	at = at.Add(10 * time.Second)
	c.EndUnsure(c.Begin("k"), d3, 10*time.Second)
	if got := c.Noted("k"); slices.Contains(got, d2) {
		t.Fatalf("an expired unsure digest came back: Noted = %v", got)
	}
}

// Review 3 (ac2c1ff): notes modified in place while Noted and Stats read
// them under the shard's read lock; run with -race. The writers run a
// fixed number of rounds, the readers until they are done; the notes stay
// within their bounds, and the digests read are never more than MaxNoted.
func TestReview3NotesConcurrentReaders(t *testing.T) {
	const max, rounds = 32, 2_000
	c, err := New(Limits{MaxEntries: max}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var writers, readers sync.WaitGroup
	for g := range 4 {
		writers.Go(func() {
			for i := range rounds {
				key := fmt.Sprint("k", (i+g)%8)
				w1, w2 := c.Begin(key), c.Begin(key)
				c.EndUnsure(w1, Digest{byte(i)}, time.Minute)
				switch i % 3 {
				case 0:
					c.EndNoted(w2, Digest{byte(i), 1}, time.Minute)
				case 1:
					c.EndTouch(w2, time.Minute)
				default:
					c.Fill(c.FillToken(key), key, []byte("v"), time.Minute, time.Minute)
					c.EndKeep(w2)
				}
			}
		})
	}
	stop := make(chan struct{})
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for k := range 8 {
					if got := c.Noted(fmt.Sprint("k", k)); len(got) > MaxNoted {
						t.Errorf("%d digests noted of one key; MaxNoted is %d", len(got), MaxNoted)
						return
					}
				}
				if n := c.Stats().Notes; n > max {
					t.Errorf("%d notes; MaxEntries is %d", n, max)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	s := &c.shards[0]
	if s.notes.bytes > s.notes.budget {
		t.Fatalf("notes charged %d bytes; budget %d", s.notes.bytes, s.notes.budget)
	}
}

// Review 3 (ac2c1ff): before ac2c1ff every change of a note (touch,
// markUnsure, known) re-added it, moving it to the front of the notes'
// LRU; now only put does. A session touched (EndTouch: "the noted values
// live as long") is no longer "recently written" for the notes, and is the
// first forgotten when a new note needs room, before notes of sessions
// written once and left.
func TestReview3TouchedNoteIsNotTheFirstForgotten(t *testing.T) {
	const max = 4
	c, err := New(Limits{MaxEntries: max}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.shards) != 1 {
		t.Fatalf("%d shards; the test needs one", len(c.shards)) // MaxEntries 4: always one
	}
	for i := range max {
		c.EndNoted(c.Begin(fmt.Sprint("k", i)), Digest{byte(i + 1)}, time.Hour)
	}
	c.EndTouch(c.Begin("k0"), time.Hour) // k0 in use
	c.EndNoted(c.Begin("new"), Digest{9}, time.Hour)
	if got := c.Noted("k0"); got == nil {
		t.Fatalf("the note of k0, touched after k1..k%d were written, was forgotten first for a new note (k1: %v)", max-1, c.Noted("k1"))
	}
}
