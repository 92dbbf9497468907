package tests

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReplayWaitsWhileRedisRefusesWrites: a Redis that answers but
// refuses every write for now (maxmemory reached with noeviction: OOM;
// BUSY, MISCONF and NOREPLICAS alike) refuses the replay of an
// acknowledged outage write for a reason that is not the key's. The
// write waits, neither lost nor counted as a conflict, and is replayed
// once Redis takes writes again.
func TestReplayWaitsWhileRedisRefusesWrites(t *testing.T) {
	plain, proxy, s, log := refusalSetup(t, "transaction", fastRetry)
	set(t, s, "w", "before")
	proxy.Cut()
	set(t, s, "w", "outage") // acknowledged, pending
	outOfMemory(t, plain)
	oomBefore := replyErrors(t, plain, "OOM")
	proxy.Restore()
	refusedTwice(t, replies(t, plain, "OOM"), oomBefore, log)
	if st := s.Stats(); st.PendingWrites != 1 || st.PendingLost != 0 || st.ReplayConflicts != 0 {
		t.Fatalf("while Redis refuses writes: %d pending, %d lost, %d conflicts; want the write pending", st.PendingWrites, st.PendingLost, st.ReplayConflicts)
	}
	// The breaker stays closed: only this alert tells, once for the
	// episode however often the replay is refused.
	if n, count := log.total(telemetry.AlertReplayRefused); n != 1 || count != 1 {
		t.Fatalf("%d replay_refused alerts for %d writes after repeated refusals; want one, for the 1 write waiting", n, count)
	}
	must(t, plain.ConfigSet(bg, "maxmemory", "0").Err())
	waitReplayed(t, s)
	if got := plain.Get(bg, "session:w").Val(); got != "outage" {
		t.Fatalf("Redis holds %q once it takes writes again; want the outage write", got)
	}
	if st := s.Stats(); st.PendingLost != 0 {
		t.Fatalf("%d pending writes lost; want none", st.PendingLost)
	}
	waitFor(t, "the replay's end to be told", func() bool { n, _ := log.total(telemetry.AlertReplayDone); return n == 1 })
	// A later outage whose replay is refused again is a new episode.
	proxy.Cut()
	set(t, s, "w", "second outage")
	must(t, plain.ConfigSet(bg, "maxmemory", "1").Err())
	before := replyErrors(t, plain, "OOM")
	proxy.Restore()
	waitFor(t, "Redis to refuse the second replay", func() bool { return replyErrors(t, plain, "OOM") > before })
	waitFor(t, "the second episode to be told", func() bool { n, _ := log.total(telemetry.AlertReplayRefused); return n == 2 })
	must(t, plain.ConfigSet(bg, "maxmemory", "0").Err())
	waitReplayed(t, s)
}

// TestReplayOfADeleteWaitsWhileRedisRefusesWrites: a Redis that
// refuses DEL too (min-replicas-to-write without replicas: NOREPLICAS)
// keeps a delete accepted during the outage waiting, alerted once, the
// session never served meanwhile, and applies it once Redis takes writes.
func TestReplayOfADeleteWaitsWhileRedisRefusesWrites(t *testing.T) {
	plain, proxy, s, log := refusalSetup(t, "transaction", fastRetry)
	set(t, s, "d", "revoked")
	proxy.Cut()
	must(t, s.Delete(bg, "d")) // acknowledged, a tombstone
	must(t, plain.ConfigSet(bg, "min-replicas-to-write", "1").Err())
	t.Cleanup(func() { plain.ConfigSet(bg, "min-replicas-to-write", "0") })
	before := replyErrors(t, plain, "NOREPLICAS")
	proxy.Restore()
	refusedTwice(t, replies(t, plain, "NOREPLICAS"), before, log)
	if st := s.Stats(); st.PendingDeletes != 1 || st.PendingLost != 0 {
		t.Fatalf("while Redis refuses writes: %d deletes pending, %d lost; want the delete pending", st.PendingDeletes, st.PendingLost)
	}
	if _, err := s.Get(bg, "d"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of the deleted session while its delete waits: %v; want ErrNotFound", err)
	}
	if n, count := log.total(telemetry.AlertReplayRefused); n != 1 || count != 1 {
		t.Fatalf("%d replay_refused alerts for %d writes after repeated refusals; want one, for the 1 delete waiting", n, count)
	}
	must(t, plain.ConfigSet(bg, "min-replicas-to-write", "0").Err())
	waitReplayed(t, s)
	if plain.Exists(bg, "session:d").Val() != 0 {
		t.Fatal("the session is still in Redis once it takes writes again; want the delete applied")
	}
}

