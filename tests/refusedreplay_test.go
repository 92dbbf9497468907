package tests

import (
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReplayWaitsWhileRedisRefusesWrites: a Redis that answers but
// refuses every write for now (maxmemory reached with noeviction: OOM;
// BUSY, MISCONF and NOREPLICAS alike) refuses the replay of an
// acknowledged outage write for a reason that is not the key's. The
// write waits, neither lost nor counted as a conflict, and is replayed
// once Redis takes writes again.
func TestReplayWaitsWhileRedisRefusesWrites(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	proxy := redistest.NewProxy(t, srv.Addr)
	s := storeAt(t, proxy.Addr, tiered.Options{
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 50 * time.Millisecond},
	})
	set(t, s, "w", "before")
	proxy.Cut()
	set(t, s, "w", "outage") // acknowledged, pending
	must(t, plain.ConfigSet(bg, "maxmemory-policy", "noeviction").Err())
	must(t, plain.ConfigSet(bg, "maxmemory", "1").Err())
	t.Cleanup(func() { plain.ConfigSet(bg, "maxmemory", "0") })
	oomBefore := oomErrors(t, plain)
	proxy.Restore()
	waitFor(t, "Redis to refuse the replay twice", func() bool { return oomErrors(t, plain) >= oomBefore+2 })
	if st := s.Stats(); st.PendingWrites != 1 || st.PendingLost != 0 || st.ReplayConflicts != 0 {
		t.Fatalf("while Redis refuses writes: %d pending, %d lost, %d conflicts; want the write pending", st.PendingWrites, st.PendingLost, st.ReplayConflicts)
	}
	must(t, plain.ConfigSet(bg, "maxmemory", "0").Err())
	waitReplayed(t, s)
	if got := plain.Get(bg, "session:w").Val(); got != "outage" {
		t.Fatalf("Redis holds %q once it takes writes again; want the outage write", got)
	}
	if st := s.Stats(); st.PendingLost != 0 {
		t.Fatalf("%d pending writes lost; want none", st.PendingLost)
	}
}

// oomErrors is how many OOM errors Redis has replied (INFO errorstats).
func oomErrors(t *testing.T, c *goredis.Client) int {
	t.Helper()
	m, err := c.InfoMap(bg, "errorstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	count, _ := strings.CutPrefix(m["Errorstats"]["errorstat_OOM"], "count=")
	n, _ := strconv.Atoi(count)
	return n
}
