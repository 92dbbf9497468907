package lru

import "slices"

// Digest is a fixed-size digest of a value, computed by the caller (a
// hash and a length fit). The zero Digest stands for no value: the key
// absent.
type Digest [12]byte

// Absent is the Digest of an absent key (see EndUnsure).
var Absent Digest

// MaxNoted bounds the digests noted of one key: the values its
// overlapping writes may have left at the source. Past it, the oldest
// noted is forgotten.
const MaxNoted = 16

// NoteBytes is the heap a note of one digest may take, whatever the
// length of its key (notes are looked up by the key's hash), its share of
// the slots' and the map's included, even right after they doubled; a
// note of several digests is charged olderBytes more, and
// extraDigestBytes per digest beyond the first. A shard's notes are
// charged at most NoteBytes times the entries it may hold: past it, notes
// are forgotten (see notes). So all the notes of a Cache take at most
// NoteBytes times MaxEntries (about 20 MiB at the default), the slots and
// map left by notes forgotten included, checked by heap tests in this
// package.
const NoteBytes = 208

const (
	// olderBytes is the heap a note's older digests take beside them: an
	// entry in notes.more, at the map's lowest load, and the array's
	// header.
	olderBytes = 72
	// extraDigestBytes is the heap a digest beyond a note's first may
	// take: its 12 bytes, in an array of their exact length, rounded up to
	// the allocator's size classes, with room to spare (the charges were
	// set for 20-byte digests, and bound these all the more).
	extraDigestBytes = 40
	// fullNoteBytes is the charge of a note of MaxNoted digests.
	fullNoteBytes = NoteBytes + olderBytes + (MaxNoted-1)*extraDigestBytes
)

// notes remembers, per shard, the digests of the values the source may
// hold of keys that have no entry here, or whose entry may not be the
// source's value: the values of writes that were not kept (EndNoted), and
// of writes that overlapped others or whose outcome is unknown (see
// EndUnsure). It is a segmented LRU, as the tiers are (see Segmented), of
// at most max keys, charged at most budget bytes: a new note enters
// probation; a key noted, touched or read again moves to the front of
// protected, which holds up to four fifths of the keys and of the budget,
// and leaves room for a new note (its least recently used go back to
// probation); room is made from probation's least recently used first. A
// flood of sessions written once churns probation only, and leaves the
// notes of the sessions written here again and again; a note grown large
// in protected cannot crowd out the new ones.
//
// A login storm notes every write (each of a session not held), so the
// notes are laid out for it: slots in one array, linked by index into the
// segments' lists, and a map from hash to slot, none holding a pointer.
// Noting a key then allocates nothing once the array has grown, and the
// garbage collector has nothing to trace in them (a golang-lru simplelru
// of pointers to notes took 10% of a login storm's CPU, and two
// allocations a note). The rare older digests of a key whose writes
// overlapped are kept aside, in more.
//
// Keys are known by the 48-bit hash of the shard's index, so that a note
// does not keep its key's string: two keys of one shard with the same hash
// share a note (about one chance in 10^7 per shard full of 6,000 notes),
// which costs at most a wrong base, compared with the source's value
// before it is used. Not safe for concurrent use: the shard's mu guards
// it.
type notes struct {
	at           map[uint64]int32   // the slot of each key noted, by hash; nil until the first note
	slots        []noteSlot         // the notes, and free slots linked by next
	more         map[int32][]Digest // the older digests of the notes that keep several, by slot
	seg          [2]list            // probation and protected (see notes)
	free         int32              // the first free slot, or noNote
	max          int                // keys
	protMax      int                // keys protected at most: four fifths of max
	budget       int64              // bytes: max × NoteBytes, and room for one full note
	bytes        int64              // charged to the notes held (see cost)
	protBytes    int64              // charged to the protected notes
	protMaxBytes int64              // protBytes at most: four fifths of budget, leaving room for a new note
}

// noNote is the index of no slot.
const noNote = -1

// The segments of the notes, indexes of notes.seg.
const (
	probation = 0
	protected = 1
)

// list is a segment of the notes: a list of slots, linked by index, from
// the most recently used (head) to the least (tail).
type list struct {
	head, tail int32 // noNote: empty
	n          int
}

// noteSlot is a note and its links in its segment's list: prev is toward
// the front (head), next toward the back (tail).
type noteSlot struct {
	h          uint64
	prev, next int32
	note
	seg uint8 // probation or protected
}

