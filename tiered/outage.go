package tiered

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/redis"
)

// pending is a write accepted while Redis was unreachable.
type pending struct {
	value   []byte    // never modified: replaced whole
	expires time.Time // absolute wall-clock expiry, as Redis will apply it
	// bases are the Redis values it may replace, as redis.Base spells them ("": the
	// key is absent): what this instance last saw there, and the values of
	// the earlier pending writes of the id, any of which may have landed
	// (a write that timed out can still reach Redis). A write whose
	// value Redis already holds replaces it too.
	bases []string
	sent  bool // it was sent to Redis, which may hold it
	// touched: a Touch adopted the copy held here (see touch), replayed
	// only onto that value; a write that supersedes it takes the bases
	// a write would have had.
	touched bool
	// landing are the digests of the earlier values of the id, each sent
	// and superseded by this write, that may still land (see dropped).
	landing []string
	seq     uint64 // version: a later write or touch of the id raises it
}

// maxBases bounds pending.bases.
const maxBases = 16

// lostWrite is a pending write dropped before it reached Redis.
type lostWrite struct {
	id    string // never reported: to recognise the write being added, and drop the copy it left
	bytes int64
}

// outage is the outage tier: the writes and deletes accepted while Redis
// was unreachable, not yet replayed. An id with state here is served from
// here, and its later writes queue here, until replay drains it: so a
// replay never reorders writes of one id, and a delete made during an
// outage is never undone by an older write.
type outage struct {
	mu       sync.Mutex               // guards the fields below, but for unfences and size
	writes   *lru.Segmented[*pending] // bounded by Options.Fallback
	tombs    map[string]uint64        // deleted ids → seq; at most maxTombs
	maxTombs int                      //
	seq      uint64                   // versions handed out so far
	lost     []lostWrite              // filled by evictions during Add, drained by the caller
	// unfenced holds the ids whose pending write was dropped (evicted, or
	// expired) after it was sent, a replay of it included, or whose write
	// was abandoned by its caller once sent (see Store.abandoned): it may
	// still land, until the next Fence. Their Sets and Deletes wait for
	// that Fence meanwhile (see queue), so that a Delete is not undone by
	// the late write. At most maxTombs: past it, unfencedAll is the seq of
	// the latest such write not recorded, and every id waits until a
	// Fence covers it (0: none).
	unfenced    map[string]unfencedWrite
	unfencedAll uint64
	fenceDone   chan struct{} // made by a change that waits for the next Fence; closed by fenced
	// settled keeps, for a while after the Fence that covered them (see
	// settledFor), the ids unfenced held: a change sent before it was
	// recorded, and answered after the Fence, may have been undone by the
	// late write (see Store.requeue). At most maxTombs.
	settled    map[string]settledWrite
	settledAll settledWrite  // the last unfencedAll that a Fence covered, as settled
	unfences   atomic.Uint64 // seq of the latest unfence: see changedSince
	size       atomic.Int64  // len(writes)+len(tombs)+len(unfenced), +1 with unfencedAll, read without mu
	limits     lru.Limits    // of writes
	settledFor time.Duration
}

// settledWrite is an unfencedWrite that a Fence covered at time at.
type settledWrite struct {
	unfencedWrite
	at time.Time
}

// unfencedWrite is what may still land of a dropped write: the digests
// of its value and of the earlier values it superseded, and the seq at
// which it was dropped.
type unfencedWrite struct {
	digests []string
	seq     uint64
}

// newOutage returns an outage tier; settledFor is how long a change may
// take from its check of the tier to its answer (see settled).
func newOutage(limits lru.Limits, maxTombs int, settledFor time.Duration) *outage {
	o := &outage{tombs: make(map[string]uint64), unfenced: make(map[string]unfencedWrite), settled: make(map[string]settledWrite),
		maxTombs: maxTombs, limits: limits, settledFor: settledFor}
	o.writes = lru.NewSegmented(limits.MaxEntries, limits.MaxBytes, func(id string, p *pending) {
		o.lost = append(o.lost, lostWrite{id: id, bytes: int64(len(p.value))})
		o.dropped(id, p)
	})
	return o
}

