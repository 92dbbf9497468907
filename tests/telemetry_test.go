package tests

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/log/logtest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// otelEnv is a Store wired to in-memory OpenTelemetry backends.
type otelEnv struct {
	*env
	s      *tiered.Store
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	logs   *logtest.Recorder
	tracer trace.Tracer
}

func newOtelEnv(t *testing.T, tweak ...func(*tiered.Options)) *otelEnv {
	e := &otelEnv{env: newEnv(t), reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder(), logs: logtest.NewRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans))
	t.Cleanup(func() { mp.Shutdown(bg); tp.Shutdown(bg) })
	e.tracer = tp.Tracer("test")
	opts := tiered.Options{
		Breaker:   breaker.Settings{Failures: 2, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 50 * time.Millisecond},
		Telemetry: telemetry.Options{MeterProvider: mp, TracerProvider: tp, LoggerProvider: e.logs},
	}
	for _, f := range tweak {
		f(&opts)
	}
	e.s = e.store(t, opts)
	return e
}

// gauge returns the value of an Int64 metric's point with the given
// attribute, or -1.
func (e *otelEnv) gauge(t *testing.T, name, key, value string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(bg, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			case metricdata.Sum[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				if v, ok := p.Attributes.Value(attribute.Key(key)); key == "" || (ok && v.AsString() == value) {
					return p.Value
				}
			}
		}
	}
	return -1
}

func (e *otelEnv) logRecords() []logtest.Record {
	var out []logtest.Record
	for _, recs := range e.logs.Result() {
		out = append(out, recs...)
	}
	return out
}

// TestTelemetryThroughAnOutage: an outage and recovery show in the breaker
// state series, the usage gauges, the alert log records and the spans.
func TestTelemetryThroughAnOutage(t *testing.T) {
	e := newOtelEnv(t)
	breakerState := func() string {
		for _, st := range []string{"closed", "open", "half-open"} {
			if e.gauge(t, "sessiontier.breaker.state", "state", st) == 1 {
				return st
			}
		}
		return "none"
	}
	var series []string
	series = append(series, breakerState())

	mustSet(t, e.s, "sess", "payload")
	settled(t, e.env, e.s, "sess", "payload")
	ctx, parent := e.tracer.Start(bg, "request")
	if _, err := e.s.Get(ctx, "sess"); err != nil { // a local hit inside a traced request
		t.Fatal(err)
	}
	parent.End()
	e.plain.HSet(bg, "session:hash", "f", "v")
	if _, err := e.s.Get(bg, "hash"); err == nil { // WRONGTYPE: an operation that fails
		t.Fatal("Get of a hash succeeded")
	}

	e.srv.Kill()
	openBreaker(t, e.s)
	mustSet(t, e.s, "during", "written in the outage")
	series = append(series, breakerState())
	if n := e.gauge(t, "sessiontier.tier.entries", "tier", "fallback"); n != 1 {
		t.Fatalf("outage tier entries gauge = %d; want 1", n)
	}
	if n := e.gauge(t, "sessiontier.pending.writes", "", ""); n != 1 {
		t.Fatalf("pending writes gauge = %d; want 1", n)
	}
	if n := e.gauge(t, "sessiontier.tier.entries.limit", "tier", "local"); n != 100_000 {
		t.Fatalf("local entries limit gauge = %d; want 100000", n)
	}
	if n := e.gauge(t, "sessiontier.tier.bytes.limit", "tier", "fallback"); n != 64<<20 {
		t.Fatalf("outage tier bytes limit gauge = %d; want 64 MiB", n)
	}

	e.srv.Restart()
	waitReplayed(t, e.s)
	// The replay_done alert follows the drain, once the replay has looked
	// again for what came meanwhile.
	waitFor(t, "the replay_done alert", func() bool {
		return slices.ContainsFunc(e.logRecords(), func(r logtest.Record) bool { return r.EventName == "sessiontier.replay_done" })
	})
	series = append(series, breakerState())
	if got := strings.Join(series, ","); got != "closed,open,closed" {
		t.Fatalf("breaker state series = %s; want closed,open,closed", got)
	}
	if n := e.gauge(t, "sessiontier.replay.applied", "", ""); n != 1 {
		t.Fatalf("replay applied = %d; want 1", n)
	}
	if n := e.gauge(t, "sessiontier.alerts", "kind", "breaker_open"); n != 1 {
		t.Fatalf("alerts{kind=breaker_open} = %d; want 1", n)
	}

	// Alerts as log records with event names and severities; the breaker's
	// in order. Killing Redis also breaks the invalidation stream.
	want := map[string]otellog.Severity{
		"sessiontier.breaker_open":      otellog.SeverityError,
		"sessiontier.breaker_closed":    otellog.SeverityInfo,
		"sessiontier.replay_done":       otellog.SeverityInfo,
		"sessiontier.invalidation_lost": otellog.SeverityError,
	}
	var order []string
	for _, r := range e.logRecords() {
		sev, ok := want[r.EventName]
		if !ok || r.Severity != sev {
			t.Errorf("log record %s/%v not expected", r.EventName, r.Severity)
		}
		if r.EventName != "sessiontier.invalidation_lost" {
			order = append(order, r.EventName)
		}
	}
	if got := strings.Join(order, ","); got != "sessiontier.breaker_open,sessiontier.breaker_closed,sessiontier.replay_done" {
		t.Errorf("breaker and replay log records = %s", got)
	}

	// Spans: the hit under the request, failures with status Error, Redis
	// round trips as client spans with the command name only.
	var sawHit, sawFailure, sawRedis bool
	for _, sp := range e.spans.Ended() {
		attrs := attribute.NewSet(sp.Attributes()...)
		tier, _ := attrs.Value("sessiontier.tier")
		switch {
		case sp.Name() == "sessiontier.get" && tier.AsString() == "local" && sp.Parent().IsValid():
			sawHit = true
		case strings.HasPrefix(sp.Name(), "sessiontier.") && sp.Status().Code == codes.Error:
			if et, ok := attrs.Value("error.type"); !ok || et.AsString() == "" {
				t.Errorf("failed span %s has no error.type", sp.Name())
			}
			sawFailure = true
		case sp.SpanKind() == trace.SpanKindClient:
			if sys, _ := attrs.Value("db.system.name"); sys.AsString() != "redis" {
				t.Errorf("client span %s: db.system.name = %q", sp.Name(), sys.AsString())
			}
			if !sp.Parent().IsValid() {
				t.Errorf("client span %s has no parent span (an operation, the probe or the replay)", sp.Name())
			}
			sawRedis = true
		}
		if len(sp.Events()) != 0 {
			t.Errorf("span %s has events; alerts go to log records", sp.Name())
		}
	}
	if !sawHit || !sawFailure || !sawRedis {
		t.Fatalf("spans: local hit under the request %v, failed operation %v, Redis client span %v; want all", sawHit, sawFailure, sawRedis)
	}
}