// note is what is noted of one key.
type note struct { // 32 bytes: with its slot's, 56
	expires int64  // clock offset after which the source no longer holds any of them
	last    Digest // the value the source holds, or the newest it may hold
	unsure  bool   // holds the outcome of a write that may still land (see EndUnsure)
	older   uint8  // digests kept in notes.more for its slot: writes overlapped
}

func (nt *note) cost() int64 {
	if nt.older == 0 {
		return NoteBytes
	}
	return NoteBytes + olderBytes + int64(nt.older)*extraDigestBytes
}

func newNotes(keys int) notes {
	budget := max(int64(keys)*NoteBytes, fullNoteBytes)
	// Protected leaves probation room for a new note at least: the note
	// just put is never the one trimmed.
	return notes{max: keys, protMax: fourFifths(keys), budget: budget, protMaxBytes: min(fourFifths(budget), budget-NoteBytes),
		seg: [2]list{{head: noNote, tail: noNote}, {head: noNote, tail: noNote}}, free: noNote}
}

// get appends the digests noted of the key of hash h, unless expired at
// now, to ds, newest last.
func (n *notes) get(h uint64, now int64, ds []Digest) []Digest {
	if i := n.find(h, now, false); i != noNote {
		ds = n.digests(i, ds)
	}
	return ds
}

// digests appends the digests of the note of slot i to ds, newest last.
func (n *notes) digests(i int32, ds []Digest) []Digest {
	if n.slots[i].older > 0 {
		ds = append(ds, n.more[i]...)
	}
	return append(ds, n.slots[i].last)
}

// find returns the slot of the note of the key of hash h, unless expired
// at now, or noNote. With use, the note found moves to the front of
// protected: a note touched or read is in use, as one written again.
func (n *notes) find(h uint64, now int64, use bool) int32 {
	i, ok := n.at[h] // a nil map finds nothing
	if !ok || now >= n.slots[i].expires {
		return noNote
	}
	if use {
		n.use(i)
	}
	return i
}

// put notes d of the key of hash h, until expires: alone if sure, else
// beside the digests noted already (unless expired at now). A new note
// enters probation; one noted again moves to the front of protected.
func (n *notes) put(h uint64, d Digest, sure bool, now, expires int64) {
	i, ok := n.at[h]
	if !ok {
		if len(n.at) >= n.max {
			n.remove(n.victim())
		}
		n.add(h, d, expires)
		n.trim()
		return
	}
	n.use(i)
	nt := &n.slots[i].note
	before := nt.cost()
	switch {
	case sure || now >= nt.expires:
		*nt = note{last: d, expires: expires}
		n.setMore(i, nil)
	case nt.last == d || (nt.older > 0 && slices.Contains(n.more[i], d)):
		nt.expires = max(nt.expires, expires)
	default:
		more := n.more[i]
		if len(more) == MaxNoted-1 {
			more = more[1:]
		}
		grown := make([]Digest, len(more)+1) // a new array, of the exact length: spare room is charged for nothing
		grown[copy(grown, more)] = nt.last
		n.setMore(i, grown)
		nt.last, nt.expires = d, max(nt.expires, expires)
	}
	n.charge(i, before)
	n.trim()
}

// charge charges the cost of the note of slot i, which was before, and
// keeps protected within its share of the budget.
func (n *notes) charge(i int32, before int64) {
	delta := n.slots[i].cost() - before
	n.bytes += delta
	if n.slots[i].seg == protected {
		n.protBytes += delta
		n.balance()
	}
}

// setMore sets the older digests of the note of slot i.
func (n *notes) setMore(i int32, more []Digest) {
	if len(more) == 0 {
		delete(n.more, i)
	} else {
		if n.more == nil {
			n.more = make(map[int32][]Digest)
		}
		n.more[i] = more
	}
	n.slots[i].older = uint8(len(more))
}

// markUnsure records that the note of the key of hash h holds the outcome
// of a write that may still land.
func (n *notes) markUnsure(h uint64, now int64) {
	if i := n.find(h, now, false); i != noNote {
		n.slots[i].unsure = true
	}
}

