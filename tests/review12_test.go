package tests

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// trackedViaProxy returns a store in tracking mode whose connections all go
// through a proxy in front of srv, with a long OpTimeout so that a held
// write still gets its reply in time.
func trackedViaProxy(t *testing.T, srv *redistest.Server, m mode) (*tiered.Store, *redistest.Proxy) {
	t.Helper()
	proxy := redistest.NewProxy(t, srv.Addr)
	return storeAt(t, proxy.Addr, tiered.Options{Invalidation: m.opt, OpTimeout: 2 * time.Second}), proxy
}

// storeAt returns a store with opts on a client of its own to addr (a
// proxy's), once its invalidation stream is up; both close with t.
func storeAt(t *testing.T, addr string, opts tiered.Options) *tiered.Store {
	t.Helper()
	client := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	return storeOn(t, client, opts)
}

// storeOn is a store on client with opts, closed when t ends, once its
// invalidation stream is set up.
func storeOn(t *testing.T, client goredis.UniversalClient, opts tiered.Options) *tiered.Store {
	t.Helper()
	s, err := tiered.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitStream(t, s)
	return s
}

// proxiedStore starts a server, a proxy to it (to cut the store off) and a
// store behind the proxy with opts, and returns the three.
func proxiedStore(t *testing.T, opts tiered.Options) (*redistest.Server, *redistest.Proxy, *tiered.Store) {
	t.Helper()
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	return srv, proxy, storeAt(t, proxy.Addr, opts)
}

// cancelWhileHeld runs op, holds in the proxy the traffic holding match
// (op's command), cancels op's context while it is held, and checks that
// op then failed. The caller releases the hold (cleanup does too).
func cancelWhileHeld(t *testing.T, proxy *redistest.Proxy, match []byte, what string, op func(context.Context) error) *redistest.Hold {
	t.Helper()
	hold := proxy.Hold(match)
	t.Cleanup(hold.Release)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	<-hold.Held()
	cancel()
	if err := <-done; err == nil {
		t.Fatalf("%s cancelled while its command was held returned nil", what)
	}
	return hold
}

// TestCancelledTrackedWriteLandingLateIsNotHidden: a caller cancels its
// Set (an HTTP client went away) while the SET is on its way on the
// tracking connection; a read then fills the local copy from Redis, which
// still holds the old value; then the SET lands and its OK comes back
// within OpTimeout. NOLOOP sends no invalidation for it, and its applied
// hook did not run: the store must not keep serving the old value as fresh.
func TestCancelledTrackedWriteLandingLateIsNotHidden(t *testing.T) {
	forModes(t, cancelledTrackedWriteLandingLateIsNotHidden)
}

func cancelledTrackedWriteLandingLateIsNotHidden(t *testing.T, m mode) {
	srv := redistest.Start(t)
	plain := srv.Client()
	s, proxy := trackedViaProxy(t, srv, m)
	mustSet(t, s, "late", "old")
	wantGet(t, s, "late", "old") // held

	const value = "new-value-held-in-the-network"
	hold := cancelWhileHeld(t, proxy, []byte(value), "Set", func(ctx context.Context) error {
		return s.Set(ctx, "late", []byte(value), time.Hour)
	})
	if m.opt == tiered.InvalidationTracking {
		// A read of Redis: the SET has not landed. (In per-key mode reads
		// go on the tracking connection too, behind the held SET: no read
		// can see Redis before it.)
		wantGet(t, s, "late", "old")
	}
	hold.Release()
	waitFor(t, "the held SET to land", func() bool { return plain.Get(bg, "session:late").Val() == value })
	mustSet(t, s, "other", "x") // its OK follows the SET's on the same connection
	if v, err := s.Get(bg, "late"); err != nil || string(v) != value {
		t.Fatalf("Get after the cancelled SET landed = %q, %v; Redis holds %q", v, err, value)
	}
}

// TestCancelledTrackedDeleteLandingLateIsNotHidden: the same with a
// Delete: a session deleted in Redis must not stay readable here.
func TestCancelledTrackedDeleteLandingLateIsNotHidden(t *testing.T) {
	forModes(t, cancelledTrackedDeleteLandingLateIsNotHidden)
}

func cancelledTrackedDeleteLandingLateIsNotHidden(t *testing.T, m mode) {
	srv := redistest.Start(t)
	plain := srv.Client()
	s, proxy := trackedViaProxy(t, srv, m)
	mustSet(t, s, "gone-late", "alive")
	wantGet(t, s, "gone-late", "alive") // held

	hold := cancelWhileHeld(t, proxy, []byte("session:gone-late"), "Delete", func(ctx context.Context) error {
		return s.Delete(ctx, "gone-late")
	})
	if m.opt == tiered.InvalidationTracking { // see above
		wantGet(t, s, "gone-late", "alive")
	}
	hold.Release()
	waitFor(t, "the held DEL to land", func() bool { return plain.Exists(bg, "session:gone-late").Val() == 0 })
	mustSet(t, s, "other", "x") // its OK follows the DEL's on the same connection
	if v, err := s.Get(bg, "gone-late"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after the cancelled DEL landed = %q, %v; want ErrNotFound", v, err)
	}
}
