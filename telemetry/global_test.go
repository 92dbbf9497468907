package telemetry

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// A store that uses the global TracerProvider makes no span while none is
// set (each would cost allocations and record nothing), and records them
// once one is set. The check runs in a process of its own: it sets the
// global provider, which no test can unset.
func TestSpansWaitForAGlobalTracerProvider(t *testing.T) {
	if os.Getenv("SESSIONTIER_GLOBAL_TRACER_TEST") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpansWaitForAGlobalTracerProvider$", "-test.v")
		cmd.Env = append(os.Environ(), "SESSIONTIER_GLOBAL_TRACER_TEST=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in its own process: %v\n%s", err, out)
		}
		return
	}
	var tels []*Telemetry
	for _, o := range []Options{{}, Options{}.WithDefaults()} { // as given, and as tiered.New passes it
		tel, err := New(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tel.unset == nil {
			t.Fatalf("the global provider before any is set is %T, not %s: spans would always be made", otel.GetTracerProvider(), globalDelegate)
		}
		ctx := context.Background()
		got, span := tel.Start(ctx, OpSet)
		if got != ctx || span.span != nil {
			t.Fatalf("Start made a span with no provider set")
		}
		span.End(TierRedis, ResultHit, "")
		tels = append(tels, tel)
	}

	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	for _, tel := range tels {
		_, span := tel.Start(context.Background(), OpSet)
		span.End(TierRedis, ResultHit, "")
	}
	if ended := rec.Ended(); len(ended) != 2 || ended[0].Name() != "sessiontier.set" {
		t.Fatalf("after SetTracerProvider, spans ended: %v; want two sessiontier.set", ended)
	}

	// A hit in a traced request gets a span of its own once the store
	// has seen the provider (the Start above): hits do not ask.
	traced, span := otel.Tracer("app").Start(context.Background(), "request")
	defer span.End()
	for _, tel := range tels {
		if _, ok := tel.HitStart(traced); !ok {
			t.Fatal("HitStart does not see the recording span of a traced request")
		}
	}
	late, err := New(Options{}, nil) // made with the provider set
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := late.HitStart(traced); !ok {
		t.Fatal("HitStart of a store made after SetTracerProvider does not see the request's span")
	}
}

// A store given a tracer provider sees a traced request's recording span
// on its hit path (it makes a span of its own for the hit).
func TestHitStartSeesATracedRequest(t *testing.T) {
	tel, err := New(Options{TracerProvider: tracenoop.NewTracerProvider()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	ctx, span := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("app").Start(context.Background(), "request")
	defer span.End()
	if _, traced := tel.HitStart(ctx); !traced {
		t.Fatal("a store given a provider does not see the request's recording span")
	}
	if _, traced := tel.HitStart(context.Background()); traced {
		t.Fatal("HitStart sees a span in a context without one")
	}
}
