// Package tiered provides Store, a session store that reads through a
// bounded in-process cache to Redis behind a circuit breaker.
//
// Redis is the source of truth: a session is the caller's bytes, unchanged,
// at Options.Prefix+id with a Redis TTL, so data written by scs's Redis
// stores or any other Redis client is read as it is, and the other way
// round. Every Redis call is bounded by Options.OpTimeout whatever the
// client's own timeouts, and goes through the breaker: once Redis has
// failed Options.Breaker.Failures times in a row, calls stop touching the
// network until a background probe finds Redis back.
//
// While Redis is unreachable the Store degrades instead of failing: writes
// are accepted into a bounded outage tier, deletes are remembered as
// tombstones, reads are answered from the local tier (past Local.TTL if
// need be) and the outage tier. Once Redis is back, the Store replays
// deletes, then writes, each write only if Redis still holds what this
// instance last saw; otherwise Redis's value wins. Every write that cannot
// be kept or replayed is counted and alerted.
package tiered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/telemetry"
	"golang.org/x/sync/singleflight"
)

// Store is a session store. It is safe for concurrent use. Bytes passed to
// Set and returned by Get belong to the caller: the Store keeps and hands
// out copies.
type Store struct {
	opts   Options
	local  *lru.Cache // nil when Options.Local.MaxEntries is -1
	out    *outage    // nil when Options.Fallback.MaxEntries is -1
	remote *redis.Tier
	brk    *breaker.Breaker
	tel    *telemetry.Telemetry
	alerts *alerter
	inv    *invalidator
	loads  singleflight.Group // one Redis read per id at a time
	closed atomic.Bool

	kick chan struct{} // capacity 1: wakes the recovery loop
	stop chan struct{} // closed by Close: stops the recovery loop
	done chan struct{} // closed by the recovery loop when it returns

	pendingLost     atomic.Uint64
	replayApplied   atomic.Uint64
	replayConflicts atomic.Uint64
	rangeSkipped    atomic.Uint64
	fallbackHigh    atomic.Bool // AlertFallbackHigh fired and not re-armed
}

// Stats is a snapshot of a Store.
type Stats struct {
	LocalEntries    int
	LocalBytes      int64 // keys + values + lru.EntryOverhead per entry
	FallbackEntries int
	FallbackBytes   int64
	PendingWrites   int    // accepted during an outage, not yet in Redis
	PendingDeletes  int    // tombstones not yet applied to Redis
	Breaker         string // "closed", "open" or "half-open"

	LocalEvictions   uint64 // local entries dropped to respect a bound
	LocalExpirations uint64 // local entries dropped because they expired
	PendingLost      uint64 // accepted writes dropped before reaching Redis
	ReplayApplied    uint64 // pending writes and deletes applied to Redis
	ReplayConflicts  uint64 // pending writes dropped because Redis changed meanwhile
	Invalidation     string // "tracking", "publish", "connecting" (local tier bypassed) or "off"
	Invalidations    uint64 // invalidations received from other instances or Redis
	// RangeSkipped counts the keys under the prefix that Range passed
	// over: keys of another type than string (WRONGTYPE), and values
	// longer than MaxValueBytes.
	RangeSkipped uint64
}

// New returns a Store over client, which the caller keeps and closes after
// the Store. New makes no network call. Zero fields of opts take their
// defaults; invalid options and a nil client give an error wrapping
// ErrInvalidOptions.
func New(client goredis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOptions)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts}
	if !opts.Local.Disabled() {
		if s.local, err = lru.New(opts.Local, opts.Clock); err != nil {
			return nil, fmt.Errorf("%w: Local: %w", ErrInvalidOptions, err)
		}
	}
	traceCall := func(ctx context.Context, command string) (context.Context, func(error)) {
		return s.tel.RedisCall(ctx, command)
	}
	s.remote, err = redis.New(client, redis.Config{Prefix: opts.Prefix, Timeout: opts.OpTimeout, MaxValueBytes: opts.MaxValueBytes, Trace: traceCall})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if s.brk, err = breaker.New(opts.Breaker, redis.IsUnreachable); err != nil {
		return nil, fmt.Errorf("%w: Breaker: %w", ErrInvalidOptions, err)
	}
	if !opts.Fallback.Disabled() {
		s.out = newOutage(opts.Fallback, opts.MaxTombstones)
	}
	if s.tel, err = telemetry.New(opts.Telemetry, s.observe); err != nil {
		return nil, fmt.Errorf("%w: Telemetry: %w", ErrInvalidOptions, err)
	}
	s.alerts = newAlerter(s.tel.Alert)
	s.kick, s.stop, s.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.recover()
	s.startInvalidation(client)
	return s, nil
}

