package telemetry

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every tracer, meter and logger
// this package creates: the package's import path.
const ScopeName = "github.com/sessiontier/sessiontier/telemetry"

// Version returns the version of the instrumentation.
func Version() string { return "0.3.0" }

// Op is a store operation.
type Op int

// The operations.
const (
	OpGet Op = iota
	OpSet
	OpDelete
	OpTouch
	numOps
)

var opNames = [numOps]string{"get", "set", "delete", "touch"}

// Tier is the tier that answered an operation.
type Tier int

// The tiers.
const (
	TierLocal Tier = iota
	TierRedis
	TierFallback
	numTiers
)

var tierNames = [numTiers]string{"local", "redis", "fallback"}

// Result is the outcome of an operation.
type Result int

// The results.
const (
	ResultHit   Result = iota // found, or written
	ResultMiss                // not found
	ResultError               // failed
	numResults
)

var resultNames = [numResults]string{"hit", "miss", "error"}

// durationBuckets span 100ns to 10s: local hits to hung calls.
var durationBuckets = []float64{
	1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
	1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// State is what the observable instruments report, read from the store at
// each collection.
type State struct {
	LocalEntries, LocalMaxEntries       int64
	LocalBytes, LocalMaxBytes           int64
	FallbackEntries, FallbackMaxEntries int64
	FallbackBytes, FallbackMaxBytes     int64
	Breaker                             string // "closed", "open" or "half-open"
	PendingWrites, PendingDeletes       int64
	LocalEvictions, LocalExpirations    int64 // cumulative
	FallbackEvictions                   int64 // cumulative: each one a pending write lost
	PendingLost                         int64 // cumulative, all causes
	ReplayApplied, ReplayConflicts      int64 // cumulative
	Invalidations                       int64 // cumulative
}

// Telemetry holds the instruments of one store. Its methods are safe for
// concurrent use.
type Telemetry struct {
	tracer   trace.Tracer
	unset    trace.TracerProvider // otel's global provider, if the store uses it: unset while GetTracerProvider returns it
	logger   log.Logger
	onAlert  func(Alert)
	duration metric.Float64Histogram
	alerts   metric.Int64Counter
	reg      metric.Registration
	metered  atomic.Bool // duration.Enabled, as last asked (see HitStart)
	traces   atomic.Bool // tracing(), as last asked (see HitStart)

	// Options built once, so that recording allocates nothing.
	durationOpts [numOps][numTiers][numResults][]metric.RecordOption
	spanNames    [numOps]string
	spanOpts     []trace.SpanStartOption
}

// New returns the instruments for o (zero providers: the global ones);
// observe fills the State at each metric collection.
func New(o Options, observe func(*State)) (*Telemetry, error) {
	o = o.WithDefaults()
	meter := o.MeterProvider.Meter(ScopeName, metric.WithInstrumentationVersion(Version()))
	t := &Telemetry{
		tracer:  o.TracerProvider.Tracer(ScopeName, trace.WithInstrumentationVersion(Version())),
		logger:  o.LoggerProvider.Logger(ScopeName, log.WithInstrumentationVersion(Version())),
		onAlert: o.OnAlert,
	}
	if fmt.Sprintf("%T", o.TracerProvider) == globalDelegate { // given or by default
		t.unset = o.TracerProvider
	}
	var err error
	t.duration, err = meter.Float64Histogram("sessiontier.operation.duration",
		metric.WithUnit("s"), metric.WithDescription("Duration of store operations, by operation, answering tier and result."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	t.meters(context.Background())
	t.tracing()
	if t.alerts, err = meter.Int64Counter("sessiontier.alerts", metric.WithUnit("{alert}"),
		metric.WithDescription("Alerts raised, by kind.")); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	for op := range numOps {
		t.spanNames[op] = "sessiontier." + opNames[op]
		for tier := range numTiers {
			for res := range numResults {
				t.durationOpts[op][tier][res] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
					attribute.String("operation", opNames[op]),
					attribute.String("tier", tierNames[tier]),
					attribute.String("result", resultNames[res])))}
			}
		}
	}
	t.spanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	if err := t.observe(meter, observe); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Telemetry) observe(meter metric.Meter, observe func(*State)) error {
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	entries := gauge("sessiontier.tier.entries", "{entry}", "Entries held by the local and outage tiers.")
	entriesLimit := gauge("sessiontier.tier.entries.limit", "{entry}", "Entry bound of the local and outage tiers.")
	bytes := gauge("sessiontier.tier.bytes", "By", "Bytes held by the local and outage tiers (keys, values and per-entry overhead).")
	bytesLimit := gauge("sessiontier.tier.bytes.limit", "By", "Byte bound of the local and outage tiers.")
	breakerState := gauge("sessiontier.breaker.state", "{state}", "1 for the circuit breaker's current state, 0 for the others.")
	pendingWrites := gauge("sessiontier.pending.writes", "{write}", "Writes accepted during an outage, not yet in Redis.")
	pendingDeletes := gauge("sessiontier.pending.deletes", "{delete}", "Deletes made during an outage, not yet applied to Redis.")
	evictions := counter("sessiontier.evictions", "{entry}", "Entries dropped from an in-process tier, by tier and reason.")
	applied := counter("sessiontier.replay.applied", "{operation}", "Writes and deletes replayed into Redis after an outage.")
	conflicts := counter("sessiontier.replay.conflicts", "{write}", "Replayed writes dropped because Redis changed meanwhile.")
	invalidations := counter("sessiontier.invalidations", "{invalidation}", "Cross-instance invalidations received.")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	set := func(kv ...attribute.KeyValue) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(kv...))
	}
	local, fallback := attribute.String("tier", "local"), attribute.String("tier", "fallback")
	var (
		onLocal, onFallback         = set(local), set(fallback)
		capacityLocal, expiredLocal = set(local, attribute.String("reason", "capacity")), set(local, attribute.String("reason", "expired"))
		lostFallback                = set(fallback, attribute.String("reason", "pending_lost"))
		states                      = []string{"closed", "open", "half-open"}
		stateOpts                   = []metric.ObserveOption{set(attribute.String("state", states[0])), set(attribute.String("state", states[1])), set(attribute.String("state", states[2]))}
	)
	var err error
	t.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		t.meters(ctx)
		t.tracing()
		var st State
		observe(&st)
		o.ObserveInt64(entries, st.LocalEntries, onLocal)
		o.ObserveInt64(entries, st.FallbackEntries, onFallback)
		o.ObserveInt64(entriesLimit, st.LocalMaxEntries, onLocal)
		o.ObserveInt64(entriesLimit, st.FallbackMaxEntries, onFallback)
		o.ObserveInt64(bytes, st.LocalBytes, onLocal)
		o.ObserveInt64(bytes, st.FallbackBytes, onFallback)
		o.ObserveInt64(bytesLimit, st.LocalMaxBytes, onLocal)
		o.ObserveInt64(bytesLimit, st.FallbackMaxBytes, onFallback)
		for i, name := range states {
			v := int64(0)
			if st.Breaker == name {
				v = 1
			}
			o.ObserveInt64(breakerState, v, stateOpts[i])
		}
		o.ObserveInt64(pendingWrites, st.PendingWrites)
		o.ObserveInt64(pendingDeletes, st.PendingDeletes)
		o.ObserveInt64(evictions, st.LocalEvictions, capacityLocal)
		o.ObserveInt64(evictions, st.LocalExpirations, expiredLocal)
		o.ObserveInt64(evictions, st.PendingLost, lostFallback)
		o.ObserveInt64(applied, st.ReplayApplied)
		o.ObserveInt64(conflicts, st.ReplayConflicts)
		o.ObserveInt64(invalidations, st.Invalidations)
		return nil
	}, entries, entriesLimit, bytes, bytesLimit, breakerState, pendingWrites, pendingDeletes, evictions, applied, conflicts, invalidations)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}

