package tests

import (
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// Review 6 (e41b2c3: replay on a single node as one checked transaction;
// b7b45cd: replay counts before the outage tier shows the writes gone),
// through tiered.Store against a real redis-server.

// waitDrained polls Stats until the outage tier is drained and returns
// the very snapshot that showed it drained.
func waitDrained(t *testing.T, s *tiered.Store) tiered.Stats {
	t.Helper()
	var st tiered.Stats
	waitFor(t, "the outage tier to drain", func() bool {
		st = s.Stats()
		return st.Breaker == "closed" && st.PendingWrites == 0 && st.PendingDeletes == 0
	})
	return st
}

// TestReview6CheckedReplayCountsBeforeDrained: 300 sessions written
// before an outage, each written again during it (two batches of the
// checked transaction, in flight together). Meanwhile another client
// changed 100 and deleted 50 of them. After the replay, the changed keep
// the other client's value, the deleted stay deleted, the others hold the
// outage write with its expiry; and the first Stats that shows the tier
// drained already counts every replayed write (151 applied, the tripper
// included; 150 conflicts).
func TestReview6CheckedReplayCountsBeforeDrained(t *testing.T) {
	srv, proxy, s := proxiedStore(t, tiered.Options{
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	})
	plain := srv.Client()
	const n = 300
	id := func(i int) string { return fmt.Sprint("c-", i) }
	for i := range n {
		set(t, s, id(i), "before")
	}
	proxy.Cut()
	set(t, s, "tripper", "x")
	for i := range n {
		set(t, s, id(i), "outage")
	}
	for i := range 100 {
		plain.Set(bg, "session:"+id(i), "theirs", time.Hour)
	}
	for i := 100; i < 150; i++ {
		plain.Del(bg, "session:"+id(i))
	}
	proxy.Restore()
	st := waitDrained(t, s)
	if st.ReplayApplied != n-150+1 || st.ReplayConflicts != 150 || st.PendingLost != 0 {
		t.Errorf("the first Stats showing the tier drained: %d applied, %d conflicts, %d lost; want %d, 150, 0",
			st.ReplayApplied, st.ReplayConflicts, st.PendingLost, n-150+1)
	}
	for i := range n {
		key := "session:" + id(i)
		want := "outage"
		switch {
		case i < 100:
			want = "theirs"
		case i < 150:
			want = ""
		}
		if got := plain.Get(bg, key).Val(); got != want {
			t.Fatalf("%s holds %q after the replay; want %q", id(i), got, want)
		}
		if ttl := plain.PTTL(bg, key).Val(); want == "outage" && (ttl < 50*time.Minute || ttl > time.Hour) {
			t.Fatalf("%s expires in %v; want about an hour (PXAT of the outage write)", id(i), ttl)
		}
	}
}

// TestReview6RefusedWatchDoesNotOverwrite: a store whose Redis user may
// not WATCH (an ACL; everything else allowed, CLIENT LIST and KILL
// included). An outage write of a session the store wrote before is
// replayed; its transaction, WATCH refused, would run EXEC
// unconditionally, so the batch goes to the script, held by the proxy
// while another client changes the session. The README: the replay "never
// overwrites a value another client wrote meanwhile".
func TestReview6RefusedWatchDoesNotOverwrite(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	if err := plain.Do(bg, "ACL", "SETUSER", "nowatch", "on", ">pw", "~*", "&*", "+@all", "-watch").Err(); err != nil {
		t.Fatal(err)
	}
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, Username: "nowatch", Password: "pw", ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	s, err := tiered.New(client, tiered.Options{
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	waitStream(t, s)
	set(t, s, "w", "before")
	proxy.Cut()
	set(t, s, "w", "outage")
	h := proxy.Hold([]byte("evalsha")) // go-redis spells it in lower case; WATCH refused: the script decides
	t.Cleanup(h.Release)
	proxy.Restore()
	var st tiered.Stats
	waitFor(t, "the replay's EVALSHA, or the replay", func() bool {
		select {
		case <-h.Held():
			return true
		default:
			st = s.Stats()
			return st.Breaker == "closed" && st.PendingWrites == 0
		}
	})
	select {
	case <-h.Held():
		plain.Set(bg, "session:w", "theirs", time.Hour)
		h.Release()
		st = waitDrained(t, s)
	default:
		t.Fatal("the replay sent no EVALSHA: WATCH refused, the transaction ran")
	}
	if got := plain.Get(bg, "session:w").Val(); got != "theirs" {
		t.Fatalf("Redis holds %q after the replay (%d applied, %d conflicts); want the other client's value %q",
			got, st.ReplayApplied, st.ReplayConflicts, "theirs")
	}
}
