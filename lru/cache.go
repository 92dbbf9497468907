package lru

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

const (
	maxShards       = 16
	minShardEntries = 512
	minShardBytes   = 1 << 20
	cacheLinePad    = 64
)

// Cache is a bounded, sharded, segmented LRU of byte values with per-entry
// expiry. It is safe for concurrent use. Values handed to it and returned
// by it are shared, never copied: callers must not modify them.
//
// Besides plain Get and Set, Cache orders local writes against reads that
// went to the source of truth (Begin/End* and FillToken/Fill), so that a
// slow read can never put back a value that a newer write replaced or
// deleted.
type Cache struct {
	shards []shard
	mask   uint64
	seed   maphash.Seed
	clock  func() time.Time // nil: the monotonic clock, read with time.Since
	base   time.Time
	gen    atomic.Uint64 // entries of an older generation are not fresh
}

type shard struct {
	mu          sync.RWMutex        // guards core, seq, writes and expirations, and every change of index
	_           [cacheLinePad]byte  // keep mu's line apart from the rest
	core        *Segmented[cached]  // the entries, their recency and the bounds
	seq         uint64              // Begin calls so far
	adds        uint64              // add calls so far (see Write.absent)
	writes      map[string]inflight // keys with a write between Begin and End
	expirations uint64              // entries dropped because they expired
	// index maps each key of core to its value, read without a lock by
	// Get and Seen: an *item published there is never modified (but for
	// its used flag), a change publishes a new one. It changes only under
	// mu, with core.
	index index
	notes notes              // digests of values written and not kept (see EndNoted)
	seed  maphash.Seed       // the Cache's
	_     [cacheLinePad]byte // keeps neighbouring shards' locks apart
}

// cached is the value of a Cache entry. value is never modified once
// stored: it is replaced whole.
type cached struct {
	value   []byte
	fresh   int64  // clock offset (ns) until which it is served without asking Redis
	expires int64  // clock offset (ns) after which it is never served
	gen     uint64 // Cache.gen when stored
	revoked bool   // never served again: kept only as what was last seen (see Seen)
}

// item is a value published in a shard's index: never modified but for
// used, which the first read sets.
type item struct {
	cached
	key  string
	hash uint64      // the key's in the index
	used atomic.Bool // read since it was published
}

// inflight counts the writes of one key between Begin and End.
type inflight struct {
	n         int
	contended bool // another write of the key overlapped one of them
}

// Stats is a snapshot of a Cache.
type Stats struct {
	Entries     int
	Bytes       int64  // len(key)+len(value)+EntryOverhead, summed
	Evictions   uint64 // entries dropped to respect a bound
	Expirations uint64 // entries dropped because they expired
	Notes       int    // keys with digests noted (see EndNoted)
}

// New returns a Cache bounded by l (zero fields take the defaults). clock
// reads the time for expiry; nil means time.Now. A tier disabled by
// MaxEntries -1 has no Cache: New returns an error for it.
func New(l Limits, clock func() time.Time) (*Cache, error) {
	l, err := l.WithDefaults()
	if err != nil {
		return nil, err
	}
	if l.Disabled() {
		return nil, fmt.Errorf("%w: the tier is disabled (MaxEntries -1)", ErrInvalidLimits)
	}
	n := 1
	for n < maxShards && l.MaxEntries/(2*n) >= minShardEntries && l.MaxBytes/int64(2*n) >= minShardBytes {
		n *= 2
	}
	c := &Cache{shards: make([]shard, n), mask: uint64(n - 1), seed: maphash.MakeSeed(), clock: clock, base: time.Now()}
	if clock != nil {
		c.base = clock()
	}
	for i := range c.shards {
		entries := l.MaxEntries / n
		if i < l.MaxEntries%n {
			entries++
		}
		bytes := l.MaxBytes / int64(n)
		if int64(i) < l.MaxBytes%int64(n) {
			bytes++
		}
		sh := &c.shards[i]
		sh.seed = c.seed
		sh.core = NewSegmented(entries, bytes, func(key string, _ cached) { sh.index.remove(key, sh.hashOf(key)) })
		sh.writes = make(map[string]inflight)
		sh.notes = newNotes(max(entries, 1))
	}
	return c, nil
}

