package tests

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// within polls cond for at most d and reports whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond) // polling a condition
	}
	return true
}

// slowRetry is a breaker that tolerates one failed write (it is queued
// for replay, the breaker stays closed) and waits long between retries:
// a replay that failed is not tried again within the test, unless
// something else than Breaker.OpenTimeout wakes it.
var slowRetry = breaker.Settings{Failures: 3, OpenTimeout: time.Minute, MaxOpenTimeout: time.Minute}

// pendingWhileCut queues a write of id behind a cut proxy, the breaker
// staying closed; the replay that write triggers fails while the proxy is
// cut (its fence cannot reach Redis), so the recovery loop then waits
// Breaker.OpenTimeout.
func pendingWhileCut(t *testing.T, s *tiered.Store, proxy *redistest.Proxy, id string) {
	t.Helper()
	set(t, s, id, "before")
	proxy.Cut()
	set(t, s, id, "outage")
	if st := s.Stats(); st.PendingWrites != 1 || st.Breaker != "closed" {
		t.Fatalf("after a write behind a cut proxy: %d pending, breaker %s; want 1 pending, closed", st.PendingWrites, st.Breaker)
	}
}

// TestReview23RefusedReplayIsRetriedEveryOpenTimeoutNotOnEveryWrite: the
// README says a refused replay is "tried again every Breaker.OpenTimeout".
// But every write to an id that still has outage state queues behind it
// and kicks the recovery loop (wakeRecovery: the breaker is closed), so a
// Redis that refuses writes (OOM) gets a whole replay attempt (fence,
// WATCH, EXEC, EVALSHA of up to 2×256 writes) per user write of a pending
// session: load on a Redis that is already out of memory, at the rate of
// user traffic.
func TestReview23RefusedReplayIsRetriedEveryOpenTimeoutNotOnEveryWrite(t *testing.T) {
	plain, proxy, s, log := refusalSetup(t, "transaction", slowRetry)
	pendingWhileCut(t, s, proxy, "w")
	outOfMemory(t, plain)
	proxy.Restore()

	set(t, s, "w", "update 0") // queues behind the pending write, and wakes the replay: refused
	waitFor(t, "the refusal to be alerted", func() bool { n, _ := log.total(telemetry.AlertReplayRefused); return n == 1 })
	before := replyErrors(t, plain, "OOM") // the refused attempt is over: its replies were read
	for i := 1; i < 10; i++ {
		set(t, s, "w", fmt.Sprintf("update %d", i)) // accepted, queued: each would wake a replay
	}
	// Breaker.OpenTimeout is a minute: no attempt before it.
	if within(300*time.Millisecond, func() bool { return replyErrors(t, plain, "OOM") > before }) {
		t.Fatalf("Redis refused another replay attempt right after the writes; want none before Breaker.OpenTimeout = %v", slowRetry.OpenTimeout)
	}
	if st := s.Stats(); st.PendingWrites != 1 || st.Breaker != "closed" || st.PendingLost != 0 {
		t.Fatalf("%d pending, breaker %s, %d lost; want the write waiting with the breaker closed", st.PendingWrites, st.Breaker, st.PendingLost)
	}
	if n, _ := log.total(telemetry.AlertReplayRefused); n != 1 {
		t.Fatalf("%d replay_refused alerts; want 1", n)
	}
}

