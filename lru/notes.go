package lru

import "slices"

// Digest is a fixed-size digest of a value, computed by the caller (a
// SHA-1 fits): what a Cache notes of a value written at the source but not
// kept (see EndNoted).
type Digest [20]byte

// maxNoted bounds the digests noted of one key.
const maxNoted = 8

// NoteBytes bounds the heap a note takes, whatever the length of its key
// (notes are looked up by the key's 64-bit hash), the spare room of the
// growing ring and map included; checked by a heap test in this package.
// With the default MaxEntries, notes take at most about 12 MiB.
const NoteBytes = 128

// notes remembers, per shard, the digests of values written at the source
// and not kept, for at most max keys: once full, the key noted first is
// forgotten first. Keys are known by their 64-bit hash, so that a note
// does not keep its key's string: two keys of one shard with the same
// hash would share a note (about one chance in 10^9 among 100,000 notes),
// which costs at most a wrong base, compared with the source's value
// before it is used. Not safe for concurrent use: the shard's mu guards
// it.
type notes struct {
	slot map[uint64]int32 // key hash → index in ring
	ring []note           // grows up to max, then reused in order
	next int              // the ring index to reuse next, once full
	max  int
}

// note is what is noted of one key: the values the source may hold,
// newest in last.
type note struct {
	hash uint64
	live bool // false: a free slot
	last Digest
	more []Digest // older ones, when writes overlapped: nil usually
}

// get appends the digests noted of the key of hash h to ds, newest last.
func (n *notes) get(h uint64, ds []Digest) []Digest {
	if i, ok := n.slot[h]; ok {
		nt := &n.ring[i]
		ds = append(append(ds, nt.more...), nt.last)
	}
	return ds
}

// put notes d of the key of hash h: alone if sure, else beside what is
// noted already.
func (n *notes) put(h uint64, d Digest, sure bool) {
	if i, ok := n.slot[h]; ok {
		nt := &n.ring[i]
		switch {
		case sure:
			nt.more = nt.more[:0]
		case nt.last == d || slices.Contains(nt.more, d):
			return
		default:
			if len(nt.more) == maxNoted-1 {
				nt.more = slices.Delete(nt.more, 0, 1)
			}
			nt.more = append(nt.more, nt.last)
		}
		nt.last = d
		return
	}
	if n.slot == nil {
		n.slot = make(map[uint64]int32)
	}
	if len(n.ring) < n.max {
		n.slot[h] = int32(len(n.ring))
		n.ring = append(n.ring, note{hash: h, live: true, last: d})
		return
	}
	nt := &n.ring[n.next]
	if nt.live {
		delete(n.slot, nt.hash)
	}
	nt.hash, nt.live, nt.last, nt.more = h, true, d, nt.more[:0]
	n.slot[h] = int32(n.next)
	n.next = (n.next + 1) % n.max
}

// forget drops the note of the key of hash h.
func (n *notes) forget(h uint64) {
	if i, ok := n.slot[h]; ok {
		delete(n.slot, h)
		n.ring[i].live = false
	}
}

// len returns the number of keys noted.
func (n *notes) len() int { return len(n.slot) }

// clear forgets every note.
func (n *notes) clear() {
	clear(n.slot)
	n.ring, n.next = n.ring[:0], 0
}
