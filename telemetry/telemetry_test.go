package telemetry

import (
	"testing"

	"go.opentelemetry.io/otel"
)

func TestWithDefaultsUsesTheGlobalProviders(t *testing.T) {
	o := Options{}.WithDefaults()
	if o.MeterProvider != otel.GetMeterProvider() || o.TracerProvider != otel.GetTracerProvider() || o.LoggerProvider != otel.GetLoggerProvider() {
		t.Fatalf("WithDefaults() = %+v; want the global providers", o)
	}
}