// dropped records that p, the pending write of id, was dropped: if it,
// or a write it superseded, was sent, that may still land. The caller
// holds mu.
func (o *outage) dropped(id string, p *pending) {
	landing := p.landing
	if p.sent {
		landing = withBase(landing, digest(p.value))
	}
	if len(landing) == 0 {
		return
	}
	o.unfence(id, landing)
}

// doubt records that a write of id whose caller gave up may still land
// (see redis.Abandoned), leaving the values of these digests (none for a
// delete or a touch), as dropped records a dropped write.
func (o *outage) doubt(id string, landing []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unfence(id, landing)
	o.updateSize()
}

// unfence records that writes of id with these digests may still land,
// until a Fence begun after now. The caller holds mu.
func (o *outage) unfence(id string, landing []string) {
	o.seq++ // a Fence marked before this does not cover it
	if u, ok := o.unfenced[id]; ok || len(o.unfenced) < o.maxTombs {
		for _, d := range landing {
			u.digests = withBase(u.digests, d)
		}
		u.seq = o.seq
		o.unfenced[id] = u
	} else { // which id is not remembered: every id waits
		o.unfencedAll = o.seq
	}
	o.unfences.Store(o.seq)
}

// changedSince returns what to hand to unfencedSince: the seq of the
// latest unfence, read without mu.
func (o *outage) changedSince() uint64 { return o.unfences.Load() }

// unfencedSince reports whether a write of id that may still land, or
// that may have landed before a Fence, was recorded after mark (a value
// of changedSince), or may have been: a change of id sent after mark and
// answered may have been undone by it.
func (o *outage) unfencedSince(id string, mark uint64) bool {
	if o.unfences.Load() == mark {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if u, ok := o.unfenced[id]; ok && u.seq > mark {
		return true
	}
	if u, ok := o.settled[id]; ok && u.seq > mark {
		return true
	}
	return o.unfencedAll > mark || o.settledAll.seq > mark
}

// fenceMark returns the mark to hand to fenced once a Fence begun after
// it succeeded.
func (o *outage) fenceMark() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seq
}

// fenced forgets the dropped writes recorded up to mark: a Fence since has
// made sure they cannot land any more. It returns the ids it forgot, and
// all: writes of ids not remembered were forgotten too.
func (o *outage) fenced(mark uint64, now time.Time) (ids []string, all bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, u := range o.settled {
		if now.Sub(u.at) > o.settledFor {
			delete(o.settled, id)
		}
	}
	for id, u := range o.unfenced {
		if u.seq <= mark {
			delete(o.unfenced, id)
			ids = append(ids, id)
			if len(o.settled) < o.maxTombs {
				o.settled[id] = settledWrite{u, now}
			} else { // which id is not remembered: every id's change may have been undone
				o.settledAll = settledWrite{unfencedWrite{seq: max(o.settledAll.seq, u.seq)}, now}
			}
		}
	}
	if o.unfencedAll != 0 && o.unfencedAll <= mark {
		o.settledAll = settledWrite{unfencedWrite{seq: max(o.settledAll.seq, o.unfencedAll)}, now}
		o.unfencedAll = 0
		all = true
	} else if now.Sub(o.settledAll.at) > o.settledFor {
		o.settledAll = settledWrite{}
	}
	if o.fenceDone != nil {
		close(o.fenceDone)
		o.fenceDone = nil
	}
	o.updateSize()
	return ids, all
}

// nextFence returns a channel closed by the next fenced. The caller holds
// mu.
func (o *outage) nextFence() <-chan struct{} {
	if o.fenceDone == nil {
		o.fenceDone = make(chan struct{})
	}
	return o.fenceDone
}

func writeSize(id string, p *pending) int64 { return int64(len(id)+len(p.value)) + lru.EntryOverhead }

// digest is v's sum as redis.Replay.Bases spell it.
func digest(v []byte) string { return redis.Base(redis.Sum(v)) }

// sum is v's redis.Sum (never lru.Absent), as the local tier notes it.
func sum(v []byte) lru.Digest { return redis.Sum(v) }

// hexOf is d as redis.Replay.Bases spell it ("" for lru.Absent).
func hexOf(d lru.Digest) string {
	if d == lru.Absent {
		return ""
	}
	return redis.Base(d)
}

// active reports, without locking, whether the tier holds anything.
func (o *outage) active() bool { return o.size.Load() > 0 }

