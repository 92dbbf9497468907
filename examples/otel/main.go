// Command otel runs a sessiontier Store wired to OpenTelemetry: traces,
// metrics and logs (the store's alerts) exported over OTLP/HTTP, and the
// metrics also served for Prometheus on /metrics. alerts.yml beside it
// holds Prometheus alerting rules on those metrics.
//
//	OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 go run . -redis redis://localhost/0 -listen 127.0.0.1:9464
//
// The OTLP exporters read the standard OTEL_EXPORTER_OTLP_* variables.
// If you add go-redis's own instrumentation (redisotel), turn off its
// recording of full commands (redisotel.WithDBStatement(false)): by
// default it exports keys and values, that is session ids and data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func main() {
	redisURL := flag.String("redis", "redis://localhost/0", "Redis URL")
	listen := flag.String("listen", "127.0.0.1:9464", "address of the Prometheus /metrics endpoint")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *redisURL, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "otel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, redisURL, listen string) error {
	p, err := newProviders(ctx, promclient.NewRegistry())
	if err != nil {
		return err
	}
	defer p.shutdown(context.Background())
	client, err := redis.NewClient(redisURL)
	if err != nil {
		return err
	}
	defer client.Close()
	store, err := tiered.New(client, tiered.Options{Telemetry: p.options()})
	if err != nil {
		return err
	}
	defer store.Close()
	srv := &http.Server{Addr: listen, Handler: p.metricsHandler()}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// providers are the OpenTelemetry SDK providers of the example.
type providers struct {
	traces   *sdktrace.TracerProvider
	metrics  *sdkmetric.MeterProvider
	logs     *sdklog.LoggerProvider
	registry *promclient.Registry
}

// newProviders sets up OTLP/HTTP exporters for traces, metrics and logs,
// and a Prometheus exporter registered in registry.
func newProviders(ctx context.Context, registry *promclient.Registry) (*providers, error) {
	traceExp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	metricExp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return nil, err
	}
	logExp, err := otlploghttp.New(ctx)
	if err != nil {
		return nil, err
	}
	prom, err := prometheus.New(prometheus.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	return &providers{
		traces: sdktrace.NewTracerProvider(sdktrace.WithBatcher(traceExp)),
		metrics: sdkmetric.NewMeterProvider(
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp, sdkmetric.WithInterval(10*time.Second))),
			sdkmetric.WithReader(prom)),
		logs:     sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(logExp))),
		registry: registry,
	}, nil
}

// options hands the providers to the store.
func (p *providers) options() telemetry.Options {
	return telemetry.Options{MeterProvider: p.metrics, TracerProvider: p.traces, LoggerProvider: p.logs}
}

func (p *providers) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	return mux
}

// flush pushes everything buffered to the exporters.
func (p *providers) flush(ctx context.Context) error {
	return errors.Join(p.traces.ForceFlush(ctx), p.metrics.ForceFlush(ctx), p.logs.ForceFlush(ctx))
}

func (p *providers) shutdown(ctx context.Context) error {
	return errors.Join(p.traces.Shutdown(ctx), p.metrics.Shutdown(ctx), p.logs.Shutdown(ctx))
}
