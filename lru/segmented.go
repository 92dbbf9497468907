package lru

import (
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// entry is one value of a Segmented. Its fields are guarded by whatever
// serialises the Segmented that holds it.
type entry[V any] struct {
	key       string
	value     V
	size      int64
	stamp     uint64 // Segmented.bumps when it last went to the front of protected
	protected bool
}

// Segmented is a segmented LRU: new entries enter a probation segment, an
// entry used again moves to a protected segment that holds up to 80% of the
// entries and 80% of the bytes (its oldest go back to probation), and
// eviction takes probation's oldest first. A flood of keys added once and
// never used again therefore churns probation only and cannot evict keys in
// use, and protected entries alone never crowd out a new entry that fits in
// probation's share. It is bounded by an entry count and by a byte count,
// the sizes being given by the caller.
//
// Segmented is not safe for concurrent use: Cache is its locked, sharded
// wrapper, and other users serialise it themselves. Its eviction callback
// runs inside Add, so under the caller's lock: it should only collect.
type Segmented[V any] struct {
	probation         *simplelru.LRU[string, *entry[V]]
	protected         *simplelru.LRU[string, *entry[V]]
	maxEntries        int
	protectedMax      int // protected's share of maxEntries
	maxBytes          int64
	protectedMaxBytes int64 // protected's share of maxBytes
	bytes             int64
	protectedBytes    int64  // bytes of the protected entries
	bumps             uint64 // moves to the front of protected so far
	evictions         uint64 // entries dropped to respect a bound
	onEvict           func(key string, value V)
}

// NewSegmented returns an empty Segmented holding at most maxEntries
// entries and maxBytes bytes (both > 0). onEvict, if not nil, is called
// with every entry evicted to respect a bound.
func NewSegmented[V any](maxEntries int, maxBytes int64, onEvict func(key string, value V)) *Segmented[V] {
	maxEntries = max(maxEntries, 1)
	// simplelru evicts on its own only past its size; the bounds are
	// enforced here, so its size is set where it is never reached.
	probation, _ := simplelru.NewLRU[string, *entry[V]](maxEntries+1, nil)
	protected, _ := simplelru.NewLRU[string, *entry[V]](maxEntries+1, nil)
	return &Segmented[V]{
		probation:         probation,
		protected:         protected,
		maxEntries:        maxEntries,
		protectedMax:      fourFifths(maxEntries),
		maxBytes:          maxBytes,
		protectedMaxBytes: fourFifths(maxBytes),
		onEvict:           onEvict,
	}
}

// fourFifths returns 80% of n rounded down, without overflow. It is below
// n for every n > 0, so probation always keeps a share of its own.
func fourFifths[T int | int64](n T) T { return n/5*4 + n%5*4/5 }

// Len returns the number of entries.
func (s *Segmented[V]) Len() int { return s.probation.Len() + s.protected.Len() }

// Bytes returns the sum of the entries' sizes.
func (s *Segmented[V]) Bytes() int64 { return s.bytes }

// Evictions returns the number of entries evicted to respect a bound.
func (s *Segmented[V]) Evictions() uint64 { return s.evictions }

// Peek returns the value of key without changing any order. Concurrent
// Peeks are safe with each other.
func (s *Segmented[V]) Peek(key string) (V, bool) {
	if e, ok := s.peek(key); ok {
		return e.value, true
	}
	var zero V
	return zero, false
}

// Get returns the value of key and records the use.
func (s *Segmented[V]) Get(key string) (V, bool) {
	e, ok := s.peek(key)
	if !ok {
		var zero V
		return zero, false
	}
	s.bump(e)
	return e.value, true
}

// Add stores value under key with the given size and reports whether it
// was stored: when Add returns true, the entry is present. A key already
// present is replaced, counts as a use, and is kept if it fits the byte
// bound. A new key whose value cannot fit within the byte bound beside the
// protected entries (which never take more than 80% of it) is not stored
// and evicts nothing; so is a value larger than the byte bound, which
// also removes any older value of key without calling onEvict.
func (s *Segmented[V]) Add(key string, value V, size int64) (stored bool) {
	e, ok := s.peek(key)
	if ok {
		s.bytes += size - e.size
		if e.protected {
			s.protectedBytes += size - e.size
		}
		e.value, e.size = value, size
		s.bump(e)
	} else {
		e = &entry[V]{key: key, value: value, size: size}
		s.bytes += size
		s.probation.Add(key, e)
	}
	// Protected is within its shares and is evicted only once probation
	// is empty: an entry in probation is kept, being its newest, if and
	// only if it fits beside protected; otherwise evicting would be in
	// vain. (A replaced entry is either protected or was demoted last,
	// emptying protected: it always fits.)
	if size > s.maxBytes || !e.protected && s.protectedBytes+size > s.maxBytes {
		s.Remove(key)
		return false
	}
	for s.Len() > s.maxEntries || s.bytes > s.maxBytes {
		s.evictOldest()
	}
	return true
}

// Remove drops key and returns the value it had.
func (s *Segmented[V]) Remove(key string) (V, bool) {
	e, ok := s.peek(key)
	if !ok {
		var zero V
		return zero, false
	}
	s.unlink(e)
	return e.value, true
}

// Range calls fn with every entry, protected ones first, most recently
// used first within a segment, until fn returns false. fn must not change
// the Segmented.
func (s *Segmented[V]) Range(fn func(key string, value V) bool) {
	for _, seg := range []*simplelru.LRU[string, *entry[V]]{s.protected, s.probation} {
		keys := seg.Keys()
		for i := len(keys) - 1; i >= 0; i-- {
			e, _ := seg.Peek(keys[i])
			if !fn(e.key, e.value) {
				return
			}
		}
	}
}

// Purge removes every entry without calling onEvict.
func (s *Segmented[V]) Purge() {
	s.probation.Purge()
	s.protected.Purge()
	s.bytes, s.protectedBytes = 0, 0
}

func (s *Segmented[V]) peek(key string) (*entry[V], bool) {
	if e, ok := s.protected.Peek(key); ok {
		return e, true
	}
	return s.probation.Peek(key)
}

// needsBump reports whether a use of e should change the order. An entry
// in protected that went to the front fewer than protectedMax/4 moves ago
// is among the front quarter of the segment already: reordering it again
// would buy nothing, so most hits leave the order alone and can be served
// under a read lock.
func (s *Segmented[V]) needsBump(e *entry[V]) bool {
	return !e.protected || s.bumps-e.stamp >= uint64(s.protectedMax/4)
}

// bump records a use of e: an entry on probation moves to protected, an
// entry in protected moves to its front. Protected's oldest entries go
// back to probation while it exceeds either of its shares.
func (s *Segmented[V]) bump(e *entry[V]) {
	s.bumps++
	e.stamp = s.bumps
	if e.protected {
		s.protected.Get(e.key)
	} else {
		s.probation.Remove(e.key)
		e.protected = true
		s.protectedBytes += e.size
		s.protected.Add(e.key, e)
	}
	for s.protected.Len() > s.protectedMax || s.protectedBytes > s.protectedMaxBytes {
		_, old, _ := s.protected.RemoveOldest()
		old.protected = false
		s.protectedBytes -= old.size
		s.probation.Add(old.key, old)
	}
}

func (s *Segmented[V]) evictOldest() {
	_, e, ok := s.probation.RemoveOldest()
	if !ok {
		_, e, _ = s.protected.RemoveOldest()
		s.protectedBytes -= e.size
	}
	s.bytes -= e.size
	s.evictions++
	if s.onEvict != nil {
		s.onEvict(e.key, e.value)
	}
}

func (s *Segmented[V]) unlink(e *entry[V]) {
	if e.protected {
		s.protected.Remove(e.key)
		s.protectedBytes -= e.size
	} else {
		s.probation.Remove(e.key)
	}
	s.bytes -= e.size
}
