// Package lru provides the bounded in-process tiers of sessiontier: a
// sharded, segmented (probation/protected) LRU cache of byte values with
// per-entry expiry, bounded at every instant by an entry count and a byte
// count.
//
// A new entry enters the probation segment; an entry read or written again
// moves to the protected segment. Eviction takes probation's oldest entry
// first, so a flood of keys written once and never read again cannot push
// out keys that are in use.
//
// The package builds on github.com/hashicorp/golang-lru/v2/simplelru. It
// starts no goroutine: expired entries are dropped when they are met, and
// otherwise age out through the LRU order.
package lru

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by New to zero fields of Limits.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 64 << 20
	DefaultTTL        = time.Minute
)

// EntryOverhead is the number of bytes charged to every entry on top of
// len(key)+len(value): the entry record, its list element, its map slot
// and its slot in the lock-free index (lru.Cache).
// It is an estimate for 64-bit platforms, checked by a heap test in this
// package.
const EntryOverhead = 400

// ErrInvalidLimits is returned by New for limits it cannot honour.
var ErrInvalidLimits = errors.New("lru: invalid limits")

// Limits bounds a tier. The zero value means the defaults.
type Limits struct {
	// MaxEntries bounds the number of entries. 0: default (100_000);
	// -1: the tier is disabled.
	MaxEntries int
	// MaxBytes bounds len(key)+len(value)+EntryOverhead summed over all
	// entries. 0: default (64 MiB).
	MaxBytes int64
	// TTL is the longest time an entry is served without asking Redis.
	// 0: default (1m).
	TTL time.Duration
}

// Disabled reports whether the limits turn the tier off.
func (l Limits) Disabled() bool { return l.MaxEntries == -1 }

// WithDefaults returns l with zero fields set to the defaults, or an error
// wrapping ErrInvalidLimits for negative values other than MaxEntries -1.
func (l Limits) WithDefaults() (Limits, error) {
	switch {
	case l.MaxEntries < -1:
		return l, fmt.Errorf("%w: MaxEntries %d (want > 0, 0 for the default or -1 for off)", ErrInvalidLimits, l.MaxEntries)
	case l.MaxBytes < 0:
		return l, fmt.Errorf("%w: MaxBytes %d (want > 0 or 0 for the default)", ErrInvalidLimits, l.MaxBytes)
	case l.TTL < 0:
		return l, fmt.Errorf("%w: TTL %v (want > 0 or 0 for the default)", ErrInvalidLimits, l.TTL)
	}
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.TTL == 0 {
		l.TTL = DefaultTTL
	}
	return l, nil
}
