package lru

import "sync/atomic"

// index is a hash table of *item read without a lock: open addressing with
// linear probing over slots that hold atomic pointers. Readers load the
// table, then its slots; the writer (one at a time: the shard's lock)
// changes slots in place, marks deleted ones with a tombstone, and
// replaces the whole table when it grows or has too many tombstones. A
// reader that loaded a table before it was replaced sees its state as of
// the replacement, as if it had read just before it.
//
// A slot also holds its item's hash, stored before the pointer: a probe
// past another key compares hashes without following the pointer, so a
// miss costs about one cache line, not a line per key it passes.
type index struct {
	t atomic.Pointer[table]
	// Guarded by the writer's lock:
	live, dead int // items and tombstones in the current table
}

type table struct {
	slots []slot
	mask  uint64
}

type slot struct {
	h atomic.Uint64 // the hash of p's key, stored before p
	p atomic.Pointer[item]
}

// set publishes it, whose hash is h, in sl.
func (sl *slot) set(it *item, h uint64) {
	sl.h.Store(h)
	sl.p.Store(it)
}

// tombstone marks a deleted slot: probing goes on past it.
var tombstone = &item{}

const minSlots = 64

// load returns the item of key, whose hash is h.
func (x *index) load(key string, h uint64) (*item, bool) {
	t := x.t.Load()
	if t == nil {
		return nil, false
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		p := sl.p.Load()
		switch {
		case p == nil:
			return nil, false
		case p != tombstone && sl.h.Load() == h && p.key == key:
			return p, true
		}
	}
}

// store publishes it (whose key has hash h), replacing any item of the
// same key. The caller holds the writer's lock.
func (x *index) store(it *item, h uint64) {
	t := x.t.Load()
	if t == nil || 2*(x.live+x.dead+1) > len(t.slots) { // at most half full: a miss probes 2.5 slots on average, not 8.5 as at 3/4
		t = x.grow(t)
	}
	free := -1
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		p := sl.p.Load()
		switch {
		case p == nil:
			if free < 0 {
				free = int(i)
				x.live++
			} else {
				x.live++
				x.dead--
			}
			t.slots[free].set(it, h)
			return
		case p == tombstone:
			if free < 0 {
				free = int(i)
			}
		case sl.h.Load() == h && p.key == it.key:
			sl.p.Store(it)
			return
		}
	}
}

// remove deletes the item of key, whose hash is h, and reports whether
// there was one. The caller holds the writer's lock.
func (x *index) remove(key string, h uint64) bool {
	t := x.t.Load()
	if t == nil {
		return false
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		p := sl.p.Load()
		switch {
		case p == nil:
			return false
		case p != tombstone && sl.h.Load() == h && p.key == key:
			sl.p.Store(tombstone)
			x.live--
			x.dead++
			return true
		}
	}
}

// clear removes every item. The caller holds the writer's lock.
func (x *index) clear() {
	x.t.Store(nil)
	x.live, x.dead = 0, 0
}

// grow returns a new current table with room for twice the live items,
// holding them without tombstones. The caller holds the writer's lock.
func (x *index) grow(old *table) *table {
	n := minSlots
	for n < 3*(x.live+1) {
		n *= 2
	}
	t := &table{slots: make([]slot, n), mask: uint64(n - 1)}
	if old != nil {
		for i := range old.slots {
			if p := old.slots[i].p.Load(); p != nil && p != tombstone {
				for j := p.hash & t.mask; ; j = (j + 1) & t.mask {
					if t.slots[j].p.Load() == nil {
						t.slots[j].set(p, p.hash)
						break
					}
				}
			}
		}
	}
	x.dead = 0
	x.t.Store(t)
	return t
}
