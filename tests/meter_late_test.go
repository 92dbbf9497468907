package tests

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// switchMeter is a MeterProvider whose operation-duration histogram is
// disabled until on is set, as the global provider is until an SDK is
// installed; it counts what is recorded.
type switchMeter struct {
	noop.MeterProvider
	on       atomic.Bool
	recorded atomic.Int64
}

func (m *switchMeter) Meter(string, ...metric.MeterOption) metric.Meter {
	return switchMeterMeter{m: m}
}

type switchMeterMeter struct {
	noop.Meter
	m *switchMeter
}

func (mm switchMeterMeter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return switchHistogram{m: mm.m}, nil
}

type switchHistogram struct {
	noop.Float64Histogram
	m *switchMeter
}

func (h switchHistogram) Enabled(context.Context) bool { return h.m.on.Load() }
func (h switchHistogram) Record(context.Context, float64, ...metric.RecordOption) {
	h.m.recorded.Add(1)
}

// TestHitDurationsFollowAMeterEnabledLater: hits never ask the meter
// whether durations are recorded; the other operations and metric
// collections do. A meter that becomes enabled after New (the global
// provider, once an SDK is installed) gets no hit duration while disabled,
// and the local hits' durations from the next operation that is not a
// local hit.
func TestHitDurationsFollowAMeterEnabledLater(t *testing.T) {
	e := newEnv(t)
	m := &switchMeter{}
	s := e.store(t, tiered.Options{Telemetry: telemetry.Options{MeterProvider: m}})
	mustSet(t, s, "x", "v")
	cached(t, e, s, "x", "v")
	before := m.recorded.Load() // the operations so far (Set, the first Get) went through Record with a zero start
	for range 1000 {
		wantGet(t, s, "x", "v")
	}
	if n := m.recorded.Load() - before; n != 0 {
		t.Fatalf("%d hit durations recorded while the meter was disabled", n)
	}
	m.on.Store(true)
	if _, err := s.Get(bg, "absent"); !errors.Is(err, tiered.ErrNotFound) { // a miss: asks the meter
		t.Fatalf("Get(absent) = %v", err)
	}
	before = m.recorded.Load()
	for range 10 {
		wantGet(t, s, "x", "v")
	}
	if n := m.recorded.Load() - before; n != 10 {
		t.Fatalf("%d of 10 hit durations recorded after the meter was enabled and asked", n)
	}
	m.on.Store(false)
	mustSet(t, s, "y", "v") // asks again
	before = m.recorded.Load()
	wantGet(t, s, "x", "v")
	if n := m.recorded.Load() - before; n != 0 {
		t.Fatalf("%d hit durations recorded after the meter was disabled and asked", n)
	}
}