// Get returns a copy of the session's data, or ErrNotFound. A fresh local
// copy answers without a network call; otherwise the value and its
// remaining TTL are read from Redis in one round trip, and concurrent
// misses of one id share that read. A session in Redis longer than
// MaxValueBytes (written by another client) is ErrTooLarge, read no
// further than the limit; neither it nor a key of another type counts as
// a Redis failure.
//
// While Redis is unreachable, Get answers from the outage tier, then from
// the local tier even past Local.TTL (up to the session's own expiry);
// otherwise it returns ErrNotFound, or ErrUnavailable with StrictReads. A
// session deleted during the outage is ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) ([]byte, error) {
	if !s.tel.Traced(ctx) { // the hot path: a local hit outside a traced request
		start := s.tel.Now(ctx)
		if v, ok := s.localHit(id); ok {
			s.tel.Record(ctx, telemetry.OpGet, telemetry.TierLocal, telemetry.ResultHit, start)
			return v, nil
		}
	}
	ctx, span := s.tel.Start(ctx, telemetry.OpGet)
	tier := telemetry.TierRedis
	v, err := s.get(ctx, id, &tier)
	s.end(span, tier, err)
	return v, err
}

// localHit returns a copy of a fresh local value of id, when nothing else
// can answer for it: the store is open and the id has no outage state.
func (s *Store) localHit(id string) ([]byte, bool) {
	if s.local == nil || s.closed.Load() || (s.out != nil && s.out.active()) || !s.inv.fresh() {
		return nil, false
	}
	if v, fresh, ok := s.local.Get(id); ok && fresh {
		return bytes.Clone(v), true
	}
	return nil, false
}

func (s *Store) get(ctx context.Context, id string, tier *telemetry.Tier) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.out != nil && s.out.active() {
		if err := checkID(id); err != nil {
			return nil, err
		}
		if v, tombstoned, ok := s.out.lookup(id, time.Now()); ok {
			*tier = telemetry.TierFallback
			if tombstoned {
				return nil, ErrNotFound
			}
			return bytes.Clone(v), nil
		}
	}
	// Only valid ids enter the local tier, so a hit needs no id check.
	var stale []byte
	if s.local != nil {
		v, fresh, ok := s.local.Get(id)
		if ok && fresh && s.inv.fresh() {
			*tier = telemetry.TierLocal
			return bytes.Clone(v), nil
		}
		stale = v
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	var (
		v   any
		err error
	)
	if s.brk.Rejecting() {
		err = errGetOpen
	} else {
		// The read is shared by every caller of this id, so no caller's
		// cancellation may end it; OpTimeout bounds it.
		v, err, _ = s.loads.Do(id, func() (any, error) {
			return s.load(context.WithoutCancel(ctx), id)
		})
	}
	switch {
	case err == nil:
		return bytes.Clone(v.([]byte)), nil
	case !errors.Is(err, ErrUnavailable):
		return nil, err
	case stale != nil:
		*tier = telemetry.TierLocal
		return bytes.Clone(stale), nil // stale if error
	case s.opts.StrictReads:
		return nil, err
	}
	return nil, ErrNotFound
}

// load reads id from Redis and fills the local tier.
func (s *Store) load(ctx context.Context, id string) ([]byte, error) {
	var token lru.FillToken
	if s.local != nil {
		token = s.local.FillToken(id)
	}
	var (
		v     []byte
		ttl   time.Duration
		found bool
	)
	err := s.brk.Do(ctx, func() (err error) {
		v, ttl, found, err = s.remote.Get(ctx, id)
		return err
	})
	if err != nil {
		if s.local != nil && !s.unreachable(ctx, err) {
			s.local.FillAbsent(token, id) // Redis holds something else now
		}
		if errors.Is(err, redis.ErrTooLarge) {
			return nil, fmt.Errorf("%w: get: %w", ErrTooLarge, err)
		}
		return nil, s.failure(ctx, "get", err)
	}
	if !found {
		if s.local != nil {
			s.local.FillAbsent(token, id) // no stale copy of a deleted session
		}
		return nil, ErrNotFound
	}
	if ttl == redis.NoTTL { // written without a TTL by another client
		ttl = s.opts.Local.TTL
	}
	if s.local != nil && ttl > 0 {
		s.local.Fill(token, id, v, s.opts.Local.TTL, ttl)
	}
	return v, nil
}

