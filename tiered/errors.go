package tiered

import (
	"errors"
	"fmt"

	"github.com/sessiontier/sessiontier/breaker"
)

// Errors returned by Store. Match them with errors.Is: most are wrapped
// with detail. No error message ever holds a session id or session data.
var (
	// ErrNotFound: no session has this id, or it expired.
	ErrNotFound = errors.New("tiered: session not found")
	// ErrInvalidID: the id is empty, longer than MaxIDBytes, not UTF-8,
	// or holds whitespace or a control character. Nothing was read or
	// written.
	ErrInvalidID = errors.New("tiered: invalid session id")
	// ErrInvalidTTL: the TTL is not positive. Nothing was written.
	ErrInvalidTTL = errors.New("tiered: invalid ttl")
	// ErrTooLarge: the data is longer than Options.MaxValueBytes. From
	// Set: nothing was written. From Get: the session in Redis (written by
	// another client) is longer; it was read no further than the limit.
	ErrTooLarge = errors.New("tiered: session data too large")
	// ErrUnavailable: Redis could not be reached in time, or the circuit
	// breaker is open. The error wraps the cause.
	ErrUnavailable = errors.New("tiered: redis unavailable")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("tiered: store closed")
	// ErrPendingLost: Close could not replay every write or delete
	// accepted during an outage; the error says how many.
	ErrPendingLost = errors.New("tiered: pending writes lost")
	// ErrInvalidOptions: New was given a nil client or options it cannot
	// honour.
	ErrInvalidOptions = errors.New("tiered: invalid options")
)

var (
	errIDEmpty       = fmt.Errorf("%w: empty", ErrInvalidID)
	errIDLong        = fmt.Errorf("%w: longer than %d bytes", ErrInvalidID, MaxIDBytes)
	errIDChars       = fmt.Errorf("%w: whitespace, a control character or invalid UTF-8", ErrInvalidID)
	errTTL           = fmt.Errorf("%w: must be positive", ErrInvalidTTL)
	errStopRange     = errors.New("tiered: range stopped")
	errGetOpen       = fmt.Errorf("%w: get: %w", ErrUnavailable, breaker.ErrOpen)
	errReplayStopped = errors.New("tiered: replay stopped before the outage tier was drained")
)
