package tests

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// cmdCalls returns how many times srv ran the command of cmdstat name
// ("client|list").
func cmdCalls(t *testing.T, srv *redistest.Server, name string) int64 {
	t.Helper()
	info, err := srv.Client().Info(bg, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls="); ok {
			calls, _, _ := strings.Cut(rest, ",")
			n, _ := strconv.ParseInt(calls, 10, 64)
			return n
		}
	}
	return 0
}

// TestReview32OneWriteInDoubtDoesNotFenceForever: in publish mode every
// write goes through the lanes. One cancelled SET whose connection C gives
// up on makes C fence: CLIENT KILL of its write connections. Under a
// steady load of writes, each Fence closes the lane batches in flight;
// their callers, still waiting, see a broken connection, which queues
// their writes in the outage tier as sent (and counts each as abandoned):
// the replay of those fences again, which breaks the next batches in
// flight, and so on for as long as the load lasts. Once the doubt is
// settled, C should stop fencing.
func TestReview32OneWriteInDoubtDoesNotFenceForever(t *testing.T) {
	m := cachingModes[0] // publish: every write goes through the lanes
	srv, proxy, _, c := abandonedStores(t, m, fastFence())
	var (
		stop   atomic.Bool
		writes atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	defer func() { stop.Store(true); wg.Wait() }()
	for g := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				if err := c.Set(bg, "load-"+strconv.Itoa(g)+"-"+strconv.Itoa(i%50), []byte("v"), time.Hour); err != nil {
					failed.Add(1)
				}
				writes.Add(1)
			}
		})
	}
	waitFor(t, "the load to flow", func() bool { return writes.Load() > 200 })
	if n := cmdCalls(t, srv, "client|list"); n != 0 {
		t.Fatalf("C fenced %d times before any write was abandoned", n)
	}
	hold := holdCancelled(t, proxy, c, "c1-doubt")
	<-hold.Ended() // C gave up on the connection
	hold.Release()
	waitFor(t, "C's first Fence", func() bool { return cmdCalls(t, srv, "client|list") > 0 })
	// Watch the Fences under load. (Not that the outage tier drains: ids
	// rewritten in a tight loop may keep queueing behind their pending
	// writes while the load lasts, replayed round after round.)
	start, w0 := cmdCalls(t, srv, "client|list"), writes.Load()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := cmdCalls(t, srv, "client|list") - start; n > 10 {
			t.Fatalf("C fenced %d more times within %v of load after the one write in doubt was settled (%d writes, %d failed, stats %+v)",
				n, 2*time.Second-time.Until(deadline), writes.Load()-w0, failed.Load(), c.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
	t.Logf("%d more Fences, %d writes under load", cmdCalls(t, srv, "client|list")-start, writes.Load()-w0)
}

// TestReview32CloseFencesAWriteInDoubtOnTheTrackedConnection: Close "waits
// for the writes still in flight whose callers gave up (each bounded by
// OpTimeout) and, if one may still land, fences it". In the tracking
// modes a Set goes on the Listener's tracked connection, not on the
// lanes: CloseWrites does not wait for it, the outage tier holds nothing
// yet (the write is reported in doubt only once its connection is
// lost), so Close makes no Fence, and Listener.Close closes the
// connection on the client's side only: Redis still executes what it
// received. After Close returns, the connection that carries the held
// SET must be gone from Redis (killed by a Fence), or the SET may land
// after C is closed, over whatever another instance wrote since (a
// logout's Delete, say).
func TestReview32CloseFencesAWriteInDoubtOnTheTrackedConnection(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, a, c := abandonedStores(t, m, tiered.Options{OpTimeout: time.Second})
			hold := holdCancelled(t, proxy, c, "c1-late")
			addr := hold.Addr()
			c.Close()
			list, err := srv.Client().ClientList(bg).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(list, "\n") {
				if !strings.Contains(line, "addr="+addr+" ") {
					continue
				}
				// The session is logged out through A, after C closed;
				// then the held SET arrives.
				if err := a.Delete(bg, "victim"); err != nil {
					t.Fatal(err)
				}
				hold.Release()
				waitFor(t, "the held SET to land (or its connection to end)", func() bool {
					v, _ := srv.Client().Get(bg, "session:victim").Result()
					return v == "c1-late"
				})
				t.Fatalf("after C.Close returned, the connection carrying its cancelled SET was still open in Redis, unfenced; "+
					"a Delete made through A after Close was then undone by the SET landing: Redis holds c1-late\n%s", line)
			}
		})
	}
}

