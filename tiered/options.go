package tiered

import (
	"fmt"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultPrefix        = "session:"
	DefaultOpTimeout     = 100 * time.Millisecond
	DefaultMaxValueBytes = 1 << 20
	DefaultMaxTombstones = 100_000
	DefaultCloseTimeout  = 5 * time.Second
)

// MaxIDBytes is the longest session id accepted.
const MaxIDBytes = 256

// Options configures a Store. The zero value means the defaults; New
// copies the Options it is given.
type Options struct {
	// Prefix is put before every id to make its Redis key.
	// default: "session:" (scs's Redis stores use "scs:session:")
	Prefix string
	// Local bounds the read-through cache in this process. Local.TTL is the
	// longest a value is served without asking Redis.
	// defaults: 100_000 entries, 64 MiB, TTL 1m; MaxEntries -1: no cache.
	Local lru.Limits
	// Fallback bounds the outage tier, which keeps the writes accepted
	// while Redis is unreachable until they are replayed (TTL unused).
	// defaults: 100_000 entries, 64 MiB; MaxEntries -1: no outage tier,
	// writes fail with ErrUnavailable while Redis is unreachable.
	Fallback lru.Limits
	// MaxTombstones bounds the deletes remembered while Redis is
	// unreachable; past it, Delete returns ErrUnavailable.
	// default: 100_000
	MaxTombstones int
	// Invalidation selects how instances drop local copies of sessions
	// changed elsewhere. default: InvalidationAuto (client tracking where
	// Redis allows it, else messages the instances publish);
	// InvalidationOff (-1): none.
	Invalidation Invalidation
	// CloseTimeout bounds how long Close tries to replay what is pending.
	// default: 5s
	CloseTimeout time.Duration
	// Breaker configures the circuit breaker around Redis.
	// defaults: open after 5 consecutive failures, probe after 1s, back
	// off up to 30s.
	Breaker breaker.Settings
	// OpTimeout bounds every Redis call, whatever the client's own
	// timeouts: long enough for a loaded Redis on a LAN, short enough that
	// a hung Redis costs a request little. default: 100ms
	OpTimeout time.Duration
	// MaxValueBytes is the largest session accepted by Set.
	// default: 1 MiB; -1: no limit.
	MaxValueBytes int
	// StrictReads makes Get return ErrUnavailable instead of ErrNotFound
	// for a session it cannot find while Redis is unreachable.
	// default: false
	StrictReads bool
	// Telemetry says where alerts, metrics and spans go.
	// default: the global OpenTelemetry providers.
	Telemetry telemetry.Options
	// Clock reads the time of every time decision: local expiry, the
	// outage tier's expiries, the breaker's waits (unless Breaker.Clock is
	// set) and alert rate limits; for tests. default: time.Now (the local
	// tier reads only the monotonic clock)
	Clock func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.OpTimeout < 0 {
		return o, fmt.Errorf("%w: OpTimeout %v: every Redis call must be bounded", ErrInvalidOptions, o.OpTimeout)
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	switch {
	case o.MaxValueBytes < -1:
		return o, fmt.Errorf("%w: MaxValueBytes %d", ErrInvalidOptions, o.MaxValueBytes)
	case o.MaxValueBytes == 0:
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	switch {
	case o.MaxTombstones < 0:
		return o, fmt.Errorf("%w: MaxTombstones %d", ErrInvalidOptions, o.MaxTombstones)
	case o.MaxTombstones == 0:
		o.MaxTombstones = DefaultMaxTombstones
	}
	if o.Invalidation < InvalidationOff || o.Invalidation > InvalidationPerKey {
		return o, fmt.Errorf("%w: Invalidation %d", ErrInvalidOptions, o.Invalidation)
	}
	switch {
	case o.CloseTimeout < 0:
		return o, fmt.Errorf("%w: CloseTimeout %v", ErrInvalidOptions, o.CloseTimeout)
	case o.CloseTimeout == 0:
		o.CloseTimeout = DefaultCloseTimeout
	}
	var err error
	if o.Local, err = o.Local.WithDefaults(); err != nil {
		return o, fmt.Errorf("%w: Local: %w", ErrInvalidOptions, err)
	}
	if o.Fallback, err = o.Fallback.WithDefaults(); err != nil {
		return o, fmt.Errorf("%w: Fallback: %w", ErrInvalidOptions, err)
	}
	o.Telemetry = o.Telemetry.WithDefaults()
	return o, nil
}
