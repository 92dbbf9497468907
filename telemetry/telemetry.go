// Package telemetry provides sessiontier's alerts and the OpenTelemetry
// providers its instruments report to. It is the only package of the
// module that imports OpenTelemetry.
//
// Alerts never carry a session id, a token or session data: only kinds,
// counts, sizes and durations.
package telemetry

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Options says where telemetry goes. The zero value uses the global
// providers.
type Options struct {
	// MeterProvider receives the metrics. default: otel.GetMeterProvider()
	MeterProvider metric.MeterProvider
	// TracerProvider receives the spans. default: otel.GetTracerProvider()
	TracerProvider trace.TracerProvider
	// LoggerProvider receives alerts as log records.
	// default: otel.GetLoggerProvider()
	LoggerProvider log.LoggerProvider
	// OnAlert, if set, is called with every alert, never with a lock held,
	// from the goroutine that raised it: it should return quickly.
	OnAlert func(Alert)
}

// WithDefaults returns o with nil providers set to the global ones.
func (o Options) WithDefaults() Options {
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.LoggerProvider == nil {
		o.LoggerProvider = otel.GetLoggerProvider()
	}
	return o
}

// AlertKind names what an Alert is about.
type AlertKind string

// The alert kinds.
const (
	AlertBreakerOpen      AlertKind = "breaker_open"      // Redis became unreachable
	AlertBreakerClosed    AlertKind = "breaker_closed"    // Redis is reachable again
	AlertFallbackHigh     AlertKind = "fallback_high"     // the outage tier reached 80% of a bound
	AlertFallbackFull     AlertKind = "fallback_full"     // the outage tier is evicting
	AlertPendingLost      AlertKind = "pending_lost"      // an accepted write was dropped before reaching Redis
	AlertReplayConflict   AlertKind = "replay_conflict"   // Redis changed meanwhile; its value won
	AlertReplayDone       AlertKind = "replay_done"       // the writes accepted during an outage were replayed
	AlertTombstonesFull   AlertKind = "tombstones_full"   // a delete could not be recorded during an outage
	AlertInvalidationLost AlertKind = "invalidation_lost" // the cross-instance invalidation stream broke
	AlertUnfenced         AlertKind = "replay_unfenced"   // Redis refused to fence abandoned writes: replay went on without
	AlertReplayRefused    AlertKind = "replay_refused"    // Redis answers but refuses the replay's writes (OOM, BUSY, MISCONF, an ACL…): they wait
)

// Severities of an Alert.
const (
	SeverityInfo  = "info"
	SeverityWarn  = "warn"
	SeverityError = "error"
)

// Alert is a notable change of the store's state.
type Alert struct {
	Kind     AlertKind
	Severity string // SeverityInfo, SeverityWarn or SeverityError
	Message  string // for people; never holds a session id or data
	Count    int64  // how many sessions or operations it concerns, if any
	Bytes    int64  // how many bytes it concerns, if any
}
