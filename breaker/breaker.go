// Package breaker provides the circuit breaker that guards sessiontier's
// calls to Redis: github.com/sony/gobreaker/v2 wrapped with error
// classification, fail-fast without touching the network while open, and
// an exponential backoff with jitter between probes.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Defaults applied by New to zero fields of Settings.
const (
	DefaultFailures       = 5
	DefaultOpenTimeout    = time.Second
	DefaultMaxOpenTimeout = 30 * time.Second
)

// ErrOpen is returned by Do, without running the operation, while the
// breaker is open (or half-open with its probe already under way).
var ErrOpen = errors.New("breaker: open")

// ErrInvalidSettings is returned by New for settings it cannot honour.
var ErrInvalidSettings = errors.New("breaker: invalid settings")

// Settings configures a Breaker. The zero value means the defaults.
type Settings struct {
	// Failures is the number of consecutive infrastructure failures that
	// open the breaker; the calls that share one failure (see
	// SharedFailure) count as one. default: 5
	Failures uint32
	// OpenTimeout is the first wait, once open, before a call may probe
	// Redis again. default: 1s
	OpenTimeout time.Duration
	// MaxOpenTimeout caps the wait, which doubles (plus up to 20% jitter)
	// after every failed probe. default: 30s
	MaxOpenTimeout time.Duration
	// Clock reads the time of every wait; for tests. default: time.Now
	Clock func() time.Time
}

func (s Settings) withDefaults() (Settings, error) {
	if s.OpenTimeout < 0 || s.MaxOpenTimeout < 0 {
		return s, fmt.Errorf("%w: negative OpenTimeout or MaxOpenTimeout", ErrInvalidSettings)
	}
	if s.Failures == 0 {
		s.Failures = DefaultFailures
	}
	if s.OpenTimeout == 0 {
		s.OpenTimeout = DefaultOpenTimeout
	}
	if s.MaxOpenTimeout == 0 {
		s.MaxOpenTimeout = max(DefaultMaxOpenTimeout, s.OpenTimeout)
	}
	if s.Clock == nil {
		s.Clock = time.Now
	}
	if s.MaxOpenTimeout < s.OpenTimeout {
		return s, fmt.Errorf("%w: MaxOpenTimeout %v is below OpenTimeout %v", ErrInvalidSettings, s.MaxOpenTimeout, s.OpenTimeout)
	}
	return s, nil
}

// State is the state of a Breaker.
type State int32

// The states of a Breaker.
const (
	Closed State = iota
	HalfOpen
	Open
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Breaker guards calls to one backend. It is safe for concurrent use.
type Breaker struct {
	cb        *gobreaker.TwoStepCircuitBreaker[struct{}]
	isFailure func(error) bool
	settings  Settings
	clock     func() time.Time

	// Written by gobreaker's OnStateChange, which runs under gobreaker's
	// lock: atomic stores only.
	state        atomic.Int32  // State
	openUntil    atomic.Int64  // unix ns before which calls fail fast
	failedProbes atomic.Int32  // consecutive half-open probes that failed
	changes      chan struct{} // capacity 1: a non-blocking send per change
	opens        atomic.Uint64 // transitions from closed to open

	// streak counts the failures Do reported since it last reported a
	// success: while the breaker is closed and streak is 0, gobreaker's
	// consecutive failures are 0 too, and a success need not be reported
	// (Do's fast path takes no lock).
	streak atomic.Int32
	// lastShared is the key of the last SharedFailure counted.
	lastShared atomic.Uint64
}

// SharedFailure is implemented by the error that several calls got from
// one failure: a pipeline that many callers shared and that broke. Do
// counts consecutive errors with the same key as one failure, so that one
// broken round trip does not open the breaker by itself.
type SharedFailure interface {
	error
	SharedFailure() (key uint64)
}

// errExcluded and errFailure are what Do reports to gobreaker.
var (
	errExcluded = errors.New("excluded")
	errFailure  = errors.New("failure")
)

// New returns a closed Breaker. isFailure tells an infrastructure failure
// (Redis unreachable, timed out, loading, read-only, …) from any other
// error: only failures count towards opening the breaker. Any other error,
// such as a missing key or a wrong type, shows that the backend answered
// and counts as a success. A nil isFailure counts every error.
func New(s Settings, isFailure func(error) bool) (*Breaker, error) {
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	if isFailure == nil {
		isFailure = func(error) bool { return true }
	}
	b := &Breaker{isFailure: isFailure, settings: s, clock: s.Clock, changes: make(chan struct{}, 1)}
	failures := s.Failures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name: "redis",
		// gobreaker's own wait runs on the real clock: it is cut to
		// nothing, and the wait with backoff (see waiting) is the one on
		// Settings.Clock.
		Timeout:     time.Nanosecond,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return err == errExcluded },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.onStateChange(from, to)
		},
	})
	return b, nil
}