// TestReplayWaitsWhileAnACLDeniesIt: an ACL that denies a command the
// replay needs (SET: NOPERM when sent plain, an ERR reply in Redis 7.0
// when the replay script calls it; a command the replay reads with; the
// script itself; DEL) refuses every write until an operator fixes it, on
// both replay paths. The write and the delete accepted during the outage
// wait, none dropped, alerted once as replay_refused however often the
// replay is denied, and land once the ACL allows the command.
func TestReplayWaitsWhileAnACLDeniesIt(t *testing.T) {
	for _, c := range []struct{ path, denied string }{
		{"transaction", "set"}, {"transaction", "strlen"}, {"transaction", "getrange"}, {"transaction", "del"},
		{"script", "set"}, {"script", "strlen"}, {"script", "getrange"}, {"script", "eval evalsha"}, {"script", "del"},
	} {
		t.Run(c.path+" "+c.denied, func(t *testing.T) {
			plain, proxy, s, log := refusalSetup(t, c.path, fastRetry)
			set(t, s, "w", "before") // a base: the replay reads it back
			set(t, s, "d", "revoked")
			proxy.Cut()
			set(t, s, "w", "outage")   // acknowledged, pending
			must(t, s.Delete(bg, "d")) // acknowledged, a tombstone
			var deny, allow []string
			for _, cmd := range strings.Fields(c.denied) {
				deny, allow = append(deny, "-"+cmd), append(allow, "+"+cmd)
			}
			must(t, plain.ACLSetUser(bg, "default", deny...).Err())
			t.Cleanup(func() { plain.ACLSetUser(bg, "default", "+@all") })
			denied := denials(t, plain)
			before := denied()
			proxy.Restore()
			refusedTwice(t, denied, before, log)
			if st := s.Stats(); st.PendingWrites != 1 || st.PendingLost != 0 || st.ReplayConflicts != 0 {
				t.Fatalf("while the ACL denies %s: %d pending, %d lost, %d conflicts; want the write pending", c.denied, st.PendingWrites, st.PendingLost, st.ReplayConflicts)
			}
			if n, _ := log.total(telemetry.AlertReplayRefused); n != 1 {
				t.Fatalf("%d replay_refused alerts after repeated denials; want one", n)
			}
			must(t, plain.ACLSetUser(bg, "default", allow...).Err())
			waitReplayed(t, s)
			if got := plain.Get(bg, "session:w").Val(); got != "outage" {
				t.Fatalf("Redis holds %q once the ACL allows %s; want the outage write", got, c.denied)
			}
			if plain.Exists(bg, "session:d").Val() != 0 {
				t.Fatal("the deleted session is still in Redis; want the delete applied")
			}
			if st := s.Stats(); st.PendingLost != 0 {
				t.Fatalf("%d pending writes lost; want none", st.PendingLost)
			}
		})
	}
}

// fastRetry opens the breaker at the first failure and retries within
// 50 ms.
var fastRetry = breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 50 * time.Millisecond}

// outOfMemory makes Redis refuse every write (OOM: maxmemory reached with
// noeviction) until the test ends.
func outOfMemory(t *testing.T, c *goredis.Client) {
	t.Helper()
	must(t, c.ConfigSet(bg, "maxmemory-policy", "noeviction").Err())
	must(t, c.ConfigSet(bg, "maxmemory", "1").Err())
	t.Cleanup(func() { c.ConfigSet(bg, "maxmemory", "0") })
}

// refusalSetup starts a server, a proxy to cut it off and a store behind
// the proxy with breaker settings brk that logs its alerts, and returns
// them with a plain client of the server. The store replays on path:
// "transaction" (a single node's client, fenced) or "script" (a ring of
// one shard, as a ring or a cluster replays).
func refusalSetup(t *testing.T, path string, brk breaker.Settings) (*goredis.Client, *redistest.Proxy, *tiered.Store, *alertLog) {
	t.Helper()
	log := &alertLog{}
	opts := tiered.Options{Breaker: brk, Telemetry: telemetry.Options{OnAlert: log.hook}}
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	if path == "script" {
		ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": proxy.Addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { ring.Close() })
		return srv.Client(), proxy, storeOn(t, ring, opts), log
	}
	return srv.Client(), proxy, storeAt(t, proxy.Addr, opts), log
}

