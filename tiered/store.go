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
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/telemetry"
	"golang.org/x/sync/singleflight"
)

// Store is a session store. It is safe for concurrent use. Bytes passed to
// Set and returned by Get belong to the caller: the Store keeps and hands
// out copies. GetShared hands out the Store's own bytes, read-only.
type Store struct {
	opts     Options
	now      func() time.Time // Options.Clock or time.Now
	local    *lru.Cache       // nil when Options.Local.MaxEntries is -1
	out      *outage          // nil when Options.Fallback.MaxEntries is -1
	remote   *redis.Tier
	brk      *breaker.Breaker
	tel      *telemetry.Telemetry
	alerts   *alerter
	inv      *coherence         // what the invalidation stream does to the local tier
	listener *redis.Listener    // nil with InvalidationOff
	loads    singleflight.Group // one Redis read per id at a time
	closed   atomic.Bool        // set by Close: the hot path's check

	// life is the Store's lifetime: cancelled by Close once every
	// operation in flight has ended; the background work runs on it.
	life    context.Context
	endLife context.CancelFunc
	gate    sync.RWMutex   // guards closing; held for reading while an operation registers in ops
	closing bool           //
	ops     sync.WaitGroup // operations in flight, which Close waits for

	kick chan struct{}  // capacity 1: wakes the recovery loop
	bg   sync.WaitGroup // the recovery loop and the refiller

	pendingLost     atomic.Uint64
	replayApplied   atomic.Uint64
	replayConflicts atomic.Uint64
	rangeSkipped    atomic.Uint64
	fallbackHigh    atomic.Bool // AlertFallbackHigh fired and not re-armed
	replayRefused   atomic.Bool // AlertReplayRefused fired, and no replay has drained the outage tier since
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
	Invalidation     string // "tracking", "per-key", "publish", "connecting" (local tier bypassed) or "off"
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
	s := &Store{opts: opts, now: opts.Clock, kick: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	if !opts.Local.Disabled() {
		if s.local, err = lru.New(opts.Local, opts.Clock); err != nil {
			return nil, fmt.Errorf("%w: Local: %w", ErrInvalidOptions, err)
		}
	}
	traceCall := func(ctx context.Context, command string) (context.Context, func(error)) {
		return s.tel.RedisCall(ctx, command)
	}
	if opts.Breaker.Clock == nil {
		opts.Breaker.Clock = s.now
	}
	if s.brk, err = breaker.New(opts.Breaker, redis.IsUnreachable); err != nil {
		return nil, fmt.Errorf("%w: Breaker: %w", ErrInvalidOptions, err)
	}
	if !opts.Fallback.Disabled() {
		s.out = newOutage(opts.Fallback, opts.MaxTombstones, max(4*opts.OpTimeout, time.Second))
	}
	// Alerts fire only from operations and background work, which start
	// once New has returned, so the hook may read s.tel.
	s.alerts = newAlerter(func(ctx context.Context, a telemetry.Alert) { s.tel.Alert(ctx, a) }, s.now)
	s.inv = newCoherence(s.local, &s.loads, s.alerts.raise, s.now, opts.Invalidation == InvalidationOff)
	if opts.Invalidation != InvalidationOff {
		s.listener = redis.NewListener(client, redis.ListenerConfig{
			Prefix: opts.Prefix, Mode: listenMode(opts.Invalidation), Timeout: opts.OpTimeout}, s.inv)
	}
	// The tier sends its writes on the listener's connection in tracking
	// mode, so that they do not come back as invalidations.
	s.remote, err = redis.New(client, redis.Config{Prefix: opts.Prefix, Timeout: opts.OpTimeout,
		MaxValueBytes: opts.MaxValueBytes, Trace: traceCall, Listener: s.listener, OnAbandoned: s.abandoned})
	if err != nil {
		if s.listener != nil {
			s.listener.Close()
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	// Last: the metrics callback may call Stats from now on.
	if s.tel, err = telemetry.New(opts.Telemetry, s.observe); err != nil {
		s.endLife()
		if s.listener != nil {
			s.listener.Close()
		}
		s.remote.Close()
		return nil, fmt.Errorf("%w: Telemetry: %w", ErrInvalidOptions, err)
	}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.recover() }()
	go func() { defer s.bg.Done(); s.refill() }()
	if s.listener != nil {
		s.listener.Start()
	}
	return s, nil
}

func listenMode(m Invalidation) redis.ListenMode {
	switch m {
	case InvalidationTracking:
		return redis.ListenTracking
	case InvalidationPublish:
		return redis.ListenPublish
	case InvalidationPerKey:
		return redis.ListenPerKey
	}
	return redis.ListenAuto
}

// enter registers an operation that Close must wait for; false: the Store
// is closed.
func (s *Store) enter() bool {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closing {
		return false
	}
	s.ops.Add(1)
	return true
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
	v, err := s.GetShared(ctx, id)
	return bytes.Clone(v), err
}

// GetShared is Get without the copy: the returned slice is the Store's
// own and the caller must not modify it, not even its spare capacity
// beyond its length (the Store never does: a stored value is replaced
// whole, never changed). It is for callers that only decode what they
// read, as session managers do: a local hit then allocates nothing.
func (s *Store) GetShared(ctx context.Context, id string) ([]byte, error) {
	if start, traced := s.tel.HitStart(ctx); !traced { // the hot path: a local hit outside a traced request
		if v, ok := s.localHit(id); ok {
			if !start.IsZero() { // metered: spares the call otherwise
				s.tel.Record(ctx, telemetry.OpGet, telemetry.TierLocal, telemetry.ResultHit, start)
			}
			return v, nil
		}
	}
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.ops.Done()
	ctx, span := s.tel.Start(ctx, telemetry.OpGet)
	tier := telemetry.TierRedis
	v, err := s.get(ctx, id, &tier)
	s.end(span, tier, err)
	return v, err
}

// localHit returns a fresh local value of id, when nothing else can answer
// for it: the store is open and the id has no outage state.
func (s *Store) localHit(id string) ([]byte, bool) {
	if s.local == nil || s.closed.Load() || (s.out != nil && s.out.active()) || !s.inv.fresh() {
		return nil, false
	}
	if v, fresh, ok := s.local.Get(id); ok && fresh {
		return v, true
	}
	return nil, false
}

// get answers GetShared when localHit could not.
func (s *Store) get(ctx context.Context, id string, tier *telemetry.Tier) ([]byte, error) {
	if s.out != nil && s.out.active() {
		if err := checkID(id); err != nil {
			return nil, err
		}
		if v, tombstoned, ok := s.out.lookup(id, s.now()); ok {
			*tier = telemetry.TierFallback
			if tombstoned {
				return nil, ErrNotFound
			}
			return v, nil
		}
	}
	// Only valid ids enter the local tier, so a hit needs no id check.
	var stale []byte
	if s.local != nil {
		v, fresh, ok := s.local.Get(id)
		if ok && fresh && s.inv.fresh() {
			*tier = telemetry.TierLocal
			return v, nil
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
		return v.([]byte), nil
	case !errors.Is(err, ErrUnavailable):
		return nil, err
	case stale != nil:
		*tier = telemetry.TierLocal
		return stale, nil // stale if error
	case s.opts.StrictReads:
		return nil, err
	}
	return nil, ErrNotFound
}

// refill reads again, off the request path, the ids whose local copy an
// echo of this store's own write dropped. It stops with the Store.
func (s *Store) refill() {
	for {
		select {
		case <-s.life.Done():
			return
		case id := <-s.inv.refill:
			if !s.brk.Rejecting() {
				ctx, end := s.tel.Task(s.life, "refill")
				_, err, _ := s.loads.Do(id, func() (any, error) { return s.load(ctx, id) })
				if errors.Is(err, ErrNotFound) {
					err = nil
				}
				end(err)
			}
		}
	}
}

// load reads id from Redis and fills the local tier.
func (s *Store) load(ctx context.Context, id string) ([]byte, error) {
	var token lru.FillToken
	if s.local != nil {
		token = s.local.FillToken(id)
		// After the token: state recorded from now on began a local write,
		// which voids it. With state, Redis holds what its replay has not
		// replaced yet: not to be kept (the refill reads such ids).
		if s.out != nil && s.out.holds(id) {
			token = lru.FillToken{}
		}
	}
	var (
		v     []byte
		ttl   time.Duration
		found bool
	)
	var coherent bool
	err := s.brk.Do(ctx, func() (err error) {
		if s.local == nil { // nothing to keep: the client's pool, not the tracking connection
			v, ttl, found, err = s.remote.Get(ctx, id)
			return err
		}
		v, ttl, found, coherent, err = s.remote.GetTracked(ctx, id)
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
	if s.local != nil && ttl > 0 && coherent {
		s.local.Fill(token, id, v, s.opts.Local.TTL, ttl)
	}
	return v, nil
}

// Range calls fn with every session in Redis under the prefix, walking
// every master node with SCAN; it stops at fn's first error and returns
// it. fn owns the data it is given. Keys under the prefix that are not
// strings, or whose value is longer than MaxValueBytes, are skipped and
// counted in Stats.RangeSkipped.
func (s *Store) Range(ctx context.Context, fn func(id string, data []byte) error) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.ops.Done()
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
	var st Stats
	if s.out != nil { // first: replay counts what it applied before the tier shows it gone
		st.PendingWrites, st.FallbackBytes, st.PendingDeletes = s.out.counts()
		st.FallbackEntries = st.PendingWrites
	}
	st.Invalidation = s.inv.state.Load().(string)
	st.Invalidations = s.inv.count.Load()
	st.Breaker = s.brk.State().String()
	st.PendingLost = s.pendingLost.Load()
	st.ReplayApplied = s.replayApplied.Load()
	st.ReplayConflicts = s.replayConflicts.Load()
	st.RangeSkipped = s.rangeSkipped.Load()
	if s.local != nil {
		ls := s.local.Stats()
		st.LocalEntries, st.LocalBytes = ls.Entries, ls.Bytes
		st.LocalEvictions, st.LocalExpirations = ls.Evictions, ls.Expirations
	}
	return st
}

// Close stops the Store: every later call returns ErrClosed. It waits
// for the operations in flight (each bounded by OpTimeout), stops the
// background work, then tries for at most Options.CloseTimeout to replay
// what is still pending; what it could not replay is reported by an
// AlertPendingLost and by an error wrapping ErrPendingLost. It then waits
// for the writes still in flight whose callers gave up (each bounded by
// OpTimeout) and, if one may still land, fences it, within CloseTimeout
// again, and announces its session. It waits for Redis calls still
// running past their deadline on a client that ignores context deadlines
// (see redis.Tier), and does not close the client. Closing twice returns
// ErrClosed.
func (s *Store) Close() error {
	s.gate.Lock()
	if s.closing {
		s.gate.Unlock()
		return ErrClosed
	}
	s.closing = true
	s.closed.Store(true)
	s.gate.Unlock()
	s.ops.Wait() // no write can be accepted after the final replay
	s.endLife()
	s.bg.Wait()
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
	s.remote.CloseWrites() // the lanes end their batches: a write abandoned in one is reported
	if s.out != nil {
		// Such a write may still land: fence it, and announce its session.
		// (One on the tracked connection is reported in doubt only once
		// that connection is lost: the Fence, which makes no call if no
		// write was abandoned, kills it unless it answers a barrier.)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CloseTimeout)
		s.fence(ctx)
		cancel()
	}
	if s.listener != nil { // after the final replay, which announces what it applies
		s.listener.Close()
	}
	s.alerts.flush(context.Background())
	s.remote.Close() // waits for the calls that outlived their deadline, the final Fence's included
	return errors.Join(err, s.tel.Close())
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
