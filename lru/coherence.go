package lru

import "time"

// Write is a write of one key in progress, between Begin and one of the
// End methods. Every Write must be ended exactly once.
type Write struct {
	s      *shard
	key    string
	hash   uint64 // the key's in s's index, and in its notes
	gen    uint64 // Cache.gen at Begin
	adds   uint64 // s.adds at Begin
	absent bool   // SeenFor found no entry of key, after Begin
}

// Begin announces a write of key to the source of truth. Until the write
// ends, reads that went to the source of truth cannot fill key (see Fill).
// When writes of the same key overlap, their order at the source is
// unknown, so none of them leaves an entry to serve: each keeps its
// outcome out of service, for Seen and Noted to return. So does a write
// that an Invalidate or a Purge overlapped: the source may have lost its
// value meanwhile.
func (c *Cache) Begin(key string) Write {
	s, h := c.locate(key)
	gen := c.gen.Load()
	s.mu.Lock()
	s.seq++
	w := s.writes[key]
	w.contended = w.n > 0 || w.contended
	w.n++
	s.writes[key] = w
	adds := s.adds
	s.mu.Unlock()
	return Write{s: s, key: key, hash: h, gen: gen, adds: adds}
}

// end closes w and reports whether it overlapped another write of its key
// or a whole-cache invalidation: then its value must not be kept. The
// caller holds w.s.mu.
func (c *Cache) end(w Write) (drop bool) {
	return w.close() || w.gen != c.gen.Load()
}

// close closes w and reports whether it overlapped another write of its
// key. The caller holds w.s.mu.
func (w Write) close() (contended bool) {
	rec := w.s.writes[w.key]
	rec.n--
	if rec.n == 0 {
		delete(w.s.writes, w.key)
	} else {
		w.s.writes[w.key] = rec
	}
	return rec.contended
}

// EndSet ends w after the source accepted value: the entry takes value
// (see Set for freshFor and expiresIn), unless the write overlapped
// another write or an Invalidate, in which case value is kept out of
// service (see Seen): its order at the source is unknown. It returns the
// number of entries evicted to make room.
func (c *Cache) EndSet(w Write, value []byte, freshFor, expiresIn time.Duration) (evicted int) {
	return c.endSet(w, value, freshFor, expiresIn, false)
}

// endSet ends w storing value, out of service if outOfService or if the
// write overlapped another (see EndSet).
func (c *Cache) endSet(w Write, value []byte, freshFor, expiresIn time.Duration, outOfService bool) (evicted int) {
	v := c.cached(value, freshFor, expiresIn)
	v.gen = w.gen // an Invalidate racing with this EndSet leaves it stale
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	overlapped := c.end(w) // always: it closes w
	v.revoked = overlapped || outOfService
	if !overlapped {
		w.s.notes.known(w.hash, c.now()) // value is the source's now
	}
	_, evicted = w.s.add(w.key, w.hash, v)
	return evicted
}

// EndSetIfOverlapped is for a write whose outcome is known in the order
// the source executed the writes of the key, and in order with the
// EndRevoke calls of other writers' changes (one goroutine reads both, in
// order, from one connection). If another write of the key overlapped w so
// far, EndSet would drop value; EndSetIfOverlapped instead ends w there and
// then, storing value, since ends made in that order leave the last
// write's value (an Invalidate or a Purge since Begin still leaves it out
// of service, and writes that end out of order and overlapped it still
// drop their own outcome), and reports true. Otherwise it leaves w open,
// for the caller to end with EndSet, and reports false: the common case
// costs the ordered reader one look under the shard's lock.
func (c *Cache) EndSetIfOverlapped(w Write, value []byte, freshFor, expiresIn time.Duration) bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if !w.s.writes[w.key].contended {
		return false
	}
	v := c.cached(value, freshFor, expiresIn)
	v.gen = w.gen
	c.end(w)
	v.revoked = w.gen != c.gen.Load()
	w.s.notes.known(w.hash, c.now()) // value is the source's now
	w.s.add(w.key, w.hash, v)
	return true
}

