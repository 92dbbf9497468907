package tiered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/telemetry"
)

// kind is what a change does to a session.
type kind int

const (
	kindSet kind = iota
	kindDelete
	kindTouch
)

var kindNames = [...]string{kindSet: "set", kindDelete: "delete", kindTouch: "touch"}

// change is one write of a session: Set, Delete or Touch. Every change
// takes the one path of write.
type change struct {
	kind     kind
	id       string
	value    []byte        // kindSet: the caller's bytes while borrowed, else the Store's own copy
	ttl      time.Duration // kindSet, kindTouch
	borrowed bool          // value is the caller's: own it before keeping it past the call
	kept     bool          // kindSet sent to Redis for a session held here (see Store.send)
}

// own makes c's value the Store's own copy, the first time it is to be
// kept: in the local tier or the outage tier. A write that keeps nothing
// (a new session in per-key mode) never copies it: Redis's tier does not
// keep it past the call either.
func (c *change) own() {
	if c.borrowed {
		c.value, c.borrowed = bytes.Clone(c.value), false
	}
}

// Set stores a copy of data under id for ttl: in Redis first, then, once
// Redis accepted it, in the local tier. While Redis is unreachable, the
// write is accepted into the outage tier and the local tier, returns nil,
// and is replayed once Redis is back; a write the outage tier cannot keep
// returns ErrUnavailable and changes nothing (but a write sent to Redis
// before it failed may have landed there: the local copy is then no
// longer served).
func (s *Store) Set(ctx context.Context, id string, data []byte, ttl time.Duration) error {
	if err := s.check(id); err != nil {
		return err
	}
	if ttl <= 0 {
		return errTTL
	}
	if s.opts.MaxValueBytes >= 0 && len(data) > s.opts.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), s.opts.MaxValueBytes)
	}
	if data == nil {
		data = []byte{}
	}
	return s.run(ctx, telemetry.OpSet, change{kind: kindSet, id: id, value: data, ttl: ttl, borrowed: len(data) > 0})
}

// Delete removes the session from Redis and from the local tier. Deleting
// a missing session is not an error. While Redis is unreachable, the
// delete is remembered (a tombstone) and replayed before any write once
// Redis is back: the session is never readable again, here or, after the
// replay, anywhere. If no more tombstones can be kept, Delete returns
// ErrUnavailable. The local copy is dropped in every case.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(id); err != nil {
		return err
	}
	return s.run(ctx, telemetry.OpDelete, change{kind: kindDelete, id: id})
}

// Touch sets the session's remaining lifetime to ttl, or returns
// ErrNotFound for a missing session. It does not make a local copy fresh:
// only a read of Redis does. While Redis is unreachable, it extends the
// session this instance holds and replays that like a write; a session it
// does not hold, or whose pending write has expired, is ErrNotFound
// (ErrUnavailable with StrictReads).
func (s *Store) Touch(ctx context.Context, id string, ttl time.Duration) error {
	if err := s.check(id); err != nil {
		return err
	}
	if ttl <= 0 {
		return errTTL
	}
	return s.run(ctx, telemetry.OpTouch, change{kind: kindTouch, id: id, ttl: ttl})
}

// check returns ErrClosed, or the error of an invalid id.
func (s *Store) check(id string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return checkID(id)
}

// run registers a checked change with Close and traces it.
func (s *Store) run(ctx context.Context, op telemetry.Op, c change) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.ops.Done()
	ctx, span := s.tel.Start(ctx, op)
	tier := telemetry.TierRedis
	err := s.write(ctx, c, &tier)
	s.end(span, tier, err)
	return err
}

