package tests

// Regression tests of issue 9: each reproduces one way the README's
// guarantees broke under adversarial conditions.

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestFailedWriteDoesNotHideARevocation (item 1): a write Redis refused
// (OOM) sends no invalidation back; the next invalidation of the id, a
// revocation by another client, must still drop the copy read meanwhile.
func TestFailedWriteDoesNotHideARevocation(t *testing.T) {
	forModes(t, failedWriteDoesNotHideARevocation)
}

func failedWriteDoesNotHideARevocation(t *testing.T, m mode) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: m.opt})
	mustSet(t, s, "victim", "v0")
	settled(t, e, s, "victim", "v0")
	if err := e.plain.ConfigSet(bg, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(bg, "victim", []byte("v1"), time.Hour); err == nil {
		t.Fatal("Set succeeded past maxmemory")
	}
	if err := e.plain.ConfigSet(bg, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	cached(t, e, s, "victim", "v0")
	e.plain.Del(bg, "session:victim")
	waitGone(t, s, "victim")
}

// TestMergedEchoesDoNotHideARevocation (item 1): Redis merges the changes
// of one key made in one event-loop turn into one invalidation, so two
// writes of this store can come back as one echo; whatever is left
// expected must not swallow a later revocation.
func TestMergedEchoesDoNotHideARevocation(t *testing.T) {
	forModes(t, mergedEchoesDoNotHideARevocation)
}

func mergedEchoesDoNotHideARevocation(t *testing.T, m mode) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: m.opt, OpTimeout: 5 * time.Second})
	mustSet(t, s, "victim", "v0")
	settled(t, e, s, "victim", "v0")
	// Two connections open: writes made while Redis sleeps need one each.
	var warm sync.WaitGroup
	warm.Add(3)
	go func() { defer warm.Done(); e.plain.Do(bg, "DEBUG", "SLEEP", "0.2") }()
	for _, id := range []string{"warm1", "warm2"} {
		go func() { defer warm.Done(); mustSet(t, s, id, "w") }()
	}
	warm.Wait()
	e.srv.Pause()
	var wg sync.WaitGroup
	for _, v := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Set(bg, "victim", []byte(v), time.Hour); err != nil {
				t.Errorf("Set(%s): %v", v, err)
			}
		}()
	}
	// Both writes wait on the frozen server, which answers nothing that
	// could be polled: give them time to reach its socket.
	time.Sleep(100 * time.Millisecond)
	e.srv.Resume()
	wg.Wait()
	final, err := e.plain.Get(bg, "session:victim").Result()
	if err != nil {
		t.Fatal(err)
	}
	cached(t, e, s, "victim", final)
	e.plain.Del(bg, "session:victim")
	waitGone(t, s, "victim")
}

// TestFillReadBeforeFlushIsNotServed (item 2): a read of Redis that
// started before a FLUSHDB and ends after it must not fill the local tier.
// (Broadcast mode: the env holds reads made on the client's connections.
// In per-key mode the read's reply and the flush come in order on one
// connection.)
func TestFillReadBeforeFlushIsNotServed(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationTracking})
	e.plain.Set(bg, "session:x", "v0", time.Hour)
	held, release := e.count.holdPipelines()
	got := make(chan error, 1)
	go func() {
		_, err := s.Get(bg, "x")
		got <- err
	}()
	<-held // Redis answered with v0; the fill waits
	before := s.Stats().Invalidations
	if err := e.plain.FlushDB(bg).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flush to reach the store", func() bool { return s.Stats().Invalidations > before })
	release()
	if err := <-got; err != nil {
		t.Fatalf("the read in flight: %v", err)
	}
	if v, err := s.Get(bg, "x"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("after FLUSHDB Get = %q, %v; want ErrNotFound, not the copy read before", v, err)
	}
}

