package tests

// Adversarial review of per-key tracking (issue 12): each test shows a way
// a store in InvalidationPerKey served a session as a local hit after
// Redis changed or dropped it, long after the change could have been told.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview13TrackingTableOverflow: Redis bounds its tracking table
// (tracking-table-max-keys) and drops keys from it, with an invalidation,
// when a command finds it over the bound. With NOLOOP, Redis sends none to
// the connection whose command did that (it takes it for the client's own
// change): a store's own reads and writes, which go on its tracking
// connection, silently end the tracking of the sessions it holds, and a
// later change of them by another client is never told.
func TestReview13TrackingTableOverflow(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationPerKey})
	must(t, e.plain.ConfigSet(bg, "tracking-table-max-keys", "10").Err())
	const n = 30
	want := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		e.plain.Set(bg, "session:"+id, "v1", time.Hour)
		cached(t, e, s, id, "v1")
	}
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		e.plain.Set(bg, "session:"+id, "v2", time.Hour)
		want[id] = "v2"
	}
	if stale := staleHits(t, s, want, 2*time.Second); len(stale) > 0 {
		t.Fatalf("2s after another client changed them, %d of %d sessions still read their old copy: %v", len(stale), n, stale)
	}
}

// TestReview13EvictionByOwnWrite: under maxmemory, Redis evicts keys
// before running a command that finds memory over the limit. With NOLOOP,
// an eviction made before a command of the store's own tracking
// connection (here its Sets of other sessions) is not told to that
// connection: the evicted sessions stay local hits.
func TestReview13EvictionByOwnWrite(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationPerKey})
	const n = 40
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		e.plain.Set(bg, "session:"+id, "v1", time.Hour)
		cached(t, e, s, id, "v1")
	}
	must(t, e.plain.ConfigSet(bg, "maxmemory-policy", "allkeys-random").Err())
	must(t, e.plain.ConfigSet(bg, "maxmemory", fmt.Sprint(usedMemory(t, e)+400<<10)).Err())
	big := make([]byte, 100<<10)
	for i := range 20 {
		if err := s.Set(bg, fmt.Sprintf("filler%d", i), big, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	gone := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		if e.plain.Exists(bg, "session:"+id).Val() == 0 {
			gone[id] = "" // staleHits: not found
		}
	}
	if len(gone) == 0 {
		t.Fatal("Redis evicted no session the store holds: the test proved nothing")
	}
	if stale := staleHits(t, s, gone, 2*time.Second); len(stale) > 0 {
		t.Fatalf("2s after Redis evicted them, %d of %d evicted sessions are still served: %v", len(stale), len(gone), stale)
	}
}

// TestReview13WriteReplayedAfterReadOnlyIsNotTrusted: a Set that Redis
// refuses with READONLY (a master demoted by a failover, the address
// unchanged) is accepted into the outage tier and into the local tier,
// while the tracking connection stays up and the breaker closed; the
// replay writes it on the caller's client. Nothing had Redis track the key
// for this store, yet the copy is a fresh local hit once the outage tier
// is drained, and another client's change is never told.
func TestReview13WriteReplayedAfterReadOnlyIsNotTrusted(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationPerKey,
		Breaker: breaker.Settings{OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond}})
	must(t, e.plain.Do(bg, "REPLICAOF", "127.0.0.1", strconv.Itoa(closedPort(t))).Err())
	defer e.plain.Do(bg, "REPLICAOF", "NO", "ONE")
	if err := s.Set(bg, "x", []byte("mine"), time.Hour); err != nil {
		t.Fatalf("Set refused with READONLY: %v; want it accepted for replay", err)
	}
	if st := s.Stats(); st.PendingWrites != 1 {
		t.Fatalf("%+v; want the write pending", st)
	}
	must(t, e.plain.Do(bg, "REPLICAOF", "NO", "ONE").Err())
	waitReplayed(t, s)
	if v := e.plain.Get(bg, "session:x").Val(); v != "mine" {
		t.Fatalf("Redis holds %q after the replay; want mine", v)
	}
	e.plain.Set(bg, "session:x", "theirs", time.Hour)
	if stale := staleHits(t, s, map[string]string{"x": "theirs"}, 2*time.Second); len(stale) > 0 {
		t.Fatalf("2s after another client changed a replayed session: %v", stale)
	}
}

// staleHits reads every id of want on s until each reads its value ("":
// not found), for at most d, and returns those that still read otherwise.
func staleHits(t *testing.T, s *tiered.Store, want map[string]string, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var stale []string
		for id, w := range want {
			v, err := s.Get(bg, id)
			if w == "" && errors.Is(err, tiered.ErrNotFound) || w != "" && err == nil && string(v) == w {
				continue
			}
			if w == "" {
				w = "nothing"
			}
			stale = append(stale, fmt.Sprintf("%s=%q (%v), Redis holds %s", id, v, err, w))
		}
		if len(stale) == 0 || time.Now().After(deadline) {
			return stale
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

func usedMemory(t *testing.T, e *env) int64 {
	t.Helper()
	for _, line := range strings.Split(e.plain.Info(bg, "memory").Val(), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			must(t, err)
			return n
		}
	}
	t.Fatal("INFO memory: no used_memory")
	return 0
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