// write is the one path of every change: queue behind the id's outage
// state, or send it to Redis through the breaker, with the local copy
// ordered against reads in flight; then announce it, or queue it for
// replay, or fail.
func (s *Store) write(ctx context.Context, c change, tier *telemetry.Tier) error {
	w := s.beginLocal(c.id)
	call := ctx     // the Redis call's context
	var mark uint64 // see requeue
	if s.out != nil {
		var queue bool
		var deadline time.Time
		var err error
		queue, deadline, mark, err = s.queues(ctx, c)
		switch {
		case err != nil: // the caller gave up waiting: nothing was sent
			s.endUnsent(w, c)
			return s.failure(ctx, kindNames[c.kind], err)
		case queue: // behind the id's pending state
			*tier = telemetry.TierFallback
			c.own()
			return s.pending(ctx, c, w, nil)
		case !deadline.IsZero(): // the wait and the call share one OpTimeout
			var cancel context.CancelFunc
			call, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
	}
	if c.kind != kindDelete && s.listener != nil && ((c.kind == kindTouch && !s.remote.PerKey()) || s.listener.Echoes()) {
		s.inv.expect(c.id) // its echo will drop the copy: read it again then
	}
	var (
		found bool
		e     ending
	)
	err := s.brk.Do(call, func() (err error) { // a call the wait left no time for is not Redis's failure
		found, e, err = s.send(call, &c, &w)
		return err
	})
	s.loads.Forget(c.id)
	switch {
	case err == nil:
		switch e {
		case endUsual:
			s.endLocal(w, c, found)
		case endDrop:
			switch {
			case c.kind == kindSet && c.kept:
				// Not to be served, but this store's last write of a
				// session it held: a write accepted during an outage that
				// follows replays onto it (see lastSeen).
				s.local.EndSetOutOfService(w, c.value, s.opts.Local.TTL, c.ttl)
			case c.kind == kindSet && s.out != nil:
				// A session not held here: its digest is enough for that.
				s.local.EndNoted(w, sum(c.value), c.ttl)
			case c.kind == kindTouch && found: // the value is unchanged: still a base
				s.local.EndRevoke(w)
			default:
				s.dropWrite(w)
			}
		}
		s.announce(ctx, c.id)
		if c.kind == kindTouch && !found {
			return ErrNotFound
		}
		if s.out != nil && (s.out.active() || s.out.changedSince() != mark) {
			return s.requeue(ctx, c, mark)
		}
		return nil
	case s.out != nil && s.unreachable(ctx, err):
		*tier = telemetry.TierFallback
		if !errors.Is(err, breaker.ErrOpen) && s.listener != nil {
			s.listener.Doubt() // it may have landed: the others revalidate once Redis is back
		}
		c.own()
		return s.pending(ctx, c, w, err)
	}
	s.endFailed(w, c, err)
	if !redis.IsReply(err) && !errors.Is(err, breaker.ErrOpen) {
		s.announce(ctx, c.id) // it may have landed: the others must not trust their copies
	}
	return s.failure(ctx, kindNames[c.kind], err)
}

// queues reports whether c queues in the outage tier behind its id's
// state (see outage.queue). A Set or Delete of a session with a write
// that may still land (dropped after it was sent, or abandoned by its
// caller), or of any session past Options.MaxTombstones of them, waits
// for the Fence that the replay makes as soon as Redis answers, rather
// than be undone by such a write landing after it. The wait and the Redis
// call that follows share one OpTimeout, which ends at deadline; the
// change queues if the breaker is open or the wait ends first, and fails
// with the context's error if the caller gives up. mark is what requeue
// is given: changedSince, read before the check that let c go.
func (s *Store) queues(ctx context.Context, c change) (queue bool, deadline time.Time, mark uint64, err error) {
	mark = s.out.changedSince() // before the check: see requeue
	queue, wait := s.out.queue(c.id, c.kind)
	if wait == nil {
		return queue, time.Time{}, mark, nil
	}
	if s.brk.Rejecting() {
		return true, time.Time{}, mark, nil
	}
	deadline = time.Now().Add(s.opts.OpTimeout)
	t := time.NewTimer(s.opts.OpTimeout)
	defer t.Stop()
	for wait != nil { // a Fence begun before the write was recorded does not cover it
		s.wakeRecovery()
		select {
		case <-wait:
		case <-t.C:
			return true, time.Time{}, mark, nil
		case <-ctx.Done():
			return false, time.Time{}, mark, ctx.Err()
		}
		mark = s.out.changedSince()
		queue, wait = s.out.queue(c.id, c.kind)
	}
	return queue, deadline, mark, nil
}

// requeue records c, which Redis just took, behind the state its id took
// in the outage tier while c was on its way, if any: a change accepted
// there meanwhile (a write that failed, a Touch that made the copy held
// here a pending write) would otherwise be served, and replayed, after c,
// which ended last; a write dropped after it was sent, or abandoned by its
// caller, may land after c, and may have before a Fence that has since
// ended: c is recorded if such a write of its id was recorded after mark,
// c's last check of the tier (see outage.unfencedSince). A pending write that cannot have reached Redis is simply replaced by c,
// which Redis holds: nothing is left to replay. Otherwise c is recorded
// after that state: a Delete as a tombstone, a Set as a write (its replay
// accepts the value Redis holds, its own) if it fits without evicting
// another, a Touch extends the pending write. A Set or Delete that cannot
// be recorded drops the pending write instead (see outage.dropped); a
// Delete then returns ErrUnavailable if that write was sent and may
// still land.
func (s *Store) requeue(ctx context.Context, c change, mark uint64) error {
	if queue, _ := s.out.queue(c.id, c.kind); !queue && (c.kind == kindTouch || !s.out.unfencedSince(c.id, mark)) {
		return nil
	}
	// c's own local write has ended: a read of Redis may have filled a
	// copy since, or be about to, with a value the state recorded here
	// replaces. This write voids the fills still to come, and ends the
	// copy as the state requires.
	w := s.beginLocal(c.id)
	if c.kind != kindTouch && s.out.supersede(c.id) {
		// The copy may be the superseded write's: c ends it as its own end
		// would have, had that write not come between.
		if c.kind == kindDelete {
			s.dropWrite(w)
		} else if s.local != nil {
			s.local.EndRevoke(w)
		}
		return nil
	}
	switch c.kind {
	case kindDelete:
		defer s.dropWrite(w)
		if !s.out.tombstone(c.id) {
			s.out.drop(c.id)
			if queue, wait := s.out.queue(c.id, c.kind); queue || wait != nil { // a write of it may still land
				return s.tombstonesFull(ctx)
			}
		}
	case kindSet:
		c.own()
		base := func() []string { return s.lastSeen(c.id) }
		s.out.rewrite(c.id, c.value, s.now().Add(c.ttl), base)
		if s.local != nil {
			s.local.EndRevoke(w) // a fill may have replaced c's value: read it again once the state drains
		}
	default:
		now := s.now()
		s.out.touch(c.id, now, now.Add(c.ttl), nil, false)
		s.keepLocal(w)
	}
	s.wakeRecovery()
	return nil
}

// endFailed ends w after c failed with err. A change the breaker refused
// ran nothing: the copy stays (out of service after a delete, which must
// not be served). Any other may have landed (or may still: a cancelled
// call was perhaps sent): the copy is taken out of service, and, for the
// replay of a later outage write, what c would leave joins the values
// Redis may hold (see lastSeen).
func (s *Store) endFailed(w lru.Write, c change, err error) {
	switch {
	case s.local == nil:
	case !sent(err):
		s.endUnsent(w, c)
	case s.out == nil: // no replay to compare with Redis
		s.local.EndDelete(w)
	case c.kind == kindSet:
		s.local.EndUnsure(w, sum(c.value), c.ttl)
	case c.kind == kindDelete:
		s.local.EndUnsure(w, lru.Absent, 0)
	default: // a touch leaves the value as it was
		s.local.EndRevoke(w)
	}
}

// endUnsent ends w after c was not sent: the copy stays, out of service
// after a delete, which must not be served.
func (s *Store) endUnsent(w lru.Write, c change) {
	switch {
	case s.local == nil:
	case c.kind == kindDelete:
		s.local.EndRevoke(w)
	default:
		s.local.EndKeep(w)
	}
}

// ending says how a change sent to Redis ends its local write.
type ending int

const (
	endUsual ending = iota // endLocal
	endDone                // ended already, in the order Redis executed the writes
	endDrop                // dropped: no invalidation would reach a copy (per-key tracking)
)

// send makes c in Redis; found is false for a Touch of a missing key. A
// Set that went on the tracking connection and overlapped another write of
// its id updates the local copy in the order Redis executed them (see
// redis.Tier.SetOrdered and lru.Cache.EndSetIfOverlapped), so that
// concurrent writes of one id need not drop it: it ends endDone.
//
// In per-key mode, a copy is kept only if the tracking connection will
// hear of the next change of its id, which takes a read of the key after
// the write (see redis.Written.Keep). That read is asked for when this
// instance holds a copy of the session: an update of a session in use
// keeps it fresh, while a new session, which may never be read here, is
// cached by its first read instead, and its write costs Redis no tracking.
func (s *Store) send(ctx context.Context, c *change, w *lru.Write) (found bool, e ending, err error) {
	switch c.kind {
	case kindSet:
		if s.local == nil {
			return true, endUsual, s.remote.Set(ctx, c.id, c.value, c.ttl)
		}
		keep := true
		if s.remote.PerKey() {
			_, keep = s.local.SeenFor(w)
		}
		var applied func() bool
		if keep {
			c.own()
			c.kept = true
			value, ttl := c.value, c.ttl
			w := *w
			applied = func() bool { return s.local.EndSetIfOverlapped(w, value, s.opts.Local.TTL, ttl) }
		}
		o, err := s.remote.SetOrdered(ctx, c.id, c.value, c.ttl, keep, applied)
		return true, keeping(o), err
	case kindDelete:
		return true, endUsual, s.remote.Delete(ctx, c.id)
	}
	var held []byte
	if s.local != nil && s.remote.PerKey() {
		held, _ = s.local.SeenFor(w)
	}
	o, err := s.remote.TouchKept(ctx, c.id, c.ttl, held)
	if held == nil {
		o.Keep = true // nothing to keep: EndTouch finds no entry
	}
	return o.Found, keeping(o), err
}

func keeping(o redis.Written) ending {
	switch {
	case o.Ordered:
		return endDone
	case !o.Keep:
		return endDrop
	}
	return endUsual
}

// beginLocal, endLocal and dropWrite order a change of the local copy
// against reads in flight (see lru.Cache.Begin); with no local tier they do
// nothing.
func (s *Store) beginLocal(id string) lru.Write {
	if s.local == nil {
		return lru.Write{}
	}
	return s.local.Begin(id)
}

// endLocal ends w after Redis took c.
func (s *Store) endLocal(w lru.Write, c change, found bool) {
	switch {
	case s.local == nil:
	case c.kind == kindSet:
		s.local.EndSet(w, c.value, s.opts.Local.TTL, c.ttl)
	case c.kind == kindTouch && found:
		s.local.EndTouch(w, c.ttl)
	default:
		s.local.EndDelete(w)
	}
}

func (s *Store) dropWrite(w lru.Write) {
	if s.local != nil {
		s.local.EndDelete(w)
	}
}

// keepLocal ends w leaving the local copy, and what is noted of the id,
// as they are.
func (s *Store) keepLocal(w lru.Write) {
	if s.local != nil {
		s.local.EndKeep(w)
	}
}

// dropLocal drops the local copy of id outside a change (replay outcomes).
func (s *Store) dropLocal(id string) { s.dropWrite(s.beginLocal(id)) }

// revoke takes the local copies of ids out of service, as an invalidation
// does: a read of Redis begun before cannot put them back, and they stay
// bases of replay.
func (s *Store) revoke(ids ...string) {
	for _, id := range ids {
		revoke(s.local, &s.loads, id)
	}
}

// abandoned is told by the Tier of a write whose caller gave up after it
// was sent (see redis.Config.OnAbandoned), on the goroutine of its
// connection: it must not block. Its caller was told that it failed, and
// the other instances that the session changed (see write), perhaps
// before it did. A write that has landed since is announced again, and
// the copy read here since it failed is taken out of service. One that
// may still land is recorded as a dropped write that may (see
// outage.unfence): the session's Sets and Deletes wait for the next
// Fence, made at once, after which the session is announced (see
// settle); without an outage tier nothing fences it, and the others are
// owed a flush, sent as soon as Redis answers.
func (s *Store) abandoned(a redis.Abandoned) {
	if a.Landed || s.out == nil {
		s.revoke(a.ID)
		if s.listener == nil {
			return
		}
		if a.Landed {
			s.listener.AnnounceLater(a.ID)
		} else {
			s.listener.Doubt()
		}
		return
	}
	// A replayed write accepts the value a SET in doubt leaves (see
	// outage.add), but not the absence a DEL leaves: another instance's
	// later Delete leaves it too, and must not be undone.
	var landing []string
	if a.Kind == redis.WriteSet {
		landing = []string{digest(a.Value)}
	}
	s.out.doubt(a.ID, landing)
	s.wakeRecovery()
}

// pending accepts c into the outage tier, and ends w accordingly. cause is
// the error of the Redis call, or nil when c queued behind outage state.
func (s *Store) pending(ctx context.Context, c change, w lru.Write, cause error) error {
	switch c.kind {
	case kindSet:
		return s.setPending(ctx, c, w, sent(cause))
	case kindDelete:
		if !s.out.tombstone(c.id) {
			s.endFailed(w, c, cause) // not served again, but still a base
			return s.tombstonesFull(ctx)
		}
		s.dropWrite(w)
		s.wakeRecovery()
		return nil
	}
	return s.touchPending(ctx, c, w, cause)
}

// tombstonesFull alerts and returns the error of a delete that no
// tombstone is left to record.
func (s *Store) tombstonesFull(ctx context.Context) error {
	s.alerts.count(ctx, telemetry.Alert{Kind: telemetry.AlertTombstonesFull, Severity: telemetry.SeverityError,
		Message: "a delete could not be recorded during a Redis outage: tombstones are full", Count: 1})
	return fmt.Errorf("%w: delete: the outage tier cannot record more deletes", ErrUnavailable)
}

// sent reports whether a change that failed with cause (nil: queued
// behind outage state) was sent to Redis, where it may have landed: an
// open breaker runs nothing.
func sent(cause error) bool { return cause != nil && !errors.Is(cause, breaker.ErrOpen) }

// setPending accepts a write into the outage tier. The base it replaces,
// for an id without a pending write, is what this instance last saw in
// Redis or wrote there (see lastSeen); sent says c was sent to Redis and
// may have landed.
func (s *Store) setPending(ctx context.Context, c change, w lru.Write, sent bool) error {
	base := func() []string { return s.lastSeen(c.id) } // hashed only for an id not pending yet
	stored, lost := s.out.write(c.id, c.value, s.now().Add(c.ttl), base, sent)
	return s.accepted(ctx, c, w, "set", sent, stored, lost)
}

// accepted ends the local write w of c, which the outage tier stored, or
// not, evicting lost. The local copy takes the value only if the outage
// tier kept it; a write it cannot keep that was not sent changes nothing.
// op names the call in the error.
func (s *Store) accepted(ctx context.Context, c change, w lru.Write, op string, sent, stored bool, lost []lostWrite) error {
	earlier := s.evicted(ctx, c.id, lost)
	s.watchFallback(ctx)
	s.wakeRecovery()
	if !stored {
		switch {
		case s.local == nil:
		case sent: // it may have landed: Redis holds the copy's value or this one
			s.local.EndUnsure(w, sum(c.value), c.ttl)
		case earlier: // the copy is the lost earlier write's
			s.local.EndDelete(w)
		default: // it changed nothing: the copy is still the base
			s.local.EndKeep(w)
		}
		return fmt.Errorf("%w: %s: the session does not fit in the outage tier", ErrUnavailable, op)
	}
	if s.local != nil {
		s.local.EndSet(w, c.value, s.opts.Local.TTL, c.ttl)
	}
	return nil
}

// evicted counts and alerts the pending writes evicted to make room for a
// write of id, and drops the local copies they left: their values will
// not reach Redis, and nothing would tell those copies. It reports whether
// the id's own earlier pending write was evicted, its copy left to the
// caller.
func (s *Store) evicted(ctx context.Context, id string, lost []lostWrite) (earlier bool) {
	s.lose(ctx, lost, true)
	for _, l := range lost {
		if l.id == id {
			earlier = true
		} else {
			s.dropLocal(l.id)
		}
	}
	return earlier
}

// lastSeen returns the digests of the values of id this instance last saw
// in Redis or wrote there: its local copy (fresh, stale or out of service),
// and the digests noted of a session it wrote without keeping a copy, or
// of writes that overlapped or whose outcome is unknown (see
// lru.Cache.EndNoted and EndUnsure; "" for an absent key); [""] if it has
// neither.
func (s *Store) lastSeen(id string) []string {
	var bases []string
	if s.local != nil {
		if v, ok := s.local.Seen(id); ok {
			bases = append(bases, digest(v))
		}
		for _, d := range s.local.Noted(id) {
			bases = withBase(bases, hexOf(d))
		}
	}
	if len(bases) == 0 {
		return []string{""}
	}
	return bases
}

// touchPending extends id during an outage: its pending write, or the
// value this instance last saw in Redis, which becomes a pending write
// replayed only onto that same value (see outage.touch): a Touch never
// changes a value, nor brings back a session deleted meanwhile.
func (s *Store) touchPending(ctx context.Context, c change, w lru.Write, cause error) error {
	now := s.now()
	var held func() ([]byte, bool) // nil: no local tier
	if s.local != nil {
		held = func() ([]byte, bool) {
			v, _, ok := s.local.Get(c.id)
			return v, ok
		}
	}
	t := s.out.touch(c.id, now, now.Add(c.ttl), held, sent(cause))
	switch {
	case t.found:
		if s.local != nil {
			s.local.EndTouch(w, c.ttl)
		}
		s.wakeRecovery()
		return nil
	case t.expired: // gone, as in Redis: a touch does not revive it
		s.dropWrite(w)
		return ErrNotFound
	case t.adopted:
		return s.accepted(ctx, change{kind: kindSet, id: c.id, value: t.value, ttl: c.ttl}, w, "touch", sent(cause), t.stored, t.lost)
	}
	s.keepLocal(w) // a touch of a session not held, or deleted, changes nothing here
	if s.opts.StrictReads && cause != nil {
		return s.failure(ctx, "touch", cause)
	}
	return ErrNotFound
}

// announce tells the other instances, in publish mode, that ids changed,
// in one round trip. An announcement that cannot be sent makes the
// listener owe them a flush, sent once Redis takes it; until then they may
// serve their copies.
func (s *Store) announce(ctx context.Context, ids ...string) {
	if s.listener == nil {
		return
	}
	if err := s.listener.Announce(ctx, ids...); err != nil {
		s.alerts.count(ctx, telemetry.Alert{Kind: telemetry.AlertInvalidationLost, Severity: telemetry.SeverityWarn,
			Message: "a change could not be announced to the other instances: they are told to revalidate everything once Redis answers",
			Count:   1})
	}
}
