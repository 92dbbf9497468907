// Package tiered provides Store, a session store that reads through a
// bounded in-process cache to Redis behind a circuit breaker.
//
// Redis is the source of truth: a session is the caller's bytes, unchanged,
// at Options.Prefix+id with a Redis TTL, so data written by scs's Redis
// stores or any other Redis client is read as it is, and the other way
// round. Every Redis call is bounded by Options.OpTimeout whatever the
// client's own timeouts, and goes through the breaker: once Redis has
// failed Options.Breaker.Failures times in a row, calls fail fast with
// ErrUnavailable without touching the network until a probe succeeds.
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
	"golang.org/x/sync/singleflight"
)

// Store is a session store. It is safe for concurrent use. Bytes passed to
// Set and returned by Get belong to the caller: the Store keeps and hands
// out copies.
type Store struct {
	opts   Options
	local  *lru.Cache // nil when Options.Local.MaxEntries is -1
	remote *redis.Tier
	brk    *breaker.Breaker
	loads  singleflight.Group // one Redis read per id at a time
	closed atomic.Bool
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
	if s.remote, err = redis.New(client, opts.Prefix, opts.OpTimeout); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	if s.brk, err = breaker.New(opts.Breaker, redis.IsUnreachable); err != nil {
		return nil, fmt.Errorf("%w: Breaker: %w", ErrInvalidOptions, err)
	}
	return s, nil
}

// Get returns a copy of the session's data, or ErrNotFound. A fresh local
// copy answers without a network call; otherwise the value and its
// remaining TTL are read from Redis in one round trip, and concurrent
// misses of one id share that read.
func (s *Store) Get(ctx context.Context, id string) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// Only valid ids enter the local tier, so a hit needs no id check.
	if s.local != nil {
		if v, fresh, ok := s.local.Get(id); ok && fresh {
			return bytes.Clone(v), nil
		}
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	// The read is shared by every caller of this id, so no caller's
	// cancellation may end it; OpTimeout bounds it.
	v, err, _ := s.loads.Do(id, func() (any, error) {
		return s.load(context.WithoutCancel(ctx), id)
	})
	if err != nil {
		return nil, err
	}
	return bytes.Clone(v.([]byte)), nil
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
		return nil, s.failure(ctx, "get", err)
	}
	if !found {
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
// Redis accepted it, in the local tier.
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
	v := bytes.Clone(data)
	if v == nil {
		v = []byte{}
	}
	var w lru.Write
	if s.local != nil {
		w = s.local.Begin(id)
	}
	err := s.brk.Do(ctx, func() error { return s.remote.Set(ctx, id, v, ttl) })
	s.loads.Forget(id)
	if s.local != nil {
		if err != nil {
			s.local.EndDelete(w) // Redis may or may not hold v
		} else {
			s.local.EndSet(w, v, s.opts.Local.TTL, ttl)
		}
	}
	if err != nil {
		return s.failure(ctx, "set", err)
	}
	return nil
}

// Delete removes the session from Redis and from the local tier. Deleting
// a missing session is not an error. The local copy is dropped even when
// Redis cannot be reached.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(id); err != nil {
		return err
	}
	var w lru.Write
	if s.local != nil {
		w = s.local.Begin(id)
	}
	err := s.brk.Do(ctx, func() error { return s.remote.Delete(ctx, id) })
	s.loads.Forget(id)
	if s.local != nil {
		s.local.EndDelete(w)
	}
	if err != nil {
		return s.failure(ctx, "delete", err)
	}
	return nil
}

// Touch sets the session's remaining lifetime to ttl, or returns
// ErrNotFound for a missing session.
func (s *Store) Touch(ctx context.Context, id string, ttl time.Duration) error {
	if err := s.check(id); err != nil {
		return err
	}
	if ttl <= 0 {
		return errTTL
	}
	var w lru.Write
	if s.local != nil {
		w = s.local.Begin(id)
	}
	var found bool
	err := s.brk.Do(ctx, func() (err error) {
		found, err = s.remote.Touch(ctx, id, ttl)
		return err
	})
	s.loads.Forget(id)
	if s.local != nil {
		if err == nil && found {
			s.local.EndTouch(w, s.opts.Local.TTL, ttl)
		} else {
			s.local.EndDelete(w)
		}
	}
	switch {
	case err != nil:
		return s.failure(ctx, "touch", err)
	case !found:
		return ErrNotFound
	}
	return nil
}

// Range calls fn with every session in Redis under the prefix, walking
// every master node with SCAN; it stops at fn's first error and returns
// it. fn owns the data it is given.
func (s *Store) Range(ctx context.Context, fn func(id string, data []byte) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var fnErr error
	err := s.brk.Do(ctx, func() error {
		err := s.remote.Scan(ctx, func(id string, v []byte) error {
			if fnErr = fn(id, v); fnErr != nil {
				return errStopRange
			}
			return nil
		})
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

// Stats returns a snapshot of the tiers and the breaker.
func (s *Store) Stats() Stats {
	st := Stats{Breaker: s.brk.State().String()}
	if s.local != nil {
		ls := s.local.Stats()
		st.LocalEntries, st.LocalBytes = ls.Entries, ls.Bytes
		st.LocalEvictions, st.LocalExpirations = ls.Evictions, ls.Expirations
	}
	return st
}

// Close stops the Store: every later call returns ErrClosed. It waits for
// Redis calls still running past their deadline on a client that ignores
// context deadlines (see redis.Tier), and does not close the client.
// Closing twice returns ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	s.remote.Close()
	return nil
}

func (s *Store) check(id string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return checkID(id)
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
