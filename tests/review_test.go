package tests

// Adversarial review of the fix of issue 9: each test breaks one of the
// README's guarantees with the current code.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// killListeners closes, server-side, the tracking or subscribing
// connections of the stores (client name sessiontier-invalidation); it
// returns how many it killed.
func killListeners(t *testing.T, e *env) int { t.Helper(); return killListenersOn(t, e.plain) }

// killListenersOn is killListeners on the server plain is a client of.
func killListenersOn(t *testing.T, plain *goredis.Client) int {
	t.Helper()
	killed := 0
	for _, line := range strings.Split(plain.ClientList(bg).Val(), "\n") {
		if strings.Contains(line, "name=sessiontier-invalidation") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := plain.Do(bg, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	return killed
}

// notFoundWithin polls s.Get(id) until it answers ErrNotFound or d has
// passed; it returns false with the last answer if it never did.
func notFoundWithin(s *tiered.Store, id string, d time.Duration) (v []byte, gone bool, err error) {
	deadline := time.Now().Add(d)
	for {
		v, err = s.Get(bg, id)
		if errors.Is(err, tiered.ErrNotFound) {
			return nil, true, err
		}
		if time.Now().After(deadline) {
			return v, false, err
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

// TestKilledStreamIsLostBeforeItReconnects: the README promises that from
// the moment the invalidation stream breaks (a killed connection) the
// store reads Redis instead of its local copies. go-redis's PubSub dials
// the replacement connection (and runs its handshake) inside the very
// Receive call that saw the connection die, before the Listener learns of
// the break: while that dial or handshake is slow (a congested network,
// a Redis under load), the Listener has not called Lost, and the store
// keeps serving as fresh a copy of a session revoked meanwhile. Here the
// proxy holds the new connection's HELLO, as a slow network would.
func TestKilledStreamIsLostBeforeItReconnects(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.NewProxy(t, e.srv.Addr)
	// ReadTimeout bounds the held handshake: long enough for the test.
	viaProxy := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		ReadTimeout: 20 * time.Second})
	t.Cleanup(func() { viaProxy.Close() })
	a, err := tiered.New(viaProxy, tiered.Options{Invalidation: tiered.InvalidationTracking})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	waitStream(t, a)

	if err := e.plain.Set(bg, "session:victim", "logged in", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	cached(t, e, a, "victim", "logged in")

	hold := proxy.Hold([]byte("sessiontier-invalidation")) // the reconnection's HELLO ... SETNAME
	defer hold.Release()                                   // before the store's Close: it waits for the listener
	if n := killListeners(t, e); n != 1 {
		t.Fatalf("killed %d listener connections; want 1", n)
	}
	<-hold.Held() // the listener is reconnecting: the old stream is gone

	// A revocation nobody can tell A about: its stream is down.
	if err := e.plain.Del(bg, "session:victim").Err(); err != nil {
		t.Fatal(err)
	}
	// However long A takes to notice, it must not serve the copy for ever:
	// give it far more than a loopback round trip, far less than the hold.
	if v, gone, err := notFoundWithin(a, "victim", 3*time.Second); !gone {
		t.Fatalf("3s after its tracking connection was killed and the session deleted, A still serves Get = %q, %v (stream %q): the break is not reported until go-redis's reconnection ends",
			v, err, a.Stats().Invalidation)
	}
}

// TestDeleteReplayedByCloseIsAnnounced: in publish mode the stores
// announce their own deletes, including those replayed after an outage
// (README: "Another instance that still reaches Redis keeps serving the
// session until the replay applies the delete"), and an announcement that
// cannot be sent makes the Listener owe the others a flush, "which it
// sends as soon as Redis takes it". Close replays what is pending only
// after closing the Listener: the announcement of the replayed delete runs
// on a context already cancelled (it gets through only if the PUBLISH wins
// the race with context.AfterFunc's goroutine), and when it fails (here one
// PUBLISH fails, as a network blip would) the flush it owes is never sent:
// the repaying goroutine has stopped. The other instance serves the
// logged-out session for its Local.TTL.
func TestDeleteReplayedByCloseIsAnnounced(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.NewProxy(t, e.srv.Addr)
	viaProxy := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	publish := &failPublish{}
	viaProxy.AddHook(publish)
	t.Cleanup(func() { viaProxy.Close() })
	// A's breaker opens at the first failure and does not probe again
	// within the test: only Close replays.
	aOpts := tiered.Options{Invalidation: tiered.InvalidationPublish,
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: time.Hour, MaxOpenTimeout: time.Hour}}
	a, err := tiered.New(viaProxy, aOpts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			a.Close()
		}
	})
	waitStream(t, a)
	b := e.store(t, tiered.Options{Invalidation: tiered.InvalidationPublish, Local: lru.Limits{TTL: time.Hour}})

	mustSet(t, a, "s", "logged in")
	cached(t, e, b, "s", "logged in")
	proxy.Cut()
	if err := a.Delete(bg, "s"); err != nil { // a tombstone
		t.Fatalf("Delete while cut off: %v", err)
	}
	if st := a.Stats(); st.PendingDeletes != 1 {
		t.Fatalf("A's stats %+v; want one pending delete", st)
	}
	proxy.Restore()
	publish.armed.Store(true) // the next PUBLISH fails once; a retry would pass
	closed = true
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := e.plain.Exists(bg, "session:s").Val(); n != 0 {
		t.Fatal("Close did not replay the delete")
	}
	if v, gone, err := notFoundWithin(b, "s", 3*time.Second); !gone {
		t.Fatalf("3s after A's Close replayed the logout, B still serves Get = %q, %v: the replayed delete was never announced, nor the flush owed for it (the failed PUBLISH: %v)", v, err, !publish.armed.Load())
	}
}

// failReads is a go-redis hook that, while armed, fails the pipelines of
// reads (GET or GETRANGE, with PTTL) as a broken connection would.
type failReads struct{ armed atomic.Bool }

func (f *failReads) DialHook(next goredis.DialHook) goredis.DialHook          { return next }
func (f *failReads) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }
func (f *failReads) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if name := cmds[0].Name(); f.armed.Load() && (name == "get" || name == "getrange") {
			err := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("injected failure")}
			for _, cmd := range cmds {
				cmd.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}