// TestReview32CancelledWriteInDoubtWhereCLIENTIsDenied: where an ACL denies
// CLIENT LIST and CLIENT KILL, C's Fence of a cancelled SET in doubt is
// refused: replay_unfenced, and the doubt is settled at once (the session
// announced) although nothing was fenced. The SET still lands later; the
// instances must then serve what Redis holds within invalidDelay, as
// TestCancelledWriteInDoubtIsAnnouncedAfterTheFence asks where CLIENT
// is allowed. Tracking modes only: in publish mode nothing announces the
// landing (the announcement was made before it, after the Fence that
// fenced nothing), a limit the README states.
func TestReview32CancelledWriteInDoubtWhereCLIENTIsDenied(t *testing.T) {
	for _, m := range trackingModes {
		t.Run(m.name, func(t *testing.T) {
			log := &alertLog{}
			srv, proxy, a, c := abandonedStores(t, m, tiered.Options{
				OpTimeout: 200 * time.Millisecond,
				Breaker:   breaker.Settings{OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
				Telemetry: telemetry.Options{OnAlert: log.hook},
			})
			plain := srv.Client()
			must(t, plain.ACLSetUser(bg, "default", "-client|list", "-client|kill").Err())
			t.Cleanup(func() { plain.ACLSetUser(bg, "default", "+@all") })
			hold := holdCancelled(t, proxy, c, "c1-doubt")
			holdA2(t, a, map[string]*tiered.Store{"A": a, "C": c})
			<-hold.Ended() // C gave up on the connection: in doubt
			waitFor(t, "C's Fence to be refused", func() bool {
				n, _ := log.total(telemetry.AlertUnfenced)
				return n > 0
			})
			waitFor(t, "C to serve a2 again", func() bool {
				v, err := c.Get(bg, "victim")
				return err == nil && string(v) == "a2"
			})
			hold.Release() // the SET lands, after the refused Fence
			servesWhatRedisHolds(t, srv, "victim", "c1-doubt", map[string]*tiered.Store{"A": a, "C": c})
		})
	}
}

// TestReview32MassCancellationInDoubt: 2,000 Sets sent while Redis hangs,
// their callers gone before OpTimeout (a server shutting down cancels
// every request): each ends in doubt when its pipeline times out, far
// more than MaxTombstones, so every session's Set and Delete waits for a
// Fence. Once Redis is back, a Fence or two should settle them all, and
// the store serve as before: a new Set goes to Redis, nothing pending.
func TestReview32MassCancellationInDoubt(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv := redistest.Start(t)
			s := storeAt(t, srv.Addr, tiered.Options{Invalidation: m.opt, OpTimeout: 300 * time.Millisecond, MaxTombstones: 100,
				Breaker: breaker.Settings{OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond}})
			mustSet(t, s, "warm", "w")
			srv.Pause()
			var wg sync.WaitGroup
			for i := range 2000 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
					defer cancel()
					s.Set(ctx, "mass-"+strconv.Itoa(i), []byte("v"), time.Hour)
				})
			}
			wg.Wait()
			srv.Resume()
			fences := cmdCalls(t, srv, "client|list")
			waitFor(t, "a new Set to reach Redis with nothing pending", func() bool {
				err := s.Set(bg, "fresh", []byte("f"), time.Hour)
				st := s.Stats()
				v, _ := srv.Client().Get(bg, "session:fresh").Result()
				return err == nil && v == "f" && st.PendingWrites == 0 && st.PendingDeletes == 0
			})
			// Settled: a Set of a new session is as fast as usual.
			start := time.Now()
			for i := range 50 {
				mustSet(t, s, "after-"+strconv.Itoa(i), "a")
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("50 Sets took %v after the doubts were settled", d)
			}
			if n := cmdCalls(t, srv, "client|list") - fences; n > 5 {
				t.Fatalf("%d Fences to settle one burst of cancelled writes", n)
			}
		})
	}
}

// TestReview32TrackedDoubtFencesABoundedNumberOfTimes: a cancelled SET
// held on C's tracked connection is given up with its connection at
// OpTimeout, reported in doubt, and fenced. The Fence kills every
// connection of the tracked connection's name it cannot keep (the held
// one, and a new one whose barrier did not answer): a connection it
// kills with a cancelled write in flight is one more doubt, for one more
// Fence. Once the held SET has been dealt with, the Fences must stop, and
// C's tracked connection stay up.
func TestReview32TrackedDoubtFencesABoundedNumberOfTimes(t *testing.T) {
	for _, m := range trackingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, _, c := abandonedStores(t, m, fastFence())
			hold := holdCancelled(t, proxy, c, "c1-doubt")
			<-hold.Ended()
			waitFor(t, "C's Fence", func() bool { return cmdCalls(t, srv, "client|list") > 0 })
			waitFor(t, "C to set a session again", func() bool {
				return c.Set(bg, "victim", []byte("c2"), time.Hour) == nil && c.Stats().PendingWrites == 0
			})
			waitStream(t, c)
			fences, kills := cmdCalls(t, srv, "client|list"), cmdCalls(t, srv, "client|kill")
			deadline := time.Now().Add(time.Second)
			for i := 0; time.Now().Before(deadline); i++ {
				must(t, c.Set(bg, "other-"+strconv.Itoa(i%10), []byte("x"), time.Hour))
				if n := cmdCalls(t, srv, "client|list") - fences; n > 0 {
					t.Fatalf("%d more Fences (%d kills) after the doubt was settled", n, cmdCalls(t, srv, "client|kill")-kills)
				}
			}
			if fences > 3 {
				t.Fatalf("%d Fences for one cancelled write", fences)
			}
		})
	}
}