// EndSetOutOfService ends w after the source accepted value, storing value
// out of service as EndRevoke leaves an entry: never served, but returned
// by Seen as the last value this process wrote there. For a write whose
// value the caller may not serve (it would not hear of the next change)
// but must remember (to compare with the source later).
func (c *Cache) EndSetOutOfService(w Write, value []byte, freshFor, expiresIn time.Duration) {
	c.endSet(w, value, freshFor, expiresIn, true)
}

// EndRevoke ends w by taking the entry out of service: it is never served
// again, fresh or stale, until a write or a read of the source replaces
// it, but Seen still returns it. For a change made at the source by
// someone else, whose value is unknown.
func (c *Cache) EndRevoke(w Write) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	c.end(w)
	w.s.revoke(w.key)
}

// EndTouch ends w after the source extended the key's lifetime: a present
// entry gets the new expiry, unless the write overlapped another write or
// an Invalidate, in which case it is taken out of service (see
// EndRevoke). Its freshness is not extended: a touch does not say that the
// value is still the source's.
func (c *Cache) EndTouch(w Write, expiresIn time.Duration) {
	t := c.cached(nil, expiresIn, expiresIn)
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if c.end(w) {
		w.s.revoke(w.key)
		return
	}
	if e, ok := w.s.core.peek(w.key); ok {
		// A touch says nothing of the value: it stays fresh no longer
		// than a read of the source made it, and never past its expiry.
		e.value.fresh, e.value.expires = min(e.value.fresh, t.expires), t.expires
		w.s.republish(e)
	}
	w.s.notes.touch(w.hash, c.now(), t.expires) // the noted values live as long
}

// EndKeep ends w leaving the entry as it is, unless the write overlapped
// another write of the key, in which case it is taken out of service (see
// EndRevoke): for a write that did not reach the source. (An Invalidate
// since Begin made the entry stale already: nothing more to do.)
func (c *Cache) EndKeep(w Write) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.close() {
		w.s.revoke(w.key)
	}
}

// EndDelete ends w after the source deleted the key: the entry and what
// is noted of the key (see EndNoted) are dropped. If the write overlapped
// another write of the key or an Invalidate, the entry is only taken out
// of service and Absent joins the notes instead: the source may hold
// either.
func (c *Cache) EndDelete(w Write) {
	c.endWithout(w, Absent, 0)
}

// EndNoted ends w after the source accepted a value that the caller does
// not keep: the entry is dropped, and d, the value's digest, is noted
// until expiresIn, the key's lifetime at the source: Noted returns it, as
// Seen returns a value, for comparing with the source later. The note
// replaces what was noted of the key, unless the write overlapped another
// write of the key or an Invalidate: the source may then hold any of
// their values, so the entry is only taken out of service and d joins the
// notes (at most MaxNoted, the oldest forgotten first). Each shard notes
// at most as many keys as it holds entries, in LRU order; Purge forgets
// them all.
func (c *Cache) EndNoted(w Write, d Digest, expiresIn time.Duration) {
	c.endWithout(w, d, expiresIn)
}

// EndUnsure ends w when its outcome at the source is unknown (a failed
// write that may have landed): the entry is taken out of service but kept
// for Seen, and d, the digest of the value the write would leave (Absent
// for a delete), joins the notes of the key, until expiresIn or as long as
// the entry or a note it joins would last: the source may hold any of
// them.
func (c *Cache) EndUnsure(w Write, d Digest, expiresIn time.Duration) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	c.end(w)
	c.noteBeside(w, d, expiresIn, true)
}

// endWithout ends a write that left no value to keep (EndDelete,
// EndNoted) and whose outcome is d (Absent: none).
func (c *Cache) endWithout(w Write, d Digest, expiresIn time.Duration) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if c.end(w) {
		c.noteBeside(w, d, expiresIn, false)
		return
	}
	if d == Absent {
		w.s.notes.forget(w.hash)
	} else {
		now := c.now()
		w.s.notes.put(w.hash, d, true, now, now+int64(expiresIn))
	}
	if w.absent && w.s.adds == w.adds {
		return // absent after Begin, and nothing stored since
	}
	w.s.remove(w.key)
}