// TestCloseWaitsForAnOutageWrite (item 9): a Set that is past Close's
// check when Close starts is replayed by Close, or reported by it; never
// acknowledged and dropped.
func TestCloseWaitsForAnOutageWrite(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	opts := outageOptions(log)
	opts.OpTimeout, opts.CloseTimeout = time.Second, 200*time.Millisecond
	s, err := tiered.New(e.client, opts)
	if err != nil {
		t.Fatal(err)
	}
	waitStream(t, s)
	e.srv.Pause()
	setErr := make(chan error, 1)
	go func() { setErr <- s.Set(bg, "late", []byte("v"), time.Hour) }()
	// The Set waits on the frozen server until OpTimeout: nothing to poll.
	time.Sleep(100 * time.Millisecond)
	closeErr := s.Close()
	err = <-setErr
	e.srv.Resume()
	if err != nil {
		return // not acknowledged: nothing to keep
	}
	st := s.Stats()
	switch {
	case errors.Is(closeErr, tiered.ErrPendingLost):
		if n, _ := log.total(telemetry.AlertPendingLost); n == 0 || st.PendingLost == 0 {
			t.Fatalf("Close reported the write lost without counting or alerting it: %+v", st)
		}
	case st.PendingWrites > 0:
		t.Fatalf("Close = %v, yet the acknowledged write is still pending: accepted after the final replay, lost silently", closeErr)
	}
}

// publishPair is two stores in publish mode on one Redis: a reaches it
// through client (the caller's choice), b directly.
func publishPair(t *testing.T, e *env, client *goredis.Client, aOpts tiered.Options) (a, b *tiered.Store) {
	t.Helper()
	aOpts.Invalidation = tiered.InvalidationPublish
	a, err := tiered.New(client, aOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	waitStream(t, a)
	return a, e.store(t, tiered.Options{Invalidation: tiered.InvalidationPublish})
}

// TestReplayedWritesAreAnnounced (item 13): in publish mode, a write
// replayed after an outage is announced like any other.
func TestReplayedWritesAreAnnounced(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.NewProxy(t, e.srv.Addr)
	viaProxy := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { viaProxy.Close() })
	a, b := publishPair(t, e, viaProxy, outageOptions(&alertLog{}))
	mustSet(t, a, "s", "v0")
	cached(t, e, b, "s", "v0")
	proxy.Cut()
	mustSet(t, a, "s", "v1") // accepted into the outage tier
	proxy.Restore()
	waitReplayed(t, a)
	waitValue(t, b, "s", "v1")
}

// TestStoreWithoutLocalTierAnnounces (item 14): a store with no local tier
// of its own still tells the others what it deleted.
func TestStoreWithoutLocalTierAnnounces(t *testing.T) {
	e := newEnv(t)
	a, b := publishPair(t, e, e.client, tiered.Options{Local: lru.Limits{MaxEntries: -1}})
	mustSet(t, a, "s", "v0")
	cached(t, e, b, "s", "v0")
	if err := a.Delete(bg, "s"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, b, "s")
}

// failPublish is a go-redis hook that fails PUBLISH once armed, as a
// network error would.
type failPublish struct{ armed atomic.Bool }

