package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReplayThatTimedOutButLandedDoesNotUndoANewerWrite: a write accepted
// during an outage is replayed once Redis answers, but the replay is held
// in the network past OpTimeout, so its outcome is unknown; meanwhile the
// session is written again (queued behind the pending write). The held
// replay then reaches Redis and lands. When the replay is retried, the
// newer write must replace the value the failed replay may have left: it
// was acknowledged, and Redis must end with it, not with the older one.
func TestReplayThatTimedOutButLandedDoesNotUndoANewerWrite(t *testing.T) {
	srv, proxy, s := proxiedStore(t, tiered.Options{
		// A wide gap between the failed replay and its retry, for the held
		// replay to land in.
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: 300 * time.Millisecond, MaxOpenTimeout: time.Second},
	})
	plain := srv.Client()
	if err := s.Set(bg, "victim", []byte("base"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg, "victim"); err != nil { // held here: the replay's base
		t.Fatal(err)
	}
	loadReplayScript(t, srv, s)

	srv.Pause()
	if err := s.Set(bg, "tripper", []byte("x"), time.Hour); err != nil { // times out: the breaker opens
		t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
	}
	if st := s.Stats(); st.Breaker != "open" {
		t.Fatalf("breaker %s after a timeout; want open", st.Breaker)
	}
	if err := s.Set(bg, "victim", []byte("first-pending"), time.Hour); err != nil {
		t.Fatal(err)
	}
	const old = "older-value-replayed-late"
	if err := s.Set(bg, "victim", []byte(old), time.Hour); err != nil { // queued behind it, never sent
		t.Fatal(err)
	}

	hold := proxy.Hold([]byte(old)) // the replay of old
	defer hold.Release()
	srv.Resume()
	<-hold.Held()
	if err := s.Set(bg, "victim", []byte("newest"), time.Hour); err != nil { // queued behind old
		t.Fatalf("Set during the replay: %v", err)
	}
	waitFor(t, "the held replay to time out", func() bool { return s.Stats().Breaker == "open" })
	hold.Release() // the replay of old lands now, before its retry
	waitFor(t, "the held replay to land", func() bool {
		list, err := plain.ClientList(bg).Result()
		return err == nil && !strings.Contains(list, " addr="+hold.Addr()+" ")
	})
	if v := plain.Get(bg, "session:victim").Val(); v != old {
		t.Fatalf("Redis holds %q once the held replay arrived; want %q (the test's premise)", v, old)
	}

	waitReplayed(t, s)
	if v := plain.Get(bg, "session:victim").Val(); v != "newest" {
		t.Fatalf("Redis holds %q after the replay; want the last acknowledged write, %q", v, "newest")
	}
	if v, err := s.Get(bg, "victim"); err != nil || string(v) != "newest" {
		t.Fatalf("Get after the replay = %q, %v; want newest", v, err)
	}
}

// loadReplayScript runs a first outage and its replay, so that Redis has
// the replay's script: a replay held in the network then runs when it
// arrives (EVALSHA), rather than failing with NOSCRIPT.
func loadReplayScript(t *testing.T, srv *redistest.Server, s *tiered.Store) {
	t.Helper()
	srv.Pause()
	if err := s.Set(bg, "warm", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Resume()
	waitReplayed(t, s)
}
