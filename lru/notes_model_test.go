package lru

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// modelNotes is the notes as they were before their slots (30a8fdb), a
// golang-lru simplelru of pointers to notes, made a segmented LRU of two
// simplelrus: probation and protected. The slots must behave as it does,
// operation for operation: same keys kept in each segment, in the same
// order of use, same digests, same bytes charged.
type modelNotes struct {
	probation, protected *simplelru.LRU[uint64, *modelNote]
	max, protMax         int
	budget, protMaxBytes int64
	bytes                int64
}

type modelNote struct {
	last    Digest
	more    []Digest
	expires int64
	unsure  bool
}

func (nt *modelNote) cost() int64 {
	if len(nt.more) == 0 {
		return NoteBytes
	}
	return NoteBytes + olderBytes + int64(len(nt.more))*extraDigestBytes
}

func newModelNotes(keys int) *modelNotes {
	m := &modelNotes{max: keys, protMax: fourFifths(keys), budget: newNotes(keys).budget}
	m.protMaxBytes = newNotes(keys).protMaxBytes
	m.probation, _ = simplelru.NewLRU[uint64, *modelNote](keys+1, nil) // bounded here, not by simplelru
	m.protected, _ = simplelru.NewLRU[uint64, *modelNote](keys+1, nil)
	return m
}

func (m *modelNotes) len() int { return m.probation.Len() + m.protected.Len() }

// peek returns the note of h, in use or not.
func (m *modelNotes) peek(h uint64) (*modelNote, bool) {
	if nt, ok := m.probation.Peek(h); ok {
		return nt, true
	}
	return m.protected.Peek(h)
}

// use moves the note of h, if any, to the front of protected, and the
// oldest protected past its share to probation.
func (m *modelNotes) use(h uint64) (*modelNote, bool) {
	if nt, ok := m.protected.Get(h); ok {
		return nt, true
	}
	nt, ok := m.probation.Peek(h)
	if !ok {
		return nil, false
	}
	m.probation.Remove(h)
	m.protected.Add(h, nt)
	m.balance()
	return nt, true
}

// balance moves protected's oldest to probation while protected holds
// more than its share of the keys or of the budget.
func (m *modelNotes) balance() {
	for {
		var bytes int64
		for _, k := range m.protected.Keys() {
			nt, _ := m.protected.Peek(k)
			bytes += nt.cost()
		}
		if m.protected.Len() <= m.protMax && bytes <= m.protMaxBytes {
			return
		}
		k, v, _ := m.protected.RemoveOldest()
		m.probation.Add(k, v)
	}
}

// keys returns the keys noted, probation's then protected's, each from
// the oldest.
func (m *modelNotes) keys() []uint64 { return append(m.probation.Keys(), m.protected.Keys()...) }

func (m *modelNotes) remove(h uint64) {
	if nt, ok := m.peek(h); ok {
		m.bytes -= nt.cost()
		m.probation.Remove(h)
		m.protected.Remove(h)
	}
}

// evict forgets probation's oldest, or protected's.
func (m *modelNotes) evict() {
	k, _, ok := m.probation.GetOldest()
	if !ok {
		k, _, _ = m.protected.GetOldest()
	}
	m.remove(k)
}

func (m *modelNotes) purge() {
	m.probation.Purge()
	m.protected.Purge()
	m.bytes = 0
}

func (m *modelNotes) find(h uint64, now int64, use bool) *modelNote {
	nt, ok := m.peek(h)
	if !ok || now >= nt.expires {
		return nil
	}
	if use {
		m.use(h)
	}
	return nt
}

func (m *modelNotes) get(h uint64, now int64) []Digest {
	if nt := m.find(h, now, false); nt != nil {
		return append(slices.Clone(nt.more), nt.last)
	}
	return nil
}

func (m *modelNotes) put(h uint64, d Digest, sure bool, now, expires int64) {
	nt, ok := m.use(h)
	if !ok {
		if m.len() >= m.max {
			m.evict()
		}
		m.bytes += NoteBytes
		m.probation.Add(h, &modelNote{last: d, expires: expires})
		m.trim()
		return
	}
	before := nt.cost()
	switch {
	case sure || now >= nt.expires:
		*nt = modelNote{last: d, expires: expires}
	case nt.last == d || slices.Contains(nt.more, d):
		nt.expires = max(nt.expires, expires)
	default:
		if len(nt.more) == MaxNoted-1 {
			nt.more = nt.more[1:]
		}
		nt.more = append(slices.Clip(nt.more), nt.last)
		nt.last, nt.expires = d, max(nt.expires, expires)
	}
	m.bytes += nt.cost() - before
	m.balance()
	m.trim()
}