func (f *failPublish) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (f *failPublish) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}
func (f *failPublish) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if cmd.Name() == "publish" && f.armed.CompareAndSwap(true, false) {
			err := &net.OpError{Op: "write", Net: "tcp", Err: errors.New("injected failure")}
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

// TestFailedAnnouncementIsRepaid (item 15): an announcement that cannot
// be sent is not forgotten: the other instances are told to revalidate.
func TestFailedAnnouncementIsRepaid(t *testing.T) {
	e := newEnv(t)
	hook := &failPublish{}
	client := goredis.NewClient(&goredis.Options{Addr: e.srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	client.AddHook(hook)
	t.Cleanup(func() { client.Close() })
	log := &alertLog{}
	a, b := publishPair(t, e, client, tiered.Options{Telemetry: telemetry.Options{OnAlert: log.hook}})
	mustSet(t, a, "s", "v0")
	cached(t, e, b, "s", "v0")
	hook.armed.Store(true)
	if err := a.Delete(bg, "s"); err != nil {
		t.Fatal(err)
	}
	if hook.armed.Load() {
		t.Fatal("the delete published nothing")
	}
	waitGone(t, b, "s")
	if n, _ := log.total(telemetry.AlertInvalidationLost); n == 0 {
		t.Fatal("the failed announcement raised no alert")
	}
}

// TestStatsWhileNewRuns (item 18): the metrics callback may call Stats
// while New is still building the store.
func TestStatsWhileNewRuns(t *testing.T) {
	e := newEnv(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(bg) })
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var rm metricdata.ResourceMetrics
			reader.Collect(bg, &rm)
		}
	}()
	for range 20 {
		s, err := tiered.New(e.client, tiered.Options{Telemetry: telemetry.Options{MeterProvider: mp}})
		if err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Invalidation == "" {
			t.Fatal("Stats has no invalidation state")
		}
		s.Close()
	}
	close(stop)
	<-done
}

// TestOutageWriteTooLargeChangesNothing (item 7): during an outage, a Set
// the outage tier cannot keep returns ErrUnavailable; the value served is
// still the write accepted before it, which is still replayed, and nothing
// is counted lost.
func TestOutageWriteTooLargeChangesNothing(t *testing.T) {
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.Fallback = lru.Limits{MaxEntries: 100, MaxBytes: 64 << 10}
	s := e.store(t, opts)
	e.srv.Kill()
	openBreaker(t, s)
	mustSet(t, s, "id", "small")
	if err := s.Set(bg, "id", make([]byte, 100<<10), time.Hour); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Set too large for the outage tier = %v; want ErrUnavailable", err)
	}
	if v, err := s.Get(bg, "id"); err != nil || string(v) != "small" {
		t.Fatalf("Get after the refused write = %d bytes, %v; want the accepted write", len(v), err)
	}
	if st := s.Stats(); st.PendingLost != 0 || st.PendingWrites != 1 {
		t.Fatalf("after a refused write: %+v; want the earlier write pending, nothing lost", st)
	}
	e.srv.Restart()
	waitReplayed(t, s)
	if v, err := e.plain.Get(bg, "session:id").Result(); err != nil || v != "small" {
		t.Fatalf("Redis holds %q, %v after replay; want the accepted write", v, err)
	}
}

// TestTouchDoesNotKeepAStaleCopyFresh (item 5): without invalidation, a
// copy is served for at most Local.TTL after it was read; touching it
// extends its expiry, not that.
func TestTouchDoesNotKeepAStaleCopyFresh(t *testing.T) {
	e := newEnv(t)
	clock := tiertest.NewClock()
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationOff, Local: lru.Limits{TTL: time.Minute}, Clock: clock.Now})
	mustSet(t, s, "id", "v0")
	wantGet(t, s, "id", "v0")
	e.plain.Set(bg, "session:id", "v1", time.Hour) // another client; nobody is told
	clock.Advance(50 * time.Second)
	if err := s.Touch(bg, "id", time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Second)
	wantGet(t, s, "id", "v1")
}

// TestTouchDoesNotReviveAnExpiredOutageWrite (item 4): a write accepted
// during an outage expires as it would in Redis; a later Touch does not
// bring it back.
func TestTouchDoesNotReviveAnExpiredOutageWrite(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, outageOptions(&alertLog{}))
	e.srv.Kill()
	openBreaker(t, s)
	if err := s.Set(bg, "id", []byte("v"), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the outage write to expire", func() bool {
		_, err := s.Get(bg, "id")
		return errors.Is(err, tiered.ErrNotFound)
	})
	if err := s.Touch(bg, "id", time.Hour); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Touch of an expired outage write = %v; want ErrNotFound", err)
	}
	if v, err := s.Get(bg, "id"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("after Touch Get = %q, %v; want the expired write to stay expired", v, err)
	}
}