// onStateChange runs under gobreaker's lock: it does atomic stores and a
// non-blocking send only.
func (b *Breaker) onStateChange(from, to gobreaker.State) {
	defer func() {
		select {
		case b.changes <- struct{}{}:
		default:
		}
	}()
	switch to {
	case gobreaker.StateOpen:
		if from == gobreaker.StateClosed {
			b.opens.Add(1)
		}
		n := int32(0)
		if from == gobreaker.StateHalfOpen {
			n = b.failedProbes.Add(1)
		} else {
			b.failedProbes.Store(0)
		}
		b.openUntil.Store(b.clock().Add(b.backoff(n)).UnixNano())
		b.state.Store(int32(Open))
	case gobreaker.StateHalfOpen:
		b.state.Store(int32(HalfOpen))
	case gobreaker.StateClosed:
		b.streak.Store(0)
		b.failedProbes.Store(0)
		b.openUntil.Store(0)
		b.state.Store(int32(Closed))
	}
}

// backoff returns the wait after n consecutive failed probes: OpenTimeout
// doubled n times, capped at MaxOpenTimeout, plus up to 20% jitter so that
// many instances do not probe in step.
func (b *Breaker) backoff(n int32) time.Duration {
	d := b.settings.OpenTimeout
	for range n {
		if d >= b.settings.MaxOpenTimeout/2 {
			d = b.settings.MaxOpenTimeout
			break
		}
		d *= 2
	}
	d = min(d, b.settings.MaxOpenTimeout)
	return d + rand.N(d/5+1)
}

// Do runs op unless the breaker is open, and records its outcome. ctx is
// the caller's context: an error while ctx is done is the caller's own
// cancellation and counts neither way. While open, Do returns ErrOpen at
// once and op does not run.
func (b *Breaker) Do(ctx context.Context, op func() error) error {
	if b.state.Load() == int32(Closed) && b.streak.Load() == 0 {
		// The fast path: closed, and no failure since the last success.
		err := op()
		if err != nil && ctx.Err() == nil && b.isFailure(err) && b.counts(err) {
			if done, aerr := b.cb.Allow(); aerr == nil {
				b.streak.Add(1)
				done(errFailure)
			}
		}
		return err
	}
	if b.waiting() {
		return ErrOpen
	}
	done, err := b.cb.Allow()
	if err != nil {
		return ErrOpen
	}
	err = op()
	switch {
	case err == nil:
		b.streak.Store(0)
		done(nil)
	case ctx.Err() != nil:
		done(errExcluded)
	case b.isFailure(err) && b.counts(err):
		b.streak.Add(1)
		done(errFailure)
	case b.isFailure(err):
		done(errExcluded) // counted already, with the other callers of its round trip
	default:
		b.streak.Store(0)
		done(nil)
	}
	return err
}

// counts reports whether the failure err is to be counted: not when it is
// a SharedFailure whose key was counted last.
func (b *Breaker) counts(err error) bool {
	var sh SharedFailure
	if !errors.As(err, &sh) {
		return true
	}
	key := sh.SharedFailure()
	return b.lastShared.Swap(key) != key
}

// State returns the current state. A breaker whose wait is over but that
// has not probed yet reports half-open.
func (b *Breaker) State() State {
	if b.waiting() {
		return Open
	}
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// Changes returns a channel that receives a value after state changes. It
// has room for one value and is sent to without blocking: a receiver learns
// that something changed since its last receive, and reads State.
func (b *Breaker) Changes() <-chan struct{} { return b.changes }

// RetryAt returns when an open breaker lets the next probe through, on
// Settings.Clock; the zero time when it is not waiting.
func (b *Breaker) RetryAt() time.Time {
	if until := b.openUntil.Load(); until != 0 {
		return time.Unix(0, until)
	}
	return time.Time{}
}

// Opens returns how many times the breaker went from closed to open: a
// watcher that compares it between two looks sees an outage even if the
// breaker closed again in between.
func (b *Breaker) Opens() uint64 { return b.opens.Load() }

// Rejecting reports whether Do would now return ErrOpen without running
// its operation because the breaker is within its backoff wait. It is
// cheap (an atomic load and a clock read): callers use it to skip work
// that only serves a call to the backend.
func (b *Breaker) Rejecting() bool { return b.waiting() }

// waiting reports whether the breaker is within its backoff wait. gobreaker
// half-opens after the fixed OpenTimeout; the wait, which grows with every
// failed probe, holds calls back beyond that.
func (b *Breaker) waiting() bool {
	until := b.openUntil.Load()
	return until != 0 && b.clock().UnixNano() < until
}