// refusedTwice waits for Redis to have refused the replay twice since
// before, as refusals counts them, and for the store to have alerted it,
// then for two more refusals: the store sends a replay only once it has
// handled the one before, so it has then handled the first refusal after
// the alert.
func refusedTwice(t *testing.T, refusals func() int, before int, log *alertLog) {
	t.Helper()
	waitFor(t, "Redis to refuse the replay twice, and the store to alert it", func() bool {
		n, _ := log.total(telemetry.AlertReplayRefused)
		return refusals() >= before+2 && n > 0
	})
	now := refusals()
	waitFor(t, "two more refusals", func() bool { return refusals() >= now+2 })
}

// replies counts the errors of code Redis has replied (see replyErrors).
func replies(t *testing.T, c *goredis.Client, code string) func() int {
	return func() int { return replyErrors(t, c, code) }
}

// denials counts the commands Redis's ACL has denied (ACL LOG), plain
// (NOPERM) or called by a script (ERR).
func denials(t *testing.T, c *goredis.Client) func() int {
	return func() int {
		log, err := c.ACLLog(bg, 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range log {
			n += int(e.Count)
		}
		return n
	}
}

// replyErrors is how many errors of code Redis has replied (INFO
// errorstats).
func replyErrors(t *testing.T, c *goredis.Client, code string) int {
	t.Helper()
	m, err := c.InfoMap(bg, "errorstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	count, _ := strings.CutPrefix(m["Errorstats"]["errorstat_"+code], "count=")
	n, _ := strconv.Atoi(count)
	return n
}

// TestReplayWaitsForABusyRedisToFence: a Redis running a script past
// busy-reply-threshold answers BUSY to every command, the fence's CLIENT
// LIST included. That is no refusal of the fence (an ACL's): the replay
// must not go on unfenced, or a SET abandoned in the network could land
// after it. It waits, alerted once as replay_refused, fences once the
// script ends, and the held SET never lands.
func TestReplayWaitsForABusyRedisToFence(t *testing.T) {
	log := &alertLog{}
	srv, proxy, s := proxiedStore(t, tiered.Options{Breaker: fastRetry, Telemetry: telemetry.Options{OnAlert: log.hook}})
	plain := srv.Client()
	stop := srv.Busy()
	hold := proxy.Hold([]byte("held-in-the-network"))
	t.Cleanup(hold.Release)
	set(t, s, "victim", "held-in-the-network") // abandoned at OpTimeout: pending
	<-hold.Held()
	set(t, s, "victim", "newer") // pending, replacing it
	// Redis answers nothing else while busy, INFO included: the alert is
	// what says the replay met BUSY.
	waitFor(t, "the replay to meet BUSY", func() bool { n, _ := log.total(telemetry.AlertReplayRefused); return n > 0 })
	if n, _ := log.total(telemetry.AlertUnfenced); n != 0 {
		t.Fatalf("%d unfenced alerts while Redis was busy; want none: BUSY refuses nothing for good", n)
	}
	if n, _ := log.total(telemetry.AlertReplayRefused); n != 1 {
		t.Fatalf("%d replay_refused alerts while the fence met BUSY; want one", n)
	}
	if st := s.Stats(); st.PendingWrites != 1 {
		t.Fatalf("%d pending writes while Redis is busy; want the write waiting", st.PendingWrites)
	}
	stop()
	waitReplayed(t, s)
	hold.Release()
	waitFor(t, "Redis to drop the held connection", func() bool {
		list, err := plain.ClientList(bg).Result()
		return err == nil && !strings.Contains(list, " addr="+hold.Addr()+" ")
	})
	if got := plain.Get(bg, "session:victim").Val(); got != "newer" {
		t.Fatalf("Redis holds %q; want the replayed write, newer: a write abandoned before the replay landed after it", got)
	}
	if n, _ := log.total(telemetry.AlertUnfenced); n != 0 {
		t.Fatalf("%d unfenced alerts; want none", n)
	}
}