// Close unregisters the observable instruments.
func (t *Telemetry) Close() error { return t.reg.Unregister() }

// HitStart is for the hot path. traced reports whether ctx carries a
// recording span (a traced request): a store answers a local hit outside a
// traced request without a span of its own, and everything else gets one.
// start is the time to pass to Record, zero when no duration will be
// recorded. Whether durations are recorded, and whether spans are made at
// all (a tracer provider given or set), is asked by every other operation
// (Start) and at every metric collection, never by a hit, so that the hot
// path takes no interface call but the look-up of ctx's span, and only
// when spans are made: a meter enabled, or a global tracer provider set,
// after New starts receiving local hits' durations and spans from the
// store's next operation that is not a local hit, or its next collection.
func (t *Telemetry) HitStart(ctx context.Context) (start time.Time, traced bool) {
	if t.traces.Load() && trace.SpanFromContext(ctx).IsRecording() {
		return time.Time{}, true
	}
	if t.metered.Load() {
		return time.Now(), false
	}
	return time.Time{}, false
}

// Now returns the start time of an operation, or the zero time when no
// duration will be recorded (the meter is a no-op), to spare the clock.
func (t *Telemetry) Now(ctx context.Context) time.Time {
	if t.meters(ctx) {
		return time.Now()
	}
	return time.Time{}
}

// meters asks the meter whether durations are recorded, and keeps the
// answer for HitStart.
func (t *Telemetry) meters(ctx context.Context) bool {
	return keep(&t.metered, func() bool { return t.duration.Enabled(ctx) })
}

// keep stores ask's answer in b, for the hits to read, and returns it.
// It stores only on a change, so that hits' reads of b stay in their
// cores' caches; and after a change it asks again until the answer
// agrees with b, so that an answer stored late by a slow caller (asked
// before the meter or provider changed, stored after a later caller found
// nothing to change) is corrected before its operation returns.
func keep(b *atomic.Bool, ask func() bool) bool {
	for {
		on := ask()
		cur := b.Load()
		if cur == on {
			return on
		}
		b.CompareAndSwap(cur, on)
	}
}

