package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestReview30CloseLeavesADoubtUnannounced: a write whose caller gave up
// (as on a server's shutdown, which cancels the requests in flight) is
// still in its lane's batch when the store closes. Close finds the outage
// tier empty (the doubt is not recorded yet), makes no final replay, and
// closes the Tier: the batch ends without a reply and Store.abandoned
// records the doubt in an outage tier nothing will fence or settle any
// more, and owes no flush. The write lands after Close, overwriting the
// other instance's later change, and nothing ever tells that instance: it
// serves its own value until Local.TTL, the very bug the change fixes.
// (Tracking modes: Redis tells the others.)
func TestReview30CloseLeavesADoubtUnannounced(t *testing.T) {
	for _, m := range cachingModes {
		t.Run(m.name, func(t *testing.T) {
			srv, proxy, a, c := abandonedStores(t, m, tiered.Options{OpTimeout: time.Second})
			hold := holdCancelled(t, proxy, c, "c1-close")
			holdA2(t, a, map[string]*tiered.Store{"A": a})
			closed := make(chan error, 1)
			go func() { closed <- c.Close() }()
			<-hold.Ended() // C gave up on the connection: the write is in doubt
			if err := <-closed; err != nil {
				t.Fatalf("Close: %v", err)
			}
			if !connected(t, srv, hold.Addr()) {
				return // C fenced it: it cannot land
			}
			hold.Release() // lands after C closed
			servesWhatRedisHolds(t, srv, "victim", "c1-close", map[string]*tiered.Store{"A": a})
		})
	}
}

// TestReview30LateTouchIsNotAnnounced: a Touch whose caller gave up after
// its PEXPIRE was sent lands after another instance's later Set: Redis's
// key now expires at the Touch's (shorter) lifetime. C announced the
// Touch when it failed, before it landed, and the lanes do not report a
// PEXPIRE to OnAbandoned: A, which set the session for an hour, keeps
// serving it after Redis expired it, until Local.TTL. A Touch that lands
// in time is announced (write), as a change of the session; one that
// lands late should be too.
func TestReview30LateTouchIsNotAnnounced(t *testing.T) {
	m := cachingModes[0] // publish: in tracking modes Redis tells A
	srv, proxy, a, c := abandonedStores(t, m, tiered.Options{OpTimeout: time.Second})
	hold := proxy.Hold([]byte("pexpire"))
	defer hold.Release()
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 1)
	go func() { errc <- c.Touch(ctx, "victim", 300*time.Millisecond) }()
	<-hold.Held()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Touch whose caller gave up: %v, want context.Canceled", err)
	}
	holdA2(t, a, map[string]*tiered.Store{"A": a})
	hold.Release() // the PEXPIRE lands, in time for C's lane to read its reply
	plain := srv.Client()
	waitFor(t, "the late PEXPIRE to expire the session in Redis", func() bool {
		return plain.Exists(bg, "session:victim").Val() == 0
	})
	deadline := time.Now().Add(invalidDelay)
	for {
		_, err := a.Get(bg, "victim")
		if errors.Is(err, tiered.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("A serves the session (%v) %v after Redis expired it at the lifetime of a Touch that landed late: never told", err, invalidDelay)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition
	}
}

// connected reports whether Redis has a client at addr.
func connected(t *testing.T, srv *redistest.Server, addr string) bool {
	t.Helper()
	list, err := srv.Client().ClientList(bg).Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(list, "addr="+addr+" ")
}

// TestReview30SetQueuedBehindADoubtIsNotLost: store C has not read the
// session, which A wrote. C's Set is cancelled and its batch ends without
// a reply: the doubt makes C's next Set of the session (a retry, say)
// queue in the outage tier although Redis is up, and it is acknowledged.
// Its replay, after the Fence, replaces only what C last saw or wrote
// (lastSeen: nothing held, the digest of the write in doubt), not A's
// value, which Redis still holds since the write in doubt never landed:
// it "conflicts" and is dropped. Without the doubt the Set would have gone
// to Redis at once and succeeded; with it, an acknowledged write is lost
// with no outage and no concurrent writer.
func TestReview30SetQueuedBehindADoubtIsNotLost(t *testing.T) {
	m := cachingModes[0]
	srv, proxy, _, c := abandonedStores(t, m, tiered.Options{
		OpTimeout: 2 * time.Second, // the held Fence does not time out
		Breaker:   breaker.Settings{OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	})
	holdCancelled(t, proxy, c, "c1-doubt")
	fence := proxy.Hold([]byte("\r\nLIST\r\n")) // C's Fence: CLIENT LIST
	defer fence.Release()
	select {
	case <-fence.Held(): // the doubt is recorded: C fences
	case <-time.After(10 * time.Second):
		t.Fatal("C never fenced its connections after giving up on a SET whose caller had gone")
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Set(bg, "victim", []byte("c2"), time.Hour) }()
	var err error
	waitFor(t, "the Set to return or wait for the Fence", func() bool {
		select {
		case err = <-errc:
			errc <- err
			return true
		default:
			return goroutinesIn("tiered.(*Store).queues") > 0
		}
	})
	fence.Release()
	if err := <-errc; err != nil {
		t.Fatalf("Set behind the doubt: %v", err)
	}
	waitFor(t, "C's outage tier to drain", func() bool {
		st := c.Stats()
		return st.PendingWrites == 0
	})
	if v := srv.Client().Get(bg, "session:victim").Val(); v != "c2" {
		t.Fatalf("Redis holds %q after C's acknowledged Set of c2, queued behind a write in doubt that never landed (replay conflicts %d)",
			v, c.Stats().ReplayConflicts)
	}
}

// blockEnd holds the end of the span named name in trace tr (see
// TestReview30WriteLandedBeforeTheFenceIsRequeued) until unblock is
// closed: it holds the goroutine that ends it.
type blockEnd struct {
	name    string
	tr      trace.TraceID
	blocked chan struct{}
	unblock chan struct{}
}

func (b *blockEnd) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (b *blockEnd) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.Name() == b.name && s.SpanContext().TraceID() == b.tr {
		close(b.blocked)
		<-b.unblock
	}
}
func (b *blockEnd) Shutdown(context.Context) error   { return nil }
func (b *blockEnd) ForceFlush(context.Context) error { return nil }