// Set stores a copy of data under id for ttl: in Redis first, then, once
// Redis accepted it, in the local tier. While Redis is unreachable, the
// write is accepted into the outage tier and the local tier, returns nil,
// and is replayed once Redis is back.
func (s *Store) Set(ctx context.Context, id string, data []byte, ttl time.Duration) error {
	ctx, span := s.tel.Start(ctx, telemetry.OpSet)
	tier := telemetry.TierRedis
	err := s.set(ctx, id, data, ttl, &tier)
	s.end(span, tier, err)
	return err
}

func (s *Store) set(ctx context.Context, id string, data []byte, ttl time.Duration, tier *telemetry.Tier) error {
	if err := s.check(id); err != nil {
		return err
	}
	if ttl <= 0 {
		return errTTL
	}
	if s.opts.MaxValueBytes >= 0 && len(data) > s.opts.MaxValueBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), s.opts.MaxValueBytes)
	}
	v := bytes.Clone(data)
	if v == nil {
		v = []byte{}
	}
	if s.out != nil && s.out.has(id) { // queues behind the id's pending state
		*tier = telemetry.TierFallback
		s.setLocal(id, v, ttl)
		return s.setPending(ctx, id, v, ttl, "")
	}
	var w lru.Write
	if s.local != nil {
		w = s.local.Begin(id)
	}
	s.expectEcho(id)
	err := s.brk.Do(ctx, func() error { return s.remote.Set(ctx, id, v, ttl) })
	s.loads.Forget(id)
	switch {
	case err == nil:
		if s.local != nil {
			s.local.EndSet(w, v, s.opts.Local.TTL, ttl)
		}
		s.announce(ctx, id)
		return nil
	case s.out != nil && s.unreachable(ctx, err):
		*tier = telemetry.TierFallback
		err := s.setPending(ctx, id, v, ttl, s.lastSeen(id))
		if s.local != nil {
			if err == nil {
				s.local.EndSet(w, v, s.opts.Local.TTL, ttl)
			} else {
				s.local.EndDelete(w) // not accepted: serve nothing of it
			}
		}
		return err
	}
	if s.local != nil {
		s.local.EndDelete(w) // Redis may or may not hold v
	}
	return s.failure(ctx, "set", err)
}

// setLocal, touchLocal and dropLocal change the local copy of id outside
// a Redis call (outage writes, invalidations, replay outcomes), ordered
// with reads and writes in flight like any local write.
func (s *Store) setLocal(id string, v []byte, ttl time.Duration) {
	if s.local != nil {
		s.local.EndSet(s.local.Begin(id), v, s.opts.Local.TTL, ttl)
	}
}

func (s *Store) touchLocal(id string, ttl time.Duration) {
	if s.local != nil {
		s.local.EndTouch(s.local.Begin(id), s.opts.Local.TTL, ttl)
	}
}

func (s *Store) dropLocal(id string) {
	if s.local != nil {
		s.local.EndDelete(s.local.Begin(id))
	}
}

// lastSeen returns the digest of the value of id this instance last saw in
// Redis (its local copy, fresh or not), or "" if it holds none: a write
// accepted during an outage replaces that value only.
func (s *Store) lastSeen(id string) string {
	if s.local == nil {
		return ""
	}
	if v, _, ok := s.local.Get(id); ok {
		return digest(v)
	}
	return ""
}

// setPending accepts a write into the outage tier; the caller updates the
// local tier. base is used if the id has no pending write yet.
func (s *Store) setPending(ctx context.Context, id string, v []byte, ttl time.Duration, base string) error {
	stored, evicted := s.out.write(id, v, time.Now().Add(ttl), func() string { return base })
	s.lose(ctx, evicted, true)
	if !stored {
		s.lose(ctx, []lostWrite{{bytes: int64(len(v))}}, false)
	}
	s.watchFallback(ctx)
	s.wakeRecovery()
	if !stored {
		return fmt.Errorf("%w: set: the session does not fit in the outage tier", ErrUnavailable)
	}
	return nil
}