// TestOutageUpdateOfOwnWriteIsReplayed: README: a write accepted during an
// outage "is applied ... only if the key still holds what this instance
// last saw"; only "with the local tier off, or its copy evicted" does it
// replay onto an absent key alone. Here the key holds exactly what this
// instance wrote last, and nobody else wrote it, yet the update made
// during the outage conflicts and is lost: the echo of the store's own
// write dropped the local copy, the refill that should have read it again
// failed (one read lost to a flaky network), and the outage write took ""
// (absent) as its base.
func TestOutageUpdateOfOwnWriteIsReplayed(t *testing.T) {
	e := newEnv(t)
	proxy := redistest.NewProxy(t, e.srv.Addr)
	hook := &failReads{}
	viaProxy := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	viaProxy.AddHook(hook)
	t.Cleanup(func() { viaProxy.Close() })
	log := &alertLog{}
	opts := outageOptions(log)
	opts.Breaker.Failures = 5                       // one failed read does not open it
	opts.Invalidation = tiered.InvalidationTracking // the echo of an own write is broadcast mode's
	a, err := tiered.New(viaProxy, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	waitStream(t, a)
	if st := a.Stats(); st.Invalidation != "tracking" {
		t.Fatalf("invalidation mode %q; want tracking", st.Invalidation)
	}

	hook.armed.Store(true) // the refill's read is lost
	mustSet(t, a, "s", "v1")
	// Wait for the echo of the write (and so for the refill it starts): a
	// marker written after it is invalidated after it.
	before := a.Stats().Invalidations
	if err := e.plain.Set(bg, "session:marker", "m", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker's invalidation", func() bool { return a.Stats().Invalidations > before })
	hook.armed.Store(false)

	proxy.Cut()
	mustSet(t, a, "s", "v2") // accepted into the outage tier
	if st := a.Stats(); st.PendingWrites != 1 {
		t.Fatalf("A's stats %+v; want one pending write", st)
	}
	proxy.Restore()
	waitReplayed(t, a)
	if got := e.plain.Get(bg, "session:s").Val(); got != "v2" {
		st := a.Stats()
		t.Fatalf("Redis holds %q after replay (ReplayConflicts %d); want v2: Redis held v1, what A itself wrote last, so the acknowledged outage write must apply",
			got, st.ReplayConflicts)
	}
}

// TestBusyRedisAtStartDoesNotDisableTracking: README: "With a single-node
// client and a Redis that accepts it, each store keeps one connection of
// its own with CLIENT TRACKING"; publish mode, which cannot see changes
// made by other clients, is for where "tracking is refused (an in-process
// Redis, a proxy)". In InvalidationAuto the Listener decides once, and
// takes any reply to its probe for a refusal: a store started while Redis
// answers BUSY (a long script), LOADING or MASTERDOWN stays in publish
// mode for its whole life, blind to every change made by another client,
// although Redis accepts tracking a moment later.
func TestBusyRedisAtStartDoesNotDisableTracking(t *testing.T) {
	e := newEnv(t)
	if err := e.plain.ConfigSet(bg, "busy-reply-threshold", "10").Err(); err != nil {
		t.Fatal(err)
	}
	slow := goredis.NewClient(&goredis.Options{Addr: e.srv.Addr, ReadTimeout: 20 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { slow.Close() })
	script := make(chan error, 1)
	go func() { // a script that keeps Redis busy for 2s
		script <- slow.Eval(bg, `local s = tonumber(redis.call('TIME')[1])
while tonumber(redis.call('TIME')[1]) < s + 2 do end
return 1`, nil).Err()
	}()
	waitFor(t, "Redis to answer BUSY", func() bool {
		err := e.plain.Ping(bg).Err()
		return err != nil && strings.HasPrefix(err.Error(), "BUSY")
	})
	a, err := tiered.New(e.client, tiered.Options{}) // InvalidationAuto
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := <-script; err != nil {
		t.Fatalf("script: %v", err)
	}
	waitStream(t, a)

	if err := e.plain.Set(bg, "session:victim", "logged in", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	cached(t, e, a, "victim", "logged in")
	if err := e.plain.Del(bg, "session:victim").Err(); err != nil {
		t.Fatal(err)
	}
	if v, gone, err := notFoundWithin(a, "victim", 3*time.Second); !gone {
		t.Fatalf("3s after another client deleted the session, A still serves Get = %q, %v: its stream is %q although Redis accepts tracking",
			v, err, a.Stats().Invalidation)
	}
}