func (c *Cache) shard(key string) *shard {
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

// locate returns the shard of key and the key's hash in its index.
func (c *Cache) locate(key string) (*shard, uint64) {
	h := maphash.String(c.seed, key)
	return &c.shards[h&c.mask], h >> 16 // the low bits chose the shard
}

// hashOf returns the hash of key in s's index.
func (s *shard) hashOf(key string) uint64 { return maphash.String(s.seed, key) >> 16 }

// now returns the time elapsed since New. time.Since reads only the
// monotonic clock, half the cost of time.Now on the hit path.
func (c *Cache) now() int64 {
	if c.clock == nil {
		return int64(time.Since(c.base))
	}
	return int64(c.clock().Sub(c.base))
}

// Get returns the value of key. fresh reports whether it is within its
// freshness period (see Set) and of the current generation (see
// Invalidate); an entry past its expiry is never returned. The returned
// slice is shared: do not modify it.
//
// Get takes no lock but to record a use in the LRU order: the first read
// of a value stored does, then one read in eight, if the shard's lock is
// free at once. An expired entry is dropped if the lock is free at once.
func (c *Cache) Get(key string) (value []byte, fresh, ok bool) {
	s, h := c.locate(key)
	v, ok := s.index.load(key, h)
	if !ok {
		return nil, false, false
	}
	now := c.now()
	if now >= v.expires {
		if s.mu.TryLock() {
			if cur, ok := s.index.load(key, h); ok && cur == v {
				s.remove(key)
				s.expirations++
			}
			s.mu.Unlock()
		}
		return nil, false, false
	}
	if v.revoked {
		return nil, false, false
	}
	if first := !v.used.Load() && v.used.CompareAndSwap(false, true); first || rand.Uint32()&7 == 0 && s.mu.TryLock() {
		if first {
			s.mu.Lock()
		}
		if cur, ok := s.index.load(key, h); ok && cur == v {
			if e, ok := s.core.peek(key); ok && s.core.needsBump(e) {
				s.core.bump(e)
			}
		}
		s.mu.Unlock()
	}
	return v.value, now < v.fresh && v.gen == c.gen.Load(), true
}

// Seen returns the last value of key stored here and not expired, even one
// that EndRevoke or an overlapping write took out of service: what this
// process last saw at the source or wrote there, for comparing with the
// source later. It is never to be served. The slice is shared.
func (c *Cache) Seen(key string) ([]byte, bool) {
	v, ok, _ := c.seen(key)
	return v, ok
}

// SeenFor is Seen of w's key, for the writer of w. When there is no entry
// of the key at all, it notes so in w: then EndDelete need not look for
// one unless an entry was stored in its shard since Begin (a write of a
// new key, the common case, looks the key up once instead of twice).
func (c *Cache) SeenFor(w *Write) ([]byte, bool) {
	v, ok, present := c.seen(w.key)
	w.absent = !present
	return v, ok
}

// seen is Seen, and reports whether the index holds an entry of key,
// expired or not.
func (c *Cache) seen(key string) (value []byte, ok, present bool) {
	s, h := c.locate(key)
	v, present := s.index.load(key, h)
	if present && c.now() < v.expires {
		return v.value, true, true
	}
	return nil, false, present
}

// Set stores value under key, served as fresh for freshFor and kept for at
// most expiresIn. It reports whether the value was stored (a value too
// large to fit beside the protected entries of its shard, which hold at
// most 80% of its byte bound, is not, and drops any older value of key)
// and how many entries were evicted to make room. Set takes ownership of
// value.
func (c *Cache) Set(key string, value []byte, freshFor, expiresIn time.Duration) (stored bool, evicted int) {
	s, h := c.locate(key)
	v := c.cached(value, freshFor, expiresIn)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes.known(h, c.now())
	return s.add(key, h, v)
}

func (c *Cache) cached(value []byte, freshFor, expiresIn time.Duration) cached {
	now := c.now()
	return cached{value: value, fresh: now + int64(min(freshFor, expiresIn)), expires: now + int64(expiresIn), gen: c.gen.Load()}
}

// add stores v under key, whose hash in s's index is h. The caller holds
// s.mu.
func (s *shard) add(key string, h uint64, v cached) (stored bool, evicted int) {
	s.adds++
	before := s.core.evictions
	stored = s.core.Add(key, v, int64(len(key)+len(v.value))+EntryOverhead)
	if stored {
		s.index.store(&item{cached: v, key: key, hash: h}, h)
	} else {
		s.index.remove(key, h)
	}
	return stored, int(s.core.evictions - before)
}

// remove drops key and reports whether it was present. The caller holds
// s.mu.
func (s *shard) remove(key string) bool {
	if !s.index.remove(key, s.hashOf(key)) {
		return false // the index holds what core holds
	}
	_, ok := s.core.Remove(key)
	return ok
}

// republish publishes e's value again after a change of it in place. The
// caller holds s.mu.
func (s *shard) republish(e *entry[cached]) {
	h := s.hashOf(e.key)
	s.index.store(&item{cached: e.value, key: e.key, hash: h}, h)
}

// Invalidate makes every entry present now stale: Get still returns it,
// with fresh false, so that it can answer while Redis cannot, but a
// caller that can ask Redis will. Reads and writes in flight lose too: a
// Fill whose token was taken before, or a write begun before, stores
// nothing (see Fill and EndSet). It costs O(1).
func (c *Cache) Invalidate() { c.gen.Add(1) }

// Delete removes key and reports whether it was present.
func (c *Cache) Delete(key string) bool {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remove(key)
}

// Purge removes every entry. Like Invalidate, it keeps the reads and
// writes in flight from storing anything afterwards.
func (c *Cache) Purge() {
	c.Invalidate() // first, so that nothing begun before stores once its shard is empty
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.core.Purge()
		s.index.clear()
		s.notes.clear()
		s.mu.Unlock()
	}
}

// Stats returns the entry and byte counts and the eviction counters.
func (c *Cache) Stats() Stats {
	var st Stats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		st.Entries += s.core.Len()
		st.Bytes += s.core.Bytes()
		st.Evictions += s.core.Evictions()
		st.Expirations += s.expirations
		st.Notes += s.notes.len()
		s.mu.RUnlock()
	}
	return st
}