// Delete removes the session from Redis and from the local tier. Deleting
// a missing session is not an error. While Redis is unreachable, the
// delete is remembered (a tombstone) and replayed before any write once
// Redis is back: the session is never readable again, here or, after the
// replay, anywhere. If no more tombstones can be kept, Delete returns
// ErrUnavailable. The local copy is dropped in every case.
func (s *Store) Delete(ctx context.Context, id string) error {
	ctx, span := s.tel.Start(ctx, telemetry.OpDelete)
	tier := telemetry.TierRedis
	err := s.delete(ctx, id, &tier)
	s.end(span, tier, err)
	return err
}

func (s *Store) delete(ctx context.Context, id string, tier *telemetry.Tier) error {
	if err := s.check(id); err != nil {
		return err
	}
	if s.out != nil && s.out.has(id) {
		*tier = telemetry.TierFallback
		return s.deletePending(ctx, id)
	}
	var w lru.Write
	if s.local != nil {
		w = s.local.Begin(id)
	}
	s.expectEcho(id)
	err := s.brk.Do(ctx, func() error { return s.remote.Delete(ctx, id) })
	s.loads.Forget(id)
	if s.local != nil {
		s.local.EndDelete(w)
	}
	switch {
	case err == nil:
		s.announce(ctx, id)
		return nil
	case s.out != nil && s.unreachable(ctx, err):
		*tier = telemetry.TierFallback
		return s.deletePending(ctx, id)
	}
	return s.failure(ctx, "delete", err)
}

func (s *Store) deletePending(ctx context.Context, id string) error {
	s.dropLocal(id)
	if !s.out.tombstone(id) {
		s.alerts.count(ctx, telemetry.Alert{Kind: telemetry.AlertTombstonesFull, Severity: telemetry.SeverityError,
			Message: "a delete could not be recorded during a Redis outage: tombstones are full", Count: 1})
		return fmt.Errorf("%w: delete: the outage tier cannot record more deletes", ErrUnavailable)
	}
	s.wakeRecovery()
	return nil
}

// Touch sets the session's remaining lifetime to ttl, or returns
// ErrNotFound for a missing session. While Redis is unreachable, it extends
// the session this instance holds and replays that like a write; a session
// it does not hold is ErrNotFound (ErrUnavailable with StrictReads).
func (s *Store) Touch(ctx context.Context, id string, ttl time.Duration) error {
	ctx, span := s.tel.Start(ctx, telemetry.OpTouch)
	tier := telemetry.TierRedis
	err := s.touch(ctx, id, ttl, &tier)
	s.end(span, tier, err)
	return err
}

func (s *Store) touch(ctx context.Context, id string, ttl time.Duration, tier *telemetry.Tier) error {
	if err := s.check(id); err != nil {
		return err
	}
	if ttl <= 0 {
		return errTTL
	}
	if s.out != nil && s.out.has(id) {
		*tier = telemetry.TierFallback
		return s.touchPending(ctx, id, ttl, nil)
	}
	var w lru.Write
	if s.local != nil {
		w = s.local.Begin(id)
	}
	var found bool
	s.expectEcho(id)
	err := s.brk.Do(ctx, func() (err error) {
		found, err = s.remote.Touch(ctx, id, ttl)
		return err
	})
	s.loads.Forget(id)
	if s.local != nil {
		if err == nil && found {
			s.local.EndTouch(w, s.opts.Local.TTL, ttl)
		} else if err == nil || s.out == nil || !s.unreachable(ctx, err) {
			s.local.EndDelete(w)
		} else {
			s.local.EndKeep(w) // the entry stays as it was until touchPending
		}
	}
	switch {
	case err == nil && found:
		s.announce(ctx, id)
		return nil
	case err == nil:
		return ErrNotFound
	case s.out != nil && s.unreachable(ctx, err):
		*tier = telemetry.TierFallback
		return s.touchPending(ctx, id, ttl, err)
	}
	return s.failure(ctx, "touch", err)
}