// TestReview30WriteLandedBeforeTheFenceIsRequeued: C's Set of c2 queued
// in the lane behind a write in doubt (c1) is sent once c1's batch has
// ended, after the doubt was recorded; Redis takes it, then c1 lands
// (held in the network), then C's Fence kills c1's connection and settle
// forgets the doubt and announces the session. Only then does the Set's
// caller, which Redis answered before c1 landed, check for outage state
// to requeue behind (Store.requeue): there is none any more, and the Set
// returns nil. Redis holds c1, which C's caller was told failed, and c2,
// acknowledged, is lost: requeue should have recorded c2 to be replayed
// after the Fence. The window (between the Set's reply and its requeue
// check, a Fence's two round trips) is held open here by the end of the
// Set's Redis span.
func TestReview30WriteLandedBeforeTheFenceIsRequeued(t *testing.T) {
	app := sdktrace.NewTracerProvider()
	ctx, span := app.Tracer("app").Start(bg, "request")
	defer span.End()
	hold2 := &blockEnd{name: "SET", tr: span.SpanContext().TraceID(), blocked: make(chan struct{}), unblock: make(chan struct{})}
	defer func() {
		select {
		case <-hold2.unblock:
		default:
			close(hold2.unblock)
		}
	}()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(hold2))
	srv, proxy, _, c := abandonedStores(t, cachingModes[0], tiered.Options{
		OpTimeout: 2 * time.Second, // no call times out: c1's connection is cut
		Breaker:   breaker.Settings{OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
		Telemetry: telemetry.Options{TracerProvider: tp},
	})
	if v, err := c.Get(bg, "victim"); err != nil || string(v) != "a0" { // C's base: a0
		t.Fatalf("C reads %q, %v", v, err)
	}
	hold := holdCancelled(t, proxy, c, "c1-doubt")
	sub := srv.Client().Subscribe(bg, "session:__invalidate__")
	defer sub.Close()
	if _, err := sub.Receive(bg); err != nil {
		t.Fatal(err)
	}
	fence := proxy.Hold([]byte("\r\nLIST\r\n")) // C's Fence: CLIENT LIST
	defer fence.Release()
	errc := make(chan error, 1)
	go func() { errc <- c.Set(ctx, "victim", []byte("c2"), time.Hour) }()
	// c2 waits in the lane behind c1's batch, which then ends without a
	// reply: the doubt is recorded, and c2 is sent.
	waitFor(t, "c2 to queue behind c1", func() bool { return goroutinesIn("redis.(*request).await") > 0 })
	hold.CutClient()
	<-hold2.blocked // Redis took c2; its caller has not checked for outage state yet
	plain := srv.Client()
	if v := plain.Get(bg, "session:victim").Val(); v != "c2" {
		close(hold2.unblock)
		t.Fatalf("Redis holds %q, not c2, when c2's span ended (Set: %v)", v, <-errc)
	}
	select {
	case <-fence.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("C never fenced")
	}
	hold.Release() // c1 lands after c2, before the Fence
	waitFor(t, "c1 to land", func() bool { return plain.Get(bg, "session:victim").Val() == "c1-doubt" })
	fence.Release()
	deadline := time.After(10 * time.Second)
	for settled := false; !settled; { // settle announces the session once the Fence is made
		select {
		case m := <-sub.Channel():
			settled = strings.HasSuffix(m.Payload, " victim")
		case <-deadline:
			t.Fatal("the session was never announced after the Fence")
		}
	}
	close(hold2.unblock)
	if err := <-errc; err != nil {
		t.Fatalf("Set of c2: %v", err)
	}
	waitFor(t, fmt.Sprintf("Redis to hold c2, acknowledged after the write in doubt (c1) had been sent (C: %+v)", c.Stats()), func() bool {
		return plain.Get(bg, "session:victim").Val() == "c2"
	})
}