// TestTelemetryNeverCarriesSessionData gathers every span name, attribute,
// status, metric attribute and log body and attribute of a run with known
// ids and payloads, and fails if any of them appears.
func TestTelemetryNeverCarriesSessionData(t *testing.T) {
	e := newOtelEnv(t)
	var secrets []string
	for i := range 5 {
		id, data := fmt.Sprintf("SECRETID%d", i), fmt.Sprintf("SECRETDATA%d", i)
		secrets = append(secrets, id, data)
	}
	ctx, parent := e.tracer.Start(bg, "request")
	for i := 0; i < len(secrets); i += 2 {
		e.s.Set(ctx, secrets[i], []byte(secrets[i+1]), time.Hour)
		e.s.Get(ctx, secrets[i])
		e.s.Touch(ctx, secrets[i], time.Hour)
	}
	e.plain.HSet(bg, "session:SECRETIDwrongtype", "f", "SECRETDATAhash")
	e.s.Get(ctx, "SECRETIDwrongtype")
	e.srv.Kill()
	openBreaker(t, e.s)
	for i := 0; i < len(secrets); i += 2 {
		e.s.Set(ctx, secrets[i], []byte(secrets[i+1]+"x"), time.Hour)
		e.s.Delete(ctx, secrets[i])
	}
	e.srv.Restart()
	waitReplayed(t, e.s)
	parent.End()

	var seen []string
	add := func(s ...string) { seen = append(seen, s...) }
	addAttrs := func(kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			add(string(kv.Key), kv.Value.String())
		}
	}
	for _, sp := range e.spans.Ended() {
		add(sp.Name(), sp.Status().Description)
		addAttrs(sp.Attributes())
		for _, ev := range sp.Events() {
			add(ev.Name)
			addAttrs(ev.Attributes)
		}
	}
	var rm metricdata.ResourceMetrics
	e.reader.Collect(bg, &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			add(m.Name)
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					addAttrs(p.Attributes.ToSlice())
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					addAttrs(p.Attributes.ToSlice())
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					addAttrs(p.Attributes.ToSlice())
				}
			}
		}
	}
	for _, r := range e.logRecords() {
		add(r.EventName, r.SeverityText, r.Body.String())
		addAttrs(r.Attributes)
		if r.Error != nil {
			add(r.Error.Error())
		}
	}
	if len(seen) < 50 {
		t.Fatalf("gathered only %d strings: the run produced too little telemetry to check", len(seen))
	}
	for _, s := range seen {
		if strings.Contains(s, "SECRET") {
			t.Fatalf("telemetry carries session data: %q", s)
		}
	}
}

// TestAlertLogRecordJoinsTheTrace: an alert raised during an operation is
// emitted in the operation's context, so tracing backends show it there.
func TestAlertLogRecordJoinsTheTrace(t *testing.T) {
	e := newOtelEnv(t, func(o *tiered.Options) { o.MaxTombstones = 1 })
	e.srv.Kill()
	openBreaker(t, e.s)
	e.s.Delete(bg, "a") // the one tombstone there is room for
	ctx, parent := e.tracer.Start(bg, "request")
	if err := e.s.Delete(ctx, "b"); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Delete past MaxTombstones = %v; want ErrUnavailable", err)
	}
	parent.End()
	for _, r := range e.logRecords() {
		if r.EventName == "sessiontier.tombstones_full" {
			if got := trace.SpanContextFromContext(r.Context).TraceID(); got != parent.SpanContext().TraceID() {
				t.Fatalf("the alert's log record is in trace %v; want the request's %v", got, parent.SpanContext().TraceID())
			}
			return
		}
	}
	t.Fatal("no tombstones_full log record")
}
