package tiered

import (
	"context"
	"errors"

	"github.com/sessiontier/sessiontier/telemetry"
)

// end ends an operation's span and records its duration.
func (s *Store) end(span telemetry.Span, tier telemetry.Tier, err error) {
	switch {
	case err == nil:
		span.End(tier, telemetry.ResultHit, "")
	case errors.Is(err, ErrNotFound):
		span.End(tier, telemetry.ResultMiss, "")
	default:
		span.End(tier, telemetry.ResultError, errorType(err))
	}
}

// errorType names err for error.type: the Store's sentinel it matches, or
// the telemetry package's name for it. Never the message, which is free
// text.
func errorType(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{ErrClosed, "closed"}, {ErrInvalidID, "invalid_id"}, {ErrInvalidTTL, "invalid_ttl"},
		{ErrTooLarge, "too_large"}, {ErrUnavailable, "unavailable"}, {ErrPendingLost, "pending_lost"},
		{context.Canceled, "canceled"}, {context.DeadlineExceeded, "timeout"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return telemetry.ErrorType(err)
}

// observe fills the telemetry State at each metric collection.
func (s *Store) observe(st *telemetry.State) {
	x := s.Stats()
	st.LocalEntries, st.LocalBytes = int64(x.LocalEntries), x.LocalBytes
	st.FallbackEntries, st.FallbackBytes = int64(x.FallbackEntries), x.FallbackBytes
	if s.local != nil {
		st.LocalMaxEntries, st.LocalMaxBytes = int64(s.opts.Local.MaxEntries), s.opts.Local.MaxBytes
	}
	if s.out != nil {
		st.FallbackMaxEntries, st.FallbackMaxBytes = int64(s.opts.Fallback.MaxEntries), s.opts.Fallback.MaxBytes
	}
	st.Breaker = x.Breaker
	st.PendingWrites, st.PendingDeletes = int64(x.PendingWrites), int64(x.PendingDeletes)
	st.LocalEvictions, st.LocalExpirations = int64(x.LocalEvictions), int64(x.LocalExpirations)
	st.PendingLost = int64(x.PendingLost)
	st.ReplayApplied, st.ReplayConflicts = int64(x.ReplayApplied), int64(x.ReplayConflicts)
	st.Invalidations = int64(x.Invalidations)
}