func (m *modelNotes) known(h uint64, now int64) {
	nt := m.find(h, now, false)
	if nt == nil || !nt.unsure {
		m.remove(h)
		return
	}
	var ds []Digest
	for _, d := range m.get(h, now) {
		if d != Absent {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		m.remove(h)
		return
	}
	m.use(h)
	before := nt.cost()
	nt.last, nt.more = ds[len(ds)-1], ds[:len(ds)-1:len(ds)-1]
	m.bytes += nt.cost() - before
	m.balance()
}

func (m *modelNotes) trim() {
	for m.bytes > m.budget {
		m.evict()
	}
}

// TestNotesBehaveAsTheModel runs random operations on the notes and on
// the model, on more keys than they hold and with a moving clock, and
// compares after each: the keys of each segment from least to most
// recently used, each key's digests and expiry, and the bytes charged.
// The sizes from 63 up make the slots grow (64 to 128 to 256; odd bounds
// where the last growth is capped at max), with bursts of new keys and
// runs of the oldest forgotten (review 4).
func TestNotesBehaveAsTheModel(t *testing.T) {
	for _, keys := range []int{1, 2, 5, 11, 40, 63, 64, 65, 100, 129, 257} {
		t.Run(fmt.Sprint(keys), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(keys), 11))
			n, m := newNotes(keys), newModelNotes(keys)
			now := int64(0)
			fresh := uint64(1 << 40) // hashes never seen before
			for step := range 8_000 {
				h := uint64(r.IntN(keys*2 + 1))
				d := Digest{byte(r.IntN(24))}
				if r.IntN(8) == 0 {
					d = Absent
				}
				op := r.IntN(11)
				switch op {
				case 0, 1, 2:
					sure, expires := r.IntN(5) == 0, now+int64(r.IntN(800))
					n.put(h, d, sure, now, expires)
					m.put(h, d, sure, now, expires)
				case 3:
					n.known(h, now)
					m.known(h, now)
				case 4:
					n.forget(h)
					m.remove(h)
				case 5:
					expires := now + int64(r.IntN(800))
					n.touch(h, now, expires)
					if nt := m.find(h, now, true); nt != nil {
						nt.expires = expires
					}
				case 6:
					n.markUnsure(h, now)
					if nt := m.find(h, now, false); nt != nil {
						nt.unsure = true
					}
				case 7:
					if r.IntN(300) == 0 {
						n.clear()
						m.purge()
					}
					now += int64(r.IntN(40))
				case 8:
					if got, want := n.get(h, now, nil), m.get(h, now); !slices.Equal(got, want) {
						t.Fatalf("step %d: digests %v; the model's %v", step, got, want)
					}
				case 9: // a burst of new keys, some overlapped
					for range r.IntN(keys/2 + 1) {
						fresh++
						n.put(fresh, d, true, now, now+1000)
						m.put(fresh, d, true, now, now+1000)
						if r.IntN(3) == 0 {
							n.put(fresh, Digest{7, 7}, false, now, now+1000)
							m.put(fresh, Digest{7, 7}, false, now, now+1000)
						}
					}
				case 10: // forget a run of the oldest
					keys := m.keys()
					for _, old := range keys[:r.IntN(len(keys)+1)] {
						n.forget(old)
						m.remove(old)
					}
				}
				compareNotes(t, step, op, &n, m)
				if cap(n.slots) > n.max {
					t.Fatalf("step %d: %d slots allocated for at most %d keys", step, cap(n.slots), n.max)
				}
			}
		})
	}
}

func compareNotes(t *testing.T, step, op int, n *notes, m *modelNotes) {
	t.Helper()
	var order []uint64
	for seg, want := range []*simplelru.LRU[uint64, *modelNote]{m.probation, m.protected} {
		var keys []uint64
		for i := n.seg[seg].tail; i != noNote; i = n.slots[i].prev {
			keys = append(keys, n.slots[i].h)
		}
		if !slices.Equal(keys, want.Keys()) {
			t.Fatalf("step %d (op %d): segment %d from the oldest %v; the model's %v", step, op, seg, keys, want.Keys())
		}
		order = append(order, keys...)
	}
	if n.bytes != m.bytes {
		t.Fatalf("step %d (op %d): %d bytes charged; the model %d", step, op, n.bytes, m.bytes)
	}
	for _, h := range order {
		s := &n.slots[n.at[h]]
		want, _ := m.peek(h)
		got := append(slices.Clone(n.more[n.at[h]]), s.last)
		if !slices.Equal(got, append(slices.Clone(want.more), want.last)) || s.expires != want.expires || s.unsure != want.unsure {
			t.Fatalf("step %d (op %d): key %d holds %v until %d (unsure %v); the model %v, %v until %d (unsure %v)",
				step, op, h, got, s.expires, s.unsure, want.more, want.last, want.expires, want.unsure)
		}
	}
	checkNotes(t, n, step)
}

// TestNotesHashesAreSeededPerCache: notes know a key by 48 bits of its
// hash, so two keys whose hashes collide share a note. A client choosing
// session ids (a hostile cookie) must not be able to aim at that: the
// hash is seeded at random per Cache, so the keys that collide in one
// process collide in no other. Same keys, two Caches: no hash in common.
func TestNotesHashesAreSeededPerCache(t *testing.T) {
	a, err := New(Limits{MaxEntries: 1000, MaxBytes: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Limits{MaxEntries: 1000, MaxBytes: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range 1000 {
		key := fmt.Sprintf("session-%d", i)
		_, ha := a.locate(key)
		_, hb := b.locate(key)
		if ha == hb {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("%d of 1000 keys have the same notes hash in two Caches: collisions could be aimed", same)
	}
}