// tracing reports whether a span may record: a provider has been given or
// set; and keeps the answer for HitStart.
func (t *Telemetry) tracing() bool {
	return keep(&t.traces, func() bool { return t.unset == nil || otel.GetTracerProvider() != t.unset })
}

// Record records the duration of an operation that started at start (a
// value from Now) and had no span.
func (t *Telemetry) Record(ctx context.Context, op Op, tier Tier, result Result, start time.Time) {
	if !start.IsZero() {
		t.duration.Record(ctx, time.Since(start).Seconds(), t.durationOpts[op][tier][result]...)
	}
}

// Span is one store operation in progress.
type Span struct {
	t     *Telemetry
	op    Op
	start time.Time
	span  trace.Span
}

// globalDelegate is the type of otel's global TracerProvider before one
// is set: it makes only non-recording spans until then, which Start skips
// (they would cost two allocations per operation and record nothing; the
// caller's context keeps its own span for propagation). Once a provider
// is set, otel.GetTracerProvider returns it, and Start makes spans again.
// Should otel rename the type, spans are always made.
const globalDelegate = "*global.tracerProvider"

// Start starts the span and the timer of op. The returned context carries
// the span, for the Redis calls and alerts of the operation.
func (t *Telemetry) Start(ctx context.Context, op Op) (context.Context, Span) {
	start := t.Now(ctx)
	if !t.tracing() {
		return ctx, Span{t: t, op: op, start: start}
	}
	ctx, span := t.tracer.Start(ctx, t.spanNames[op], t.spanOpts...)
	return ctx, Span{t: t, op: op, start: start, span: span}
}

// End records the operation's duration and ends its span, with the tier
// that answered and the result. For ResultError, the span's status is set
// to Error and error.type to errType.
func (s Span) End(tier Tier, result Result, errType string) {
	s.t.Record(context.Background(), s.op, tier, result, s.start)
	if s.span == nil {
		return
	}
	if s.span.IsRecording() {
		s.span.SetAttributes(attribute.String("sessiontier.tier", tierNames[tier]), attribute.String("sessiontier.result", resultNames[result]))
		if result == ResultError {
			s.span.SetAttributes(attribute.String("error.type", errType))
			s.span.SetStatus(codes.Error, errType)
		}
	}
	s.span.End()
}

// Task starts a span for background work of the store ("probe",
// "replay"), which has no caller's span to join; the returned function
// ends it.
func (t *Telemetry) Task(ctx context.Context, name string) (context.Context, func(error)) {
	ctx, span := t.tracer.Start(ctx, "sessiontier."+name, t.spanOpts...)
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attribute.String("error.type", ErrorType(err)))
			span.SetStatus(codes.Error, ErrorType(err))
		}
		span.End()
	}
}

// RedisCall starts a client span for one round trip to Redis, named after
// the command; the returned function ends it. Only the command name is
// recorded: never a key or a value. A call whose operation's span is not
// recording (not sampled, or no tracing set up) gets no span: a child of
// an unsampled span is not sampled by OpenTelemetry's default
// (parent-based) samplers either, and this keeps the write path from
// allocating spans nobody records.
func (t *Telemetry) RedisCall(ctx context.Context, command string) (context.Context, func(error)) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, endNothing
	}
	ctx, span := t.tracer.Start(ctx, command, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.String("db.operation.name", command)))
	return ctx, func(err error) {
		if err != nil {
			span.SetAttributes(attribute.String("error.type", ErrorType(err)))
			span.SetStatus(codes.Error, ErrorType(err))
		}
		span.End()
	}
}

func endNothing(error) {}

// ErrorType names an error for error.type without its message, which may
// hold anything: the type of the innermost error, or a context error's name.
func ErrorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return fmt.Sprintf("%T", err)
		}
		err = next
	}
}

// Alert hands a to the OnAlert hook, emits it as a log record in ctx (so
// that it joins the operation's trace where there is one) and counts it.
// The caller holds no lock.
func (t *Telemetry) Alert(ctx context.Context, a Alert) {
	if t.onAlert != nil {
		t.onAlert(a)
	}
	t.alerts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(a.Kind))))
	var r log.Record
	r.SetEventName("sessiontier." + string(a.Kind))
	r.SetTimestamp(time.Now())
	switch a.Severity {
	case SeverityError:
		r.SetSeverity(log.SeverityError)
	case SeverityWarn:
		r.SetSeverity(log.SeverityWarn)
	default:
		r.SetSeverity(log.SeverityInfo)
	}
	r.SetSeverityText(a.Severity)
	r.SetBody(attribute.StringValue(a.Message))
	r.AddAttributes(
		attribute.String("sessiontier.alert.kind", string(a.Kind)),
		attribute.Int64("sessiontier.alert.count", a.Count),
		attribute.Int64("sessiontier.alert.bytes", a.Bytes))
	t.logger.Emit(ctx, r)
}
