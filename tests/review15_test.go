package tests

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// failedReplays makes a store built with opts trace its replays, and
// returns how many have ended without draining the outage tier.
func failedReplays(t *testing.T, opts *tiered.Options) func() int {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(bg) })
	opts.Telemetry = telemetry.Options{TracerProvider: tp}
	return func() int {
		n := 0
		for _, s := range rec.Ended() {
			if s.Name() == "sessiontier.replay" && s.Status().Code == codes.Error {
				n++
			}
		}
		return n
	}
}

// TestReview15ManyFailedReplaysDoNotDropTheLastWrite: a flapping Redis
// times out each replay of a session (the replay is held in the network
// past OpTimeout and lands later), and the session is written again after
// each failure. Each write is acknowledged; once Redis answers for good,
// Redis must hold the last one. After 16 such failures the last write no
// longer accepts the value of the replay that failed before it (its bases
// are capped at maxBases): that replay lands, the last write then
// conflicts with it and is dropped, and Redis keeps the older value.
func TestReview15ManyFailedReplaysDoNotDropTheLastWrite(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	proxy := redistest.NewProxy(t, srv.Addr)
	opts := tiered.Options{Breaker: breaker.Settings{Failures: 1, OpenTimeout: 100 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond}}
	failed := failedReplays(t, &opts)
	s := storeAt(t, proxy.Addr, opts)
	if err := s.Set(bg, "victim", []byte("base"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "victim"); err != nil { // held here: the first replay's base
		t.Fatal(err)
	}
	loadReplayScript(t, srv, s)

	srv.Pause()
	if err := s.Set(bg, "tripper", []byte("x"), time.Hour); err != nil { // times out: the breaker opens
		t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
	}
	gen := func(i int) []byte { return fmt.Appendf(nil, "review15-generation-%02d", i) }
	if err := s.Set(bg, "victim", gen(0), time.Hour); err != nil {
		t.Fatal(err)
	}
	const cycles = 16
	hold := proxy.Hold(gen(0))
	defer func() { hold.Release() }()
	srv.Resume()
	for i := 1; i <= cycles; i++ {
		<-hold.Held() // the replay of generation i-1
		waitFor(t, "the held replay to fail", func() bool { return failed() >= i })
		if err := s.Set(bg, "victim", gen(i), time.Hour); err != nil { // queued behind it
			t.Fatalf("Set of generation %d: %v", i, err)
		}
		held := hold
		if i < cycles {
			hold = proxy.Hold(gen(i)) // its replay is held in turn
		}
		held.Release() // the failed replay lands now, before its retry
		waitFor(t, "the failed replay to land", func() bool { return plain.Get(bg, "session:victim").Val() == string(gen(i-1)) })
	}
	waitReplayed(t, s)
	if v := plain.Get(bg, "session:victim").Val(); v != string(gen(cycles)) {
		t.Fatalf("Redis holds %q after the replay; want the last acknowledged write, %q", v, gen(cycles))
	}
	if v, err := s.Get(bg, "victim"); err != nil || string(v) != string(gen(cycles)) {
		t.Fatalf("Get after the replay = %q, %v; want %q", v, err, gen(cycles))
	}
}

// TestReview15DeleteAfterAFailedReplayStaysDeleted: a session created
// during an outage is replayed, but the replay is held in the network past
// OpTimeout (its outcome is unknown: it may land yet). The breaker stays
// closed (one failure of two), and the session's pending write is evicted
// from the full outage tier (alerted as lost). The user then logs out:
// Delete, which finds no outage state for the id and goes straight to
// Redis, succeeds. The held replay then lands: its bases accept an absent
// key, so it creates the session again, and the deleted session is served.
func TestReview15DeleteAfterAFailedReplayStaysDeleted(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	proxy := redistest.NewProxy(t, srv.Addr)
	opts := tiered.Options{
		// One failed replay leaves the breaker closed; its retry comes a
		// second later, the window in which the held replay lands.
		Breaker:  breaker.Settings{Failures: 2, OpenTimeout: time.Second, MaxOpenTimeout: time.Second},
		Fallback: lru.Limits{MaxEntries: 100, MaxBytes: 4096},
	}
	failed := failedReplays(t, &opts)
	s := storeAt(t, proxy.Addr, opts)
	loadReplayScript(t, srv, s)

	srv.Pause()
	if err := s.Set(bg, "filler", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	const value = "review15-revoked-session"
	if err := s.Set(bg, "victim", []byte(value), time.Hour); err != nil { // a new session, accepted during the outage
		t.Fatal(err)
	}
	hold := proxy.Hold([]byte(value)) // its replay
	defer hold.Release()
	srv.Resume()
	<-hold.Held()
	waitFor(t, "the held replay to fail", func() bool { return failed() >= 1 })
	if st := s.Stats(); st.Breaker != "closed" {
		t.Fatalf("breaker %s after one failed replay; want closed (the test's premise)", st.Breaker)
	}
	// filler grows: the outage tier evicts victim's pending write.
	if err := s.Set(bg, "filler", make([]byte, 3500), time.Hour); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.PendingWrites != 1 {
		t.Fatalf("%d pending writes; want 1: victim's evicted (the test's premise)", st.PendingWrites)
	}
	if err := s.Delete(bg, "victim"); err != nil { // logout
		t.Fatal(err)
	}
	hold.Release() // the failed replay lands now
	waitReplayed(t, s)
	if v, err := plain.Get(bg, "session:victim").Result(); err == nil {
		t.Fatalf("Redis holds %q for a session deleted after its replay failed", v)
	}
	if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of a deleted session = %q, %v; want ErrNotFound", v, err)
	}
}