func (o *outage) updateSize() {
	n := o.writes.Len() + len(o.tombs) + len(o.unfenced)
	if o.unfencedAll != 0 {
		n++
	}
	o.size.Store(int64(n))
}

// holds reports whether id has a pending write or a tombstone.
func (o *outage) holds(id string) bool {
	if !o.active() {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.held(id)
}

// held is holds; the caller holds mu.
func (o *outage) held(id string) bool {
	_, pendingWrite := o.writes.Peek(id)
	_, dead := o.tombs[id]
	return pendingWrite || dead
}

// lookup returns the pending value of id (shared: copy it), or tombstoned
// true for an id deleted during the outage. It counts as a use of the
// entry, which protects sessions in use from a flood of new ones.
func (o *outage) lookup(id string, now time.Time) (value []byte, tombstoned, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, found := o.writes.Get(id); found {
		if !now.Before(p.expires) {
			return nil, true, true // expired: gone, as in Redis
		}
		return p.value, false, true
	}
	if _, dead := o.tombs[id]; dead {
		return nil, true, true
	}
	return nil, false, false
}

// queue reports whether a change of kind k of id queues here, behind the
// id's state: a pending write or a tombstone. A Set or Delete of an id
// without either but with a write that may still land (unfenced, or past
// maxTombs of them unfencedAll) is not queued but gets wait, closed by the
// next Fence (see Store.queues): queued, it would be replayed only onto a
// value this instance saw, and Redis may hold another. A Touch neither
// queues nor waits behind such a write: a late SET may set the session's
// lifetime again, but it neither revives a deleted session nor replaces
// a newer value.
func (o *outage) queue(id string, k kind) (queue bool, wait <-chan struct{}) {
	if !o.active() {
		return false, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if state := o.held(id); state || k == kindTouch {
		return state, nil
	}
	if _, unfenced := o.unfenced[id]; unfenced || o.unfencedAll != 0 {
		return false, o.nextFence()
	}
	return false, nil
}

// supersede drops the pending write of id if nothing of it can have
// reached Redis (never sent, superseding nothing sent) and the id has no
// other state: a change that Redis took concurrently replaces it, with
// nothing left to replay. It reports whether it did.
func (o *outage) supersede(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.writes.Peek(id)
	if !ok || p.sent || len(p.landing) > 0 || o.unfencedAll != 0 {
		return false
	}
	if _, dead := o.tombs[id]; dead {
		return false
	}
	if _, unfenced := o.unfenced[id]; unfenced {
		return false
	}
	o.writes.Remove(id)
	o.updateSize()
	return true
}

// drop drops the pending write of id, if any, as an eviction would (see
// dropped).
func (o *outage) drop(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.discard(id)
}

// discard is drop; the caller holds mu.
func (o *outage) discard(id string) {
	if p, ok := o.writes.Remove(id); ok {
		o.dropped(id, p)
		o.updateSize()
	}
}

// write records a write of id. base, asked only for an id that has no
// pending write yet, returns the digests of the Redis values this instance
// last saw or wrote, or [""] (absent);
// sent says the write was sent to Redis and may have landed there. It
// returns stored false, changing nothing, for a write the tier cannot
// keep, and the earlier writes evicted to make room for it.
func (o *outage) write(id string, value []byte, expires time.Time, base func() []string, sent bool) (stored bool, lost []lostWrite) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.add(id, value, expires, o.landed(id, base), sent)
}

// landed returns base widened with the values of id that may land, or
// may have landed, before the replay: the writes of id dropped after
// they were sent or abandoned by their callers (see unfenced and
// settled). The caller holds mu, as add does when it calls the result.
func (o *outage) landed(id string, base func() []string) func() []string {
	return func() []string {
		bases := base()
		for _, d := range o.unfenced[id].digests { // they may land before the replay
			bases = withBase(bases, d)
		}
		for _, d := range o.settled[id].digests { // they may have landed
			bases = withBase(bases, d)
		}
		return bases
	}
}

// rewrite records a write of id that Redis already holds after the id's
// state (see Store.requeue), as sent, if it fits without evicting another
// write; otherwise the id's pending write, if any, is dropped (see
// dropped): neither served nor replayed after it.
func (o *outage) rewrite(id string, value []byte, expires time.Time, base func() []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, bytes := o.writes.Len()+1, o.writes.Bytes()+writeSize(id, &pending{value: value})
	old, had := o.writes.Peek(id)
	if had {
		n, bytes = n-1, bytes-writeSize(id, old)
	}
	if n <= o.limits.MaxEntries && bytes <= o.limits.MaxBytes {
		if stored, _ := o.add(id, value, expires, o.landed(id, base), true); stored || !had {
			return
		}
	}
	o.discard(id)
}

// add is write; the caller holds mu.
func (o *outage) add(id string, value []byte, expires time.Time, base func() []string, sent bool) (stored bool, lost []lostWrite) {
	p := &pending{value: value, expires: expires, sent: sent}
	if writeSize(id, p) > o.limits.MaxBytes {
		return false, nil // would drop the id's earlier write and keep nothing
	}
	old, had := o.writes.Peek(id)
	switch {
	case had: // superseded: it still replaces what the first write replaced
		p.bases, p.landing = old.bases, old.landing
		if old.touched { // which a Touch narrowed to the value it touched
			p.bases = base()
			for _, d := range old.bases {
				p.bases = withBase(p.bases, d)
			}
		}
		if old.sent { // and the earlier value, if it may have landed
			d := digest(old.value)
			p.bases, p.landing = withBase(p.bases, d), withBase(old.landing, d)
		}
	case o.tombs[id] != 0:
		p.bases = []string{""} // the delete is replayed first: the key will be absent
	default:
		p.bases = base()
	}
	o.seq++
	p.seq = o.seq
	stored = o.writes.Add(id, p, writeSize(id, p))
	lost, o.lost = o.lost, nil
	for i := 0; i < len(lost); i++ {
		if lost[i].id != id {
			continue
		}
		stored = false // the write itself was evicted: not kept, not acknowledged
		if had {
			lost[i].bytes = int64(len(old.value)) // the earlier write of id is gone with it
		} else {
			lost = append(lost[:i], lost[i+1:]...)
			i--
		}
	}
	o.updateSize()
	return stored, lost
}

// touched is what touch did.
type touched struct {
	found   bool // the pending write of id was extended
	expired bool // it had expired, and was dropped
	// adopted: the copy held, value, became the pending write of id;
	// stored and lost are add's.
	adopted, stored bool
	value           []byte
	lost            []lostWrite
}

// touch sets a new expiry on the pending write of id, if any (found); a
// pending write that has expired is dropped, as Redis would have dropped
// it, and reported expired: a touch does not revive it. Otherwise, unless
// id has a tombstone, the copy held returns (the value of id this
// instance last saw in Redis; held nil, or reporting no copy: nothing)
// becomes its pending write, sent as add takes it, replayed only onto
// that same value: a Touch changes no value, and revives no session
// deleted or changed elsewhere (its replay then conflicts). The checks
// and the adoption hold mu together, so that the copy never replaces a
// write of id recorded concurrently, nor undoes a concurrent delete. held
// is called under mu.
func (o *outage) touch(id string, now, expires time.Time, held func() ([]byte, bool), sent bool) (t touched) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, ok := o.writes.Get(id); ok {
		if !now.Before(p.expires) {
			o.discard(id)
			t.expired = true
			return t
		}
		o.seq++
		np := *p
		np.expires, np.seq = expires, o.seq
		o.writes.Add(id, &np, writeSize(id, &np))
		t.found = true
		return t
	}
	if _, dead := o.tombs[id]; dead || held == nil {
		return t // deleted, as in Redis, or no copy to adopt: nothing changes
	}
	if t.value, t.adopted = held(); t.adopted {
		t.stored, t.lost = o.add(id, t.value, expires, func() []string { return []string{digest(t.value)} }, sent)
		if p, ok := o.writes.Peek(id); ok && t.stored {
			p.touched = true
		}
	}
	return t
}

