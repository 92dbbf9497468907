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

// NoteBytes bounds the heap a note of one digest takes, whatever the
// length of its key (notes are looked up by the key's hash), its share of
// the LRU's list and map included; checked by a heap test in this package.
// A note of writes that overlapped takes 20 bytes more per digest beyond
// the first until a write that overlapped nothing ends. With the default
// MaxEntries, notes take at most about 18 MiB.
const NoteBytes = 192

// notes remembers, per shard, the digests of the values the source may
// hold of keys that have no entry here, or whose entry may not be the
// source's value: the values of writes that were not kept (EndNoted), and
// of writes that overlapped others or whose outcome is unknown (see
// EndUnsure). It is bounded by an LRU of max keys: a key noted or read
// again moves to its front.
//
// Keys are known by the 48-bit hash of the shard's index, so that a note
// does not keep its key's string: two keys of one shard with the same hash
// share a note (about one chance in 10^7 per shard full of 6,000 notes),
// which costs at most a wrong base, compared with the source's value
// before it is used. Not safe for concurrent use: the shard's mu guards
// it.
type notes struct {
	lru *simplelru.LRU[uint64, note] // nil until the first note
	max int
}

// note is what is noted of one key.
type note struct {
	last    Digest   // the value the source holds, or the newest it may hold
	more    []Digest // others it may hold, when writes overlapped: nil usually; never modified once set
	expires int64    // clock offset after which the source no longer holds any of them
}

// get appends the digests noted of the key of hash h, unless expired at
// now, to ds, newest last.
func (n *notes) get(h uint64, now int64, ds []Digest) []Digest {
	if n.lru == nil {
		return ds
	}
	if nt, ok := n.lru.Peek(h); ok && now < nt.expires {
		ds = append(append(ds, nt.more...), nt.last)
	}
	return ds
}

// put notes d of the key of hash h, until expires: alone if sure, else
// beside the digests noted already (unless expired at now).
func (n *notes) put(h uint64, d Digest, sure bool, now, expires int64) {
	if n.lru == nil {
		n.lru, _ = simplelru.NewLRU[uint64, note](n.max, nil)
	}
	nt, ok := n.lru.Peek(h)
	switch {
	case sure || !ok || now >= nt.expires:
		nt = note{last: d, expires: expires}
	case nt.last == d || slices.Contains(nt.more, d):
		nt.expires = max(nt.expires, expires)
	default:
		if len(nt.more) == MaxNoted-1 {
			nt.more = nt.more[1:]
		}
		nt.more = append(slices.Clip(nt.more), nt.last) // a new array: more is never modified
		nt.last, nt.expires = d, max(nt.expires, expires)
	}
	n.lru.Add(h, nt)
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
