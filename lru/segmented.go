package lru

import (
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// entry is one cached value. key, value, fresh, expires, stamp and
// protected are guarded by the lock of the shard that holds the entry:
// written under its write lock, read under its read lock.
type entry struct {
	key       string
	value     []byte // never modified once stored: replaced whole
	fresh     int64  // clock offset (ns) until which it is served without asking Redis
	expires   int64  // clock offset (ns) after which it is never served
	stamp     uint64 // segmented.bumps when it last went to the front of protected
	protected bool
}

func (e *entry) size() int64 { return int64(len(e.key)+len(e.value)) + EntryOverhead }

// segmented is the unsynchronised core of a shard: a segmented LRU with a
// probation and a protected segment, bounded by an entry count and a byte
// count. The caller serialises access: peek and needsBump may run
// concurrently with each other, everything else needs exclusive access.
type segmented struct {
	probation    *simplelru.LRU[string, *entry]
	protected    *simplelru.LRU[string, *entry]
	maxEntries   int
	protectedMax int
	maxBytes     int64
	bytes        int64
	bumps        uint64 // moves to the front of protected so far
	evictions    uint64 // entries dropped to respect a bound
	expirations  uint64 // entries dropped because they expired
}

func newSegmented(maxEntries int, maxBytes int64) segmented {
	// simplelru evicts on its own only past its size; the bounds are
	// enforced here, so its size is set where it is never reached.
	probation, _ := simplelru.NewLRU[string, *entry](maxEntries+1, nil)
	protected, _ := simplelru.NewLRU[string, *entry](maxEntries+1, nil)
	protectedMax := maxEntries * 4 / 5
	if protectedMax < 1 {
		protectedMax = 1
	}
	return segmented{
		probation:    probation,
		protected:    protected,
		maxEntries:   maxEntries,
		protectedMax: protectedMax,
		maxBytes:     maxBytes,
	}
}

func (s *segmented) len() int { return s.probation.Len() + s.protected.Len() }

// peek finds key without changing any order.
func (s *segmented) peek(key string) (*entry, bool) {
	if e, ok := s.protected.Peek(key); ok {
		return e, true
	}
	return s.probation.Peek(key)
}

// needsBump reports whether a hit on e should change the order. An entry
// in protected that went to the front fewer than protectedMax/4 moves ago
// is among the front quarter of the segment already: reordering it again
// would buy nothing, so most hits leave the order alone and can be served
// under a read lock.
func (s *segmented) needsBump(e *entry) bool {
	return !e.protected || s.bumps-e.stamp >= uint64(s.protectedMax/4)
}

// bump records a hit on e: an entry on probation moves to protected, an
// entry in protected moves to its front.
func (s *segmented) bump(e *entry) {
	s.bumps++
	e.stamp = s.bumps
	if e.protected {
		s.protected.Get(e.key)
		return
	}
	s.probation.Remove(e.key)
	e.protected = true
	s.protected.Add(e.key, e)
	if s.protected.Len() > s.protectedMax {
		_, old, _ := s.protected.RemoveOldest()
		old.protected = false
		s.probation.Add(old.key, old)
	}
}

// add stores value under key and returns how many entries were evicted to
// make room. A key already present is replaced and counts as a hit. A
// value too large for the bounds on its own is not stored and removes any
// older value of key; stored reports that.
func (s *segmented) add(key string, value []byte, fresh, expires int64) (stored bool, evicted int) {
	e, ok := s.peek(key)
	if ok {
		s.bytes += int64(len(value) - len(e.value))
		e.value, e.fresh, e.expires = value, fresh, expires
		s.bump(e)
	} else {
		e = &entry{key: key, value: value, fresh: fresh, expires: expires}
		s.bytes += e.size()
		s.probation.Add(key, e)
	}
	if e.size() > s.maxBytes {
		s.remove(key)
		return false, 0
	}
	for s.len() > s.maxEntries || s.bytes > s.maxBytes {
		s.evictOldest()
		evicted++
	}
	s.evictions += uint64(evicted)
	return true, evicted
}

func (s *segmented) evictOldest() {
	_, e, ok := s.probation.RemoveOldest()
	if !ok {
		_, e, _ = s.protected.RemoveOldest()
	}
	s.bytes -= e.size()
}

// remove drops key and reports whether it was present.
func (s *segmented) remove(key string) bool {
	e, ok := s.peek(key)
	if !ok {
		return false
	}
	if e.protected {
		s.protected.Remove(key)
	} else {
		s.probation.Remove(key)
	}
	s.bytes -= e.size()
	return true
}

// expire drops e if it is still the entry stored under its key.
func (s *segmented) expire(e *entry) {
	if cur, ok := s.peek(e.key); ok && cur == e {
		s.remove(e.key)
		s.expirations++
	}
}

func (s *segmented) purge() {
	s.probation.Purge()
	s.protected.Purge()
	s.bytes = 0
}
