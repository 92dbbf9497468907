// Package tests holds sessiontier's integration tests: Store against real
// redis-server processes started by internal/redistest.
package tests

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

// TestMain silences go-redis's own log of failed dials, which the outage
// tests cause on purpose, and checks that no goroutine outlives the tests.
func TestMain(m *testing.M) {
	goredis.SetLogger(&logging.VoidLogger{})
	goleak.VerifyTestMain(m)
}

// counter is a go-redis hook that counts the data commands sent on the
// env's client (not the handshake of a new connection), and can hold the
// replies of pipelines (GET or GETRANGE, and PTTL) until released. A store
// sends its writes on a client of its own, which the hook does not see:
// count them with redisCalls.
type counter struct {
	cmds atomic.Int64

	mu   sync.Mutex    // guards hold
	hold chan struct{} // non-nil: pipelines wait for it to close
	held chan struct{} // receives one value per pipeline that waits
}

func (c *counter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (c *counter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		err := next(ctx, cmds)
		c.mu.Lock()
		hold, held := c.hold, c.held
		c.mu.Unlock()
		if name := cmds[0].Name(); hold != nil && (name == "get" || name == "getrange") { // not a connection's handshake
			held <- struct{}{}
			<-hold
		}
		return err
	}
}

func (c *counter) add(cmd goredis.Cmder) {
	switch cmd.Name() {
	case "hello", "client", "ping", "auth", "select":
	default:
		c.cmds.Add(1)
	}
}

// holdPipelines makes every later pipeline, once Redis answered it, wait
// until release is called.
func (c *counter) holdPipelines() (held <-chan struct{}, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.held = make(chan struct{}), make(chan struct{}, 1024)
	hold := c.hold
	return c.held, func() {
		c.mu.Lock()
		c.hold = nil
		c.mu.Unlock()
		close(hold)
	}
}

// env is a Redis server, a client of it counting its commands, and a plain
// client for checking what Redis holds.
type env struct {
	srv    *redistest.Server
	client *goredis.Client
	count  *counter
	plain  *goredis.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := redistest.Start(t)
	return newEnvOn(t, srv)
}

func newEnvOn(t *testing.T, srv *redistest.Server) *env {
	t.Helper()
	e := &env{srv: srv, count: &counter{}, plain: srv.Client()}
	e.client = goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	e.client.AddHook(e.count)
	t.Cleanup(func() { e.client.Close() })
	return e
}

func (e *env) store(t *testing.T, opts tiered.Options) *tiered.Store {
	t.Helper()
	s, err := tiered.New(e.client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitStream(t, s)
	return s
}

// waitStream waits until the store's invalidation stream is confirmed:
// before that, the local tier is bypassed.
func waitStream(t *testing.T, s *tiered.Store) {
	t.Helper()
	waitFor(t, "the invalidation stream", func() bool { return s.Stats().Invalidation != "connecting" })
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition
	}
}

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// redisCalls makes a store built with opts trace its Redis calls, and
// returns how many it has started so far, on whichever client they run
// (the caller's, or the store's own write client), leaving out the
// breaker's probes (PING).
func redisCalls(t *testing.T, opts *tiered.Options) func() int {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(bg) })
	opts.Telemetry.TracerProvider = tp
	return func() int {
		n := 0
		for _, s := range rec.Started() {
			if s.SpanKind() == trace.SpanKindClient && s.Name() != "PING" {
				n++
			}
		}
		return n
	}
}

// mode is an invalidation mode the coherence tests run in.
type mode struct {
	name   string // the subtest's name
	opt    tiered.Invalidation
	stream string // Stats.Invalidation once the stream is up
}

// trackingModes are the two tracking modes: every coherence test runs in
// both (forModes).
var trackingModes = []mode{
	{"broadcast", tiered.InvalidationTracking, "tracking"},
	{"per-key", tiered.InvalidationPerKey, "per-key"},
}

// forModes runs f as a subtest in each tracking mode.
func forModes(t *testing.T, f func(t *testing.T, m mode)) {
	for _, m := range trackingModes {
		t.Run(m.name, func(t *testing.T) { f(t, m) })
	}
}

// reads returns how many reads of a value (GET, GETRANGE) Redis has
// served, on any connection: a store's own tracking connection included,
// which the env's counter does not see.
func (e *env) reads(t *testing.T) int64 {
	t.Helper()
	info, err := e.plain.Info(bg, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_get:calls=", "cmdstat_getrange:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				calls, _, _ := strings.Cut(rest, ",")
				v, err := strconv.ParseInt(calls, 10, 64)
				if err != nil {
					t.Fatalf("INFO commandstats: %q", line)
				}
				n += v
			}
		}
	}
	return n
}