// tombstone records a delete of id and drops its pending write. It
// returns false, changing nothing, when no more tombstones can be kept.
func (o *outage) tombstone(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, dead := o.tombs[id]; !dead && len(o.tombs) >= o.maxTombs {
		return false
	}
	o.seq++
	o.tombs[id] = o.seq
	o.writes.Remove(id)
	o.updateSize()
	return true
}

// tombBatch returns the tombstones to replay.
func (o *outage) tombBatch() (ids []string, seqs []uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, seq := range o.tombs {
		ids, seqs = append(ids, id), append(seqs, seq)
	}
	return ids, seqs
}

// tombsApplied drops the tombstones that Redis applied, unless the id was
// deleted again meanwhile. free[i] reports that ids[i] has no state left
// here: no tombstone, no pending write.
func (o *outage) tombsApplied(ids []string, seqs []uint64) (free []bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	free = make([]bool, len(ids))
	for i, id := range ids {
		if o.tombs[id] == seqs[i] {
			delete(o.tombs, id)
			free[i] = !o.held(id)
		}
	}
	o.updateSize()
	return free
}

// writeBatch returns the pending writes to replay, with their versions,
// but those whose id waits for its delete. Writes that expired meanwhile
// are dropped: they would expire in Redis at once, and are not a loss.
func (o *outage) writeBatch(now time.Time) (batch []redis.Replay, seqs []uint64, expired int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var dead []string
	o.writes.Range(func(id string, p *pending) bool {
		if !now.Before(p.expires) {
			dead = append(dead, id)
			o.dropped(id, p)
			return true
		}
		if _, tomb := o.tombs[id]; tomb {
			return true // its delete goes first
		}
		batch = append(batch, redis.Replay{ID: id, Value: p.value, Expires: p.expires, Bases: p.bases}) // withBase copies, never changes, p.bases
		seqs = append(seqs, p.seq)
		return true
	})
	for _, id := range dead {
		o.writes.Remove(id)
	}
	o.updateSize()
	return batch, seqs, len(dead)
}