// known is told that the source holds a value known here (read, or
// written in a known order): it supersedes the note of the key of hash h,
// but for the values of writes that may still land (an unsure note), which
// stay; the absent key does not, since the key is not absent now.
func (n *notes) known(h uint64, now int64) {
	i, ok := n.at[h] // a nil map finds nothing
	if !ok {
		return
	}
	if now >= n.slots[i].expires || !n.slots[i].unsure {
		n.remove(i)
		return
	}
	var ds []Digest
	for _, d := range n.digests(i, nil) {
		if d != Absent {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		n.remove(i)
		return
	}
	n.use(i) // only a note that stays: a use would demote another for nothing
	nt := &n.slots[i].note
	before := nt.cost()
	nt.last = ds[len(ds)-1]
	n.setMore(i, slices.Clone(ds[:len(ds)-1])) // of the exact length, as put's
	n.charge(i, before)
}

// touch sets the expiry of the note of the key of hash h, if any.
func (n *notes) touch(h uint64, now, expires int64) {
	if i := n.find(h, now, true); i != noNote {
		n.slots[i].expires = expires
	}
}

// trim forgets notes past the budget, probation's least recently used
// first.
func (n *notes) trim() {
	for n.bytes > n.budget {
		n.remove(n.victim())
	}
}

// victim returns the note to forget first to make room: probation's least
// recently used, or protected's if probation is empty. There must be one.
func (n *notes) victim() int32 {
	if t := n.seg[probation].tail; t != noNote {
		return t
	}
	return n.seg[protected].tail
}

// forget drops the note of the key of hash h.
func (n *notes) forget(h uint64) {
	if i, ok := n.at[h]; ok {
		n.remove(i)
	}
}

// len returns the number of keys noted.
func (n *notes) len() int { return len(n.at) }

// clear forgets every note, and frees their memory.
func (n *notes) clear() {
	*n = newNotes(n.max)
}

// add notes d of the key of hash h, which has no note, until expires, in
// a slot of its own at the front of probation, and returns the slot.
func (n *notes) add(h uint64, d Digest, expires int64) int32 {
	if n.at == nil {
		n.at = make(map[uint64]int32)
	}
	i := n.free
	if i != noNote {
		n.free = n.slots[i].next
	} else {
		if len(n.slots) == cap(n.slots) { // grow to max at most: a note never needs more
			grown := make([]noteSlot, len(n.slots), min(max(2*cap(n.slots), 64), n.max))
			copy(grown, n.slots)
			n.slots = grown
		}
		i = int32(len(n.slots))
		n.slots = n.slots[:i+1]
	}
	n.slots[i] = noteSlot{h: h, note: note{last: d, expires: expires}}
	n.link(i, probation)
	n.at[h] = i
	n.bytes += NoteBytes
	return i
}

// remove drops the note of slot i, which holds one.
func (n *notes) remove(i int32) {
	n.unlink(i)
	s := &n.slots[i]
	n.bytes -= s.cost()
	delete(n.at, s.h)
	if s.older > 0 {
		delete(n.more, i)
	}
	*s = noteSlot{next: n.free}
	n.free = i
}

// use moves the note of slot i to the front of protected; past its share,
// protected's least recently used go to the front of probation.
func (n *notes) use(i int32) {
	if n.slots[i].seg == protected && n.seg[protected].head == i {
		return
	}
	n.unlink(i)
	n.link(i, protected)
	n.balance()
}

// balance moves protected's least recently used to the front of probation
// while protected holds more than its share of the keys or of the budget.
func (n *notes) balance() {
	for n.seg[protected].n > n.protMax || n.protBytes > n.protMaxBytes {
		t := n.seg[protected].tail
		n.unlink(t)
		n.link(t, probation)
	}
}

// link puts slot i, in no list, at the front of segment seg.
func (n *notes) link(i int32, seg uint8) {
	l, s := &n.seg[seg], &n.slots[i]
	s.seg, s.prev, s.next = seg, noNote, l.head
	if l.head != noNote {
		n.slots[l.head].prev = i
	}
	l.head = i
	if l.tail == noNote {
		l.tail = i
	}
	l.n++
	if seg == protected {
		n.protBytes += s.cost()
	}
}

// unlink takes slot i out of its segment's list.
func (n *notes) unlink(i int32) {
	s := &n.slots[i]
	l := &n.seg[s.seg]
	if s.prev != noNote {
		n.slots[s.prev].next = s.next
	} else {
		l.head = s.next
	}
	if s.next != noNote {
		n.slots[s.next].prev = s.prev
	} else {
		l.tail = s.prev
	}
	l.n--
	if s.seg == protected {
		n.protBytes -= s.cost()
	}
}