// TestReview23ReplicaIsNotAReplayRefusal: READONLY (and LOADING,
// MASTERDOWN, CLUSTERDOWN, TRYAGAIN) are replies, so redis.IsReply holds,
// but redis.IsUnreachable classifies them as Redis failing: the breaker
// counts them and opens, and breaker_open tells the operator. refused()
// checks IsReply only, so a replay that reaches a replica (a failover in
// progress) raises replay_refused, whose text says Redis is out of
// memory, busy, misconfigured or short of replicas with the breaker
// closed. Since it fires once until a drain, it also uses up the episode:
// a real refusal (OOM on the new master) right after would not alert.
func TestReview23ReplicaIsNotAReplayRefusal(t *testing.T) {
	srv := redistest.Start(t)
	master := redistest.Start(t)
	plain := srv.Client()
	proxy := redistest.NewProxy(t, srv.Addr)
	log := &alertLog{}
	s := storeAt(t, proxy.Addr, tiered.Options{
		Breaker:   breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 50 * time.Millisecond},
		Telemetry: telemetry.Options{OnAlert: log.hook},
	})
	set(t, s, "w", "before")
	proxy.Cut()
	set(t, s, "w", "outage") // acknowledged, pending
	// The new master holds what this store last saw, so the replay writes.
	must(t, master.Client().Set(bg, "session:w", "before", time.Hour).Err())
	host, port, _ := net.SplitHostPort(master.Addr)
	must(t, plain.ReplicaOf(bg, host, port).Err()) // the server behind the proxy is a replica now
	t.Cleanup(func() { plain.ReplicaOf(bg, "NO", "ONE") })
	waitFor(t, "the replica to sync", func() bool {
		m, err := plain.InfoMap(bg, "replication").Result()
		return err == nil && m["Replication"]["master_link_status"] == "up"
	})
	before := replyErrors(t, plain, "READONLY")
	proxy.Restore()
	if !within(3*time.Second, func() bool { return replyErrors(t, plain, "READONLY") >= before+2 }) {
		m, _ := plain.InfoMap(bg, "errorstats").Result()
		log.mu.Lock()
		t.Fatalf("no READONLY: %+v; errorstats %v; alerts %+v", s.Stats(), m, log.alerts)
	}
	if st := s.Stats(); st.PendingWrites != 1 || st.PendingLost != 0 {
		t.Fatalf("%d pending, %d lost while the replay reaches a replica; want the write waiting", st.PendingWrites, st.PendingLost)
	}
	if n, _ := log.total(telemetry.AlertReplayRefused); n != 0 {
		t.Fatalf("%d replay_refused alerts for READONLY, a reply the breaker counts as a failure (IsUnreachable); want none: the breaker alerts tell", n)
	}
}

// TestReview23ReplayRefusedAlertsAgainAfterADrain: two refusal episodes,
// with an outage (the breaker open) and a drained replay between them,
// alert twice.
func TestReview23ReplayRefusedAlertsAgainAfterADrain(t *testing.T) {
	plain, proxy, s, log := refusalSetup(t, "transaction", fastRetry)
	must(t, plain.ConfigSet(bg, "maxmemory-policy", "noeviction").Err())
	t.Cleanup(func() { plain.ConfigSet(bg, "maxmemory", "0") })
	set(t, s, "w", "before")
	for episode := 1; episode <= 2; episode++ {
		proxy.Cut()
		set(t, s, "w", fmt.Sprintf("outage %d", episode)) // opens the breaker; pending
		must(t, plain.ConfigSet(bg, "maxmemory", "1").Err())
		proxy.Restore()
		waitFor(t, "replay_refused", func() bool { n, _ := log.total(telemetry.AlertReplayRefused); return n == episode })
		// Redis goes away meanwhile and comes back taking writes.
		proxy.Cut()
		openBreaker(t, s)
		must(t, plain.ConfigSet(bg, "maxmemory", "0").Err())
		proxy.Restore()
		waitReplayed(t, s)
		if got := plain.Get(bg, "session:w").Val(); got != fmt.Sprintf("outage %d", episode) {
			t.Fatalf("episode %d: Redis holds %q after the replay", episode, got)
		}
	}
	if n, _ := log.total(telemetry.AlertReplayRefused); n != 2 {
		t.Fatalf("%d replay_refused alerts for two episodes; want 2", n)
	}
}