// sending returns the writes of batch still pending as writeBatch took
// them, each marked sent, just before they are sent: dropped from now on
// (evicted, expired), each may still land (see dropped), and a change of
// its id queues here until a Fence. A write dropped or superseded since
// writeBatch is left out: it is not sent at all (a newer write of the id
// is replayed in its place). It filters batch and seqs in place.
func (o *outage) sending(batch []redis.Replay, seqs []uint64) ([]redis.Replay, []uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for i, w := range batch {
		if p, ok := o.writes.Peek(w.ID); ok && p.seq == seqs[i] {
			p.sent = true
			batch[n], seqs[n] = w, seqs[i]
			n++
		}
	}
	clear(batch[n:]) // the values of writes left out
	return batch[:n], seqs[:n]
}

// writesDone records the outcome of replayed writes: an applied or
// conflicting write is dropped, unless a newer write of the id came
// meanwhile; that newer write then replaces what was just applied (or
// what won the conflict, which replay cannot know: it will conflict too).
func (o *outage) writesDone(batch []redis.Replay, seqs []uint64, applied []bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, w := range batch {
		p, ok := o.writes.Peek(w.ID)
		switch {
		case !ok:
		case p.seq == seqs[i]:
			o.writes.Remove(w.ID)
		case applied[i]:
			p.bases = withBase(p.bases, digest(w.Value))
		}
	}
	o.updateSize()
}

// writesUnknown records replayed writes whose round trip failed: each may
// still have landed (a replay that timed out can reach Redis later, until
// the next Fence), so whatever replaces it must accept it as the value it
// replaces. A write still pending is marked sent; a newer write of the id,
// come meanwhile, takes the replayed value among its bases.
func (o *outage) writesUnknown(batch []redis.Replay, seqs []uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, w := range batch {
		p, ok := o.writes.Peek(w.ID)
		switch {
		case !ok:
		case p.seq == seqs[i]:
			p.sent = true
		default:
			d := digest(w.Value)
			p.bases, p.landing = withBase(p.bases, d), withBase(p.landing, d)
		}
	}
}

// withBase returns bases with d added, as a new slice (bases may be shared
// by a superseded write), unless d is there already. Past maxBases it
// keeps the first, what this instance saw in Redis before any of its own
// writes, and the newest: the later a value was sent, the likelier it is
// what Redis holds.
func withBase(bases []string, d string) []string {
	if slices.Contains(bases, d) {
		return bases
	}
	out := append(append(make([]string, 0, len(bases)+1), bases...), d)
	if len(out) > maxBases {
		out = append(out[:1], out[len(out)-(maxBases-1):]...)
	}
	return out
}

// counts returns the pending writes, their bytes and the tombstones.
func (o *outage) counts() (writes int, bytes int64, tombs int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes.Len(), o.writes.Bytes(), len(o.tombs)
}
