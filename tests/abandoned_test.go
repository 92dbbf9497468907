package tests

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// A write whose caller gave up after it was sent may still land. Store C
// (behind a proxy) sets a session, its caller cancels while the SET is
// held in the network, and store A then sets the session: both hold A's
// value. The held SET lands after A's. Redis now holds C's value, and
// neither may serve A's more than invalidDelay later, as for any change
// made elsewhere. In publish mode nothing told A (C had announced its
// failed write at once, before it landed: found by TestRandomFaults), nor
// C's copy.

// abandonedStores returns a Redis, store C behind a proxy with opts, and
// store A on Redis directly, in mode m, and sets id to "a0" through A.
func abandonedStores(t *testing.T, m mode, opts tiered.Options) (srv *redistest.Server, proxy *redistest.Proxy, a, c *tiered.Store) {
	t.Helper()
	srv = redistest.Start(t)
	proxy = redistest.NewProxy(t, srv.Addr)
	opts.Invalidation = m.opt
	c = storeAt(t, proxy.Addr, opts)
	a = storeAt(t, srv.Addr, tiered.Options{Invalidation: m.opt})
	if err := a.Set(bg, "victim", []byte("a0"), time.Hour); err != nil {
		t.Fatal(err)
	}
	return srv, proxy, a, c
}

// fastFence are the options of a store C that gives up on a held write
// soon, and fences soon after.
func fastFence() tiered.Options {
	return tiered.Options{
		OpTimeout: 200 * time.Millisecond,
		Breaker:   breaker.Settings{OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	}
}

// holdCancelled sets "victim" to value through s, behind proxy, with a
// context cancelled once the proxy holds the SET, and returns the Hold,
// released when t ends.
func holdCancelled(t *testing.T, proxy *redistest.Proxy, s *tiered.Store, value string) *redistest.Hold {
	t.Helper()
	hold := proxy.Hold([]byte(value))
	t.Cleanup(hold.Release)
	setCancelled(t, s, hold, "victim", value)
	return hold
}

// setCancelled sets id to value through s with a context cancelled once
// hold holds the SET, and checks that the caller was told it failed.
func setCancelled(t *testing.T, s *tiered.Store, hold *redistest.Hold, id, value string) {
	t.Helper()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Set(ctx, id, []byte(value), time.Hour) }()
	<-hold.Held()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Set whose caller gave up: %v, want context.Canceled", err)
	}
}

// servesWhatRedisHolds waits until Redis holds want for id, then until
// each store serves it, failing if that takes longer than invalidDelay.
func servesWhatRedisHolds(t *testing.T, srv *redistest.Server, id, want string, stores map[string]*tiered.Store) {
	t.Helper()
	plain := srv.Client()
	waitFor(t, "the late SET to land", func() bool {
		v, _ := plain.Get(bg, "session:"+id).Result()
		return v == want
	})
	deadline := time.Now().Add(invalidDelay)
	for name, s := range stores {
		for {
			v, err := s.Get(bg, id)
			if err == nil && string(v) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s serves %q (%v) %v after Redis took %q, which landed late: it was never told", name, v, err, invalidDelay, want)
			}
			time.Sleep(2 * time.Millisecond) // polling a condition
		}
	}
}

// holdA2 sets id to "a2" through a, and has the stores hold it.
func holdA2(t *testing.T, a *tiered.Store, stores map[string]*tiered.Store) {
	t.Helper()
	if err := a.Set(bg, "victim", []byte("a2"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		waitFor(t, name+" to serve a2", func() bool {
			v, err := s.Get(bg, "victim")
			return err == nil && string(v) == "a2"
		})
	}
}

// TestCancelledWriteThatLandsLateIsAnnounced: the held SET is released
// before C's OpTimeout, so C's lane reads its reply.
func TestCancelledWriteThatLandsLateIsAnnounced(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, a, c := abandonedStores(t, m, tiered.Options{OpTimeout: time.Second})
			hold := holdCancelled(t, proxy, c, "c1-late")
			stores := map[string]*tiered.Store{"A": a, "C": c}
			if m.opt == tiered.InvalidationPerKey {
				// C's reads would wait behind the held SET on its
				// connection, and give it up.
				delete(stores, "C")
			}
			holdA2(t, a, stores)
			hold.Release()
			servesWhatRedisHolds(t, srv, "victim", "c1-late", map[string]*tiered.Store{"A": a, "C": c})
		})
	}
}

// TestCancelledWriteInDoubtIsAnnouncedAfterTheFence: C gives up on the
// connection of the held SET at OpTimeout, so whether it lands is not
// known until C fences its connections. The SET lands while C's first
// Fence is held too; once a Fence has ended, C must announce the session
// (in tracking mode Redis announces the landing itself).
func TestCancelledWriteInDoubtIsAnnouncedAfterTheFence(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, a, c := abandonedStores(t, m, fastFence())
			hold := holdCancelled(t, proxy, c, "c1-doubt")
			fence := proxy.Hold([]byte("\r\nLIST\r\n")) // C's Fence: CLIENT LIST
			defer fence.Release()
			holdA2(t, a, map[string]*tiered.Store{"A": a, "C": c})
			<-hold.Ended() // C gave up on the connection
			select {
			case <-fence.Held():
			case <-time.After(10 * time.Second):
				t.Fatal("C never fenced its connections after giving up on a SET whose caller had gone")
			}
			hold.Release() // lands before any Fence could close its connection
			servesWhatRedisHolds(t, srv, "victim", "c1-doubt", map[string]*tiered.Store{"A": a, "C": c})
		})
	}
}
