package lru

import (
	"slices"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Digest is a fixed-size digest of a value, computed by the caller (a
// SHA-1 fits). The zero Digest stands for no value: the key absent.
type Digest [20]byte

// Absent is the Digest of an absent key (see EndUnsure).
var Absent Digest

// MaxNoted bounds the digests noted of one key: the values its
// overlapping writes may have left at the source. Past it, the oldest
// noted is forgotten.
const MaxNoted = 16

// NoteBytes is the heap a note of one digest may take, whatever the
// length of its key (notes are looked up by the key's hash), its share of
// the LRU's list and map included; a note is charged NoteBytes plus
// extraDigestBytes per digest beyond the first. A shard's notes are
// charged at most NoteBytes times the entries it may hold: past it, the
// least recently written are forgotten. So all the notes of a Cache take
// at most NoteBytes times MaxEntries (about 20 MiB at the default),
// checked by heap tests in this package.
const NoteBytes = 208

// extraDigestBytes is the heap a digest beyond a note's first may take:
// its 20 bytes, rounded up to the allocator's size classes.
const extraDigestBytes = 40

// notes remembers, per shard, the digests of the values the source may
// hold of keys that have no entry here, or whose entry may not be the
// source's value: the values of writes that were not kept (EndNoted), and
// of writes that overlapped others or whose outcome is unknown (see
// EndUnsure). It is an LRU of at most max keys, charged at most budget
// bytes: a key noted, touched or read again moves to its front.
//
// Keys are known by the 48-bit hash of the shard's index, so that a note
// does not keep its key's string: two keys of one shard with the same hash
// share a note (about one chance in 10^7 per shard full of 6,000 notes),
// which costs at most a wrong base, compared with the source's value
// before it is used. Not safe for concurrent use: the shard's mu guards
// it.
type notes struct {
	lru    *simplelru.LRU[uint64, *note] // nil until the first note
	max    int                           // keys
	budget int64                         // bytes: max × NoteBytes, and room for one full note
	bytes  int64                         // charged to the notes held (see cost)
}

// note is what is noted of one key.
type note struct {
	last    Digest   // the value the source holds, or the newest it may hold
	more    []Digest // others it may hold, when writes overlapped: nil usually
	expires int64    // clock offset after which the source no longer holds any of them
	unsure  bool     // holds the outcome of a write that may still land (see EndUnsure)
}

func (nt *note) cost() int64 { return NoteBytes + int64(len(nt.more))*extraDigestBytes }

func newNotes(keys int) notes {
	return notes{max: keys, budget: max(int64(keys)*NoteBytes, NoteBytes+(MaxNoted-1)*extraDigestBytes)}
}

// get appends the digests noted of the key of hash h, unless expired at
// now, to ds, newest last.
func (n *notes) get(h uint64, now int64, ds []Digest) []Digest {
	if nt := n.find(h, now, false); nt != nil {
		ds = append(append(ds, nt.more...), nt.last)
	}
	return ds
}

// find returns the note of the key of hash h, unless expired at now, or
// nil. With use, the note moves to the front of the LRU: a note touched
// or read is in use, as one written again.
func (n *notes) find(h uint64, now int64, use bool) *note {
	if n.lru == nil {
		return nil
	}
	var (
		nt *note
		ok bool
	)
	if use {
		nt, ok = n.lru.Get(h)
	} else {
		nt, ok = n.lru.Peek(h)
	}
	if ok && now < nt.expires {
		return nt
	}
	return nil
}

// put notes d of the key of hash h, until expires: alone if sure, else
// beside the digests noted already (unless expired at now). The note
// moves to the front of the LRU.
func (n *notes) put(h uint64, d Digest, sure bool, now, expires int64) {
	if n.lru == nil {
		n.lru, _ = simplelru.NewLRU[uint64, *note](n.max, func(_ uint64, nt *note) { n.bytes -= nt.cost() })
	}
	nt, ok := n.lru.Get(h)
	if !ok {
		n.bytes += NoteBytes
		n.lru.Add(h, &note{last: d, expires: expires}) // past max keys, evicts the oldest through the callback
		n.trim()
		return
	}
	before := nt.cost()
	switch {
	case sure || now >= nt.expires:
		*nt = note{last: d, expires: expires}
	case nt.last == d || slices.Contains(nt.more, d):
		nt.expires = max(nt.expires, expires)
	default:
		if len(nt.more) == MaxNoted-1 {
			nt.more = nt.more[1:]
		}
		nt.more = append(slices.Clip(nt.more), nt.last) // a new array: the spare room is charged for nothing
		nt.last, nt.expires = d, max(nt.expires, expires)
	}
	n.bytes += nt.cost() - before
	n.trim()
}

// markUnsure records that the note of the key of hash h holds the outcome
// of a write that may still land.
func (n *notes) markUnsure(h uint64, now int64) {
	if nt := n.find(h, now, false); nt != nil {
		nt.unsure = true
	}
}

// known is told that the source holds a value known here (read, or
// written in a known order): it supersedes the note of the key of hash h,
// but for the values of writes that may still land (an unsure note), which
// stay; the absent key does not, since the key is not absent now.
func (n *notes) known(h uint64, now int64) {
	nt := n.find(h, now, true)
	if nt == nil || !nt.unsure {
		n.forget(h)
		return
	}
	var ds []Digest
	for _, d := range n.get(h, now, nil) {
		if d != Absent {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		n.forget(h)
		return
	}
	before := nt.cost()
	nt.last, nt.more = ds[len(ds)-1], ds[:len(ds)-1:len(ds)-1]
	if len(nt.more) == 0 {
		nt.more = nil
	}
	n.bytes += nt.cost() - before
}

// touch sets the expiry of the note of the key of hash h, if any.
func (n *notes) touch(h uint64, now, expires int64) {
	if nt := n.find(h, now, true); nt != nil {
		nt.expires = expires
	}
}

// trim forgets the least recently written notes past the budget.
func (n *notes) trim() {
	for n.bytes > n.budget {
		n.lru.RemoveOldest()
	}
}

// forget drops the note of the key of hash h.
func (n *notes) forget(h uint64) {
	if n.lru != nil {
		n.lru.Remove(h)
	}
}

// len returns the number of keys noted.
func (n *notes) len() int {
	if n.lru == nil {
		return 0
	}
	return n.lru.Len()
}

// clear forgets every note.
func (n *notes) clear() {
	if n.lru != nil {
		n.lru.Purge()
	}
}