// TestReview23ReplayRefusedCounts: Count is what waits, writes and
// deletes; two write batches refused at once alert once; no session id in
// the alert.
func TestReview23ReplayRefusedCounts(t *testing.T) {
	t.Run("a write and a delete, NOREPLICAS", func(t *testing.T) {
		plain, proxy, s, log := refusalSetup(t, "transaction", fastRetry)
		set(t, s, "sid-deleted-7f3a", "x")
		proxy.Cut()
		set(t, s, "sid-written-9c1b", "outage")
		must(t, s.Delete(bg, "sid-deleted-7f3a"))
		must(t, plain.ConfigSet(bg, "min-replicas-to-write", "1").Err())
		t.Cleanup(func() { plain.ConfigSet(bg, "min-replicas-to-write", "0") })
		proxy.Restore()
		waitFor(t, "replay_refused", func() bool { n, _ := log.total(telemetry.AlertReplayRefused); return n == 1 })
		log.mu.Lock()
		for _, a := range log.alerts {
			if strings.Contains(a.Message, "sid-") {
				t.Errorf("alert %s carries a session id: %q", a.Kind, a.Message)
			}
			if a.Kind == telemetry.AlertReplayRefused && (a.Count != 2 || a.Bytes <= 0) {
				t.Errorf("replay_refused count %d, bytes %d; want 2 (a write and a delete wait), bytes > 0", a.Count, a.Bytes)
			}
		}
		log.mu.Unlock()
		must(t, plain.ConfigSet(bg, "min-replicas-to-write", "0").Err())
		waitReplayed(t, s)
	})
	t.Run("600 writes, OOM, two batches in flight", func(t *testing.T) {
		plain, proxy, s, log := refusalSetup(t, "transaction", fastRetry)
		proxy.Cut()
		for i := range 600 {
			s.Set(bg, fmt.Sprintf("sid-%d", i), []byte("outage"), time.Hour)
		}
		if st := s.Stats(); st.PendingWrites != 600 {
			t.Fatalf("%d pending; want 600", st.PendingWrites)
		}
		outOfMemory(t, plain)
		proxy.Restore()
		waitFor(t, "replay_refused", func() bool { n, _ := log.total(telemetry.AlertReplayRefused); return n >= 1 })
		refused := replyErrors(t, plain, "OOM")
		waitFor(t, "more refused replays", func() bool { return replyErrors(t, plain, "OOM") > refused+600 })
		if n, count := log.total(telemetry.AlertReplayRefused); n != 1 || count != 600 {
			t.Fatalf("%d replay_refused alerts, count %d; want 1, 600", n, count)
		}
		must(t, plain.ConfigSet(bg, "maxmemory", "0").Err())
		waitReplayed(t, s)
		if st := s.Stats(); st.PendingLost != 0 {
			t.Fatalf("%d lost; want none", st.PendingLost)
		}
	})
}

// TestReview23CloseUnderRefusalDoesNotPromiseARetry: Close's final
// replay, refused by Redis, raises replay_refused, whose message and
// README row say the writes "wait and are retried" every
// Breaker.OpenTimeout; nothing is retried after Close: they are lost, and
// pending_lost, raised right after, says so. Two error alerts for one
// event, the first of them false.
func TestReview23CloseUnderRefusalDoesNotPromiseARetry(t *testing.T) {
	plain, proxy, s, log := refusalSetup(t, "transaction", slowRetry)
	pendingWhileCut(t, s, proxy, "w")
	outOfMemory(t, plain)
	before := replyErrors(t, plain, "OOM")
	proxy.Restore()
	if err := s.Close(); !errors.Is(err, tiered.ErrPendingLost) {
		t.Fatalf("Close: %v; want ErrPendingLost", err)
	}
	if replyErrors(t, plain, "OOM") == before {
		t.Fatal("Close's final replay was not refused: the test did not reach its case")
	}
	if n, _ := log.total(telemetry.AlertPendingLost); n != 1 {
		t.Fatalf("%d pending_lost alerts; want 1", n)
	}
	if n, _ := log.total(telemetry.AlertReplayRefused); n != 0 {
		t.Fatalf("%d replay_refused alerts raised by Close, saying the writes wait and are retried; want none: Close drops them (pending_lost)", n)
	}
}