// touchPending extends id during an outage: its pending write, or the
// value this instance last saw in Redis, which becomes a pending write.
func (s *Store) touchPending(ctx context.Context, id string, ttl time.Duration, cause error) error {
	if s.out.touch(id, time.Now().Add(ttl)) {
		s.touchLocal(id, ttl)
		s.wakeRecovery()
		return nil
	}
	if s.local != nil && !s.out.has(id) {
		if v, _, ok := s.local.Get(id); ok {
			s.touchLocal(id, ttl)
			return s.setPending(ctx, id, v, ttl, digest(v))
		}
	}
	if s.opts.StrictReads && cause != nil {
		return s.failure(ctx, "touch", cause)
	}
	return ErrNotFound
}

// Range calls fn with every session in Redis under the prefix, walking
// every master node with SCAN; it stops at fn's first error and returns
// it. fn owns the data it is given. Keys under the prefix that are not
// strings, or whose value is longer than MaxValueBytes, are skipped and
// counted in Stats.RangeSkipped.
func (s *Store) Range(ctx context.Context, fn func(id string, data []byte) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var fnErr error
	err := s.brk.Do(ctx, func() error {
		skipped, err := s.remote.Scan(ctx, func(id string, v []byte) error {
			if fnErr = fn(id, v); fnErr != nil {
				return errStopRange
			}
			return nil
		})
		s.rangeSkipped.Add(uint64(skipped))
		if fnErr != nil {
			return nil // the caller's error says nothing about Redis
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return s.failure(ctx, "range", err)
	}
	return nil
}

// Stats returns a snapshot of the tiers, the breaker and the counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Invalidation:    s.inv.state.Load().(string),
		Invalidations:   s.inv.count.Load(),
		Breaker:         s.brk.State().String(),
		PendingLost:     s.pendingLost.Load(),
		ReplayApplied:   s.replayApplied.Load(),
		ReplayConflicts: s.replayConflicts.Load(),
		RangeSkipped:    s.rangeSkipped.Load(),
	}
	if s.local != nil {
		ls := s.local.Stats()
		st.LocalEntries, st.LocalBytes = ls.Entries, ls.Bytes
		st.LocalEvictions, st.LocalExpirations = ls.Evictions, ls.Expirations
	}
	if s.out != nil {
		st.PendingWrites, st.FallbackBytes, st.PendingDeletes = s.out.counts()
		st.FallbackEntries = st.PendingWrites
	}
	return st
}

// Close stops the Store: every later call returns ErrClosed. It stops the
// background recovery, then tries for at most Options.CloseTimeout to
// replay what is still pending; what it could not replay is reported by
// an AlertPendingLost and by an error wrapping ErrPendingLost. It waits
// for Redis calls still running past their deadline on a client that
// ignores context deadlines (see redis.Tier), and does not close the
// client. Closing twice returns ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(s.stop)
	<-s.done
	<-s.inv.done
	var err error
	if s.out != nil && s.out.active() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CloseTimeout)
		s.replay(ctx, true)
		cancel()
		if writes, bytes, tombs := s.out.counts(); writes+tombs > 0 {
			s.pendingLost.Add(uint64(writes))
			s.alerts.raise(context.Background(), telemetry.Alert{Kind: telemetry.AlertPendingLost, Severity: telemetry.SeverityError,
				Message: "the store closed before Redis took every write and delete accepted during an outage",
				Count:   int64(writes + tombs), Bytes: bytes})
			err = fmt.Errorf("%w: %d writes and %d deletes not replayed", ErrPendingLost, writes, tombs)
		}
	}
	s.alerts.flush(context.Background())
	s.remote.Close()
	return errors.Join(err, s.tel.Close())
}

func (s *Store) check(id string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return checkID(id)
}

// unreachable reports whether err says Redis could not be reached, as
// opposed to an answer or the caller's own cancellation.
func (s *Store) unreachable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && (errors.Is(err, breaker.ErrOpen) || redis.IsUnreachable(err))
}

// failure turns an error of a Redis call into the Store's error.
func (s *Store) failure(ctx context.Context, op string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("tiered: %s: %w", op, err)
	case errors.Is(err, breaker.ErrOpen), redis.IsUnreachable(err):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("tiered: %s: %w", op, err)
}