// absentFor is how long at least the absent key is noted beside the
// values of writes that a delete overlapped (see noteBeside): a delete has
// no lifetime of its own, and the note of a write that ends after it
// joins it only while it lasts (before, it expired at once, and the
// absent key was forgotten when the delete ended first). Far longer than
// a write takes; as long as the values beside it would last, if longer.
const absentFor = time.Minute

// noteBeside takes w's entry out of service and notes d beside what is
// noted of its key. For a write whose outcome is unknown, when nothing is
// known of the key (no entry, no note), the source may still hold what it
// held before, unknown: d goes beside Absent, what the caller assumes of
// a key it knows nothing of. The caller holds w.s.mu.
func (c *Cache) noteBeside(w Write, d Digest, expiresIn time.Duration, unknown bool) {
	now := c.now()
	expires := now + int64(expiresIn)
	if d == Absent { // a delete's: it must outlast the writes it overlapped, whose notes join it
		expires = max(expires, now+int64(absentFor))
	}
	e, held := w.s.core.peek(w.key)
	if held {
		expires = max(expires, e.value.expires)
		held = now < e.value.expires
	}
	if unknown && !held && w.s.notes.find(w.hash, now, false) == noNote {
		w.s.notes.put(w.hash, Absent, true, now, expires)
	}
	w.s.revoke(w.key)
	w.s.notes.put(w.hash, d, false, now, expires)
	if unknown {
		w.s.notes.markUnsure(w.hash, now)
	}
}

// revoke takes the entry of key out of service (see EndRevoke). The
// caller holds s.mu.
func (s *shard) revoke(key string) {
	if e, ok := s.core.peek(key); ok && !e.value.revoked {
		e.value.revoked = true
		s.republish(e)
	}
}

// Noted returns the digests noted of key (see EndNoted and EndUnsure),
// newest last, or nil: values this process wrote at the source, or may
// have, and did not keep. Like Seen, it is for comparing with the source:
// the source may have changed since.
func (c *Cache) Noted(key string) []Digest {
	s, h := c.locate(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.notes.get(h, c.now(), nil)
}

// FillToken is taken before reading key from the source of truth, and
// handed to Fill with what was read.
type FillToken struct {
	seq   uint64 // the shard's seq plus one; 0: never fill
	gen   uint64 // Cache.gen when taken
	shard *shard
}

// FillToken returns the token for a read of key from the source of truth.
func (c *Cache) FillToken(key string) FillToken {
	s := c.shard(key)
	gen := c.gen.Load()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, busy := s.writes[key]; busy {
		return FillToken{}
	}
	return FillToken{seq: s.seq + 1, gen: gen, shard: s}
}

// Fill stores what a read from the source returned, as Set does, but only
// if no write of the key's shard began since the token was taken, none was
// in progress then, and no Invalidate or Purge came since: otherwise the
// value read may already be stale, and nothing is stored. It reports
// whether the value was stored.
func (c *Cache) Fill(t FillToken, key string, value []byte, freshFor, expiresIn time.Duration) bool {
	if t.shard == nil {
		return false
	}
	v := c.cached(value, freshFor, expiresIn)
	v.gen = t.gen // an Invalidate racing with this Fill leaves it stale
	s := t.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seq+1 != t.seq || t.gen != c.gen.Load() {
		return false
	}
	h := s.hashOf(key)
	s.notes.known(h, c.now()) // the source's value supersedes them
	stored, _ := s.add(key, h, v)
	return stored
}

// FillAbsent records that a read from the source found no key: the entry
// is dropped, if no write of the key's shard began since the token was
// taken and none was in progress then, so that a stale copy of a key
// deleted at the source cannot be served later (stale-if-error). An
// Invalidate or Purge since does not matter: dropping makes nothing fresh.
// It reports whether it dropped one.
func (c *Cache) FillAbsent(t FillToken, key string) bool {
	if t.shard == nil {
		return false
	}
	s := t.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seq+1 != t.seq {
		return false
	}
	return s.remove(key)
}
