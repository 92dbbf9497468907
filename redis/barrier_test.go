package redis

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// barrierTier returns a Tier whose tracked connection (mode) goes through
// a proxy in front of a new server, its Listener, and the server.
func barrierTier(t *testing.T, mode ListenMode, timeout time.Duration) (*Tier, *Listener, *redistest.Proxy, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	h := &confirmHandler{}
	l := NewListener(client, ListenerConfig{Prefix: "b:", Mode: mode, Timeout: timeout}, h)
	tr, err := New(client, Config{Prefix: "b:", Timeout: timeout, Listener: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); tr.Close() })
	l.Start()
	for deadline := time.Now().Add(5 * time.Second); h.up.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the tracked connection did not come up")
		}
	}
	return tr, l, proxy, srv
}

// namedIDs returns the ids of the server's connections named name.
func namedIDs(t *testing.T, srv *redistest.Server, name string) []string {
	t.Helper()
	list, err := srv.Client().ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return clientIDs(list, name)
}

// TestFenceSparesTheTrackedConnectionThatAnswersItsBarrier: a Fence after
// an abandoned write closes every connection named as the Tier's tracked
// connection (one left from before a reconnection, still open in Redis)
// but the current one, which answered a PING sent after everything queued
// on it: the reads in flight on it go on. Killing it, as Fence did,
// failed them after every outage's replay: sessions read then answered
// "not found", and the failures reopened the breaker.
func TestFenceSparesTheTrackedConnectionThatAnswersItsBarrier(t *testing.T) {
	for _, mode := range []ListenMode{ListenPerKey, ListenTracking} {
		t.Run(strconv.Itoa(int(mode)), func(t *testing.T) {
			tr, l, _, srv := barrierTier(t, mode, time.Second)
			ctx := context.Background()
			if err := tr.Set(ctx, "a", []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			l.tracked.mu.Lock()
			conn := l.tracked.conn
			l.tracked.mu.Unlock()
			current := strconv.FormatInt(conn.id, 10)
			if ids := namedIDs(t, srv, l.tracked.name); !slices.Equal(ids, []string{current}) {
				t.Fatalf("connections named as the tracked one: %v; want its id from HELLO, %s", ids, current)
			}
			old := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ClientName: l.tracked.name, MaxRetries: -1})
			defer old.Close()
			if err := old.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			if err := tr.Set(cancelled, "a", []byte("late"), time.Minute); err == nil {
				t.Fatal("Set with a cancelled context succeeded")
			}
			if err := tr.Fence(ctx); err != nil {
				t.Fatal(err)
			}
			if ids := namedIDs(t, srv, l.tracked.name); !slices.Equal(ids, []string{current}) {
				t.Fatalf("connections named as the tracked one after Fence: %v; want the current one alone, %s", ids, current)
			}
			l.tracked.mu.Lock()
			same := l.tracked.conn == conn
			l.tracked.mu.Unlock()
			if !same {
				t.Fatal("the tracked connection was replaced by the Fence")
			}
			if v, _, ok, _, err := tr.GetTracked(ctx, "a"); err != nil || !ok || string(v) != "v" {
				t.Fatalf("GetTracked after Fence = %q, %v, %v; want v", v, ok, err)
			}
		})
	}
}

// TestFenceKillsATrackedConnectionThatHoldsAnAbandonedWrite: a SET held
// in the network on the tracked connection, abandoned by its caller before
// the connection's read deadline: the barrier cannot be answered behind
// it, so Fence closes the connection server-side, and the SET, released
// afterwards, never lands.
func TestFenceKillsATrackedConnectionThatHoldsAnAbandonedWrite(t *testing.T) {
	tr, _, proxy, srv := barrierTier(t, ListenPerKey, time.Second)
	ctx := context.Background()
	if err := tr.Set(ctx, "a", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	hold := proxy.Hold([]byte("held-write"))
	defer hold.Release()
	short, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tr.Set(short, "a", []byte("held-write"), time.Minute) }()
	<-hold.Held()
	cancel() // abandoned, well before the connection's read deadline (1s)
	if err := <-done; err == nil {
		t.Fatal("Set held in the network succeeded")
	}
	if err := tr.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	addr := hold.Addr()
	hold.Release()
	waitClosed := time.Now().Add(5 * time.Second)
	for {
		list := srv.Client().ClientList(ctx).Val()
		if !strings.Contains(list, " addr="+addr+" ") {
			break
		}
		if time.Now().After(waitClosed) {
			t.Fatal("Redis kept the connection of the held write")
		}
		time.Sleep(time.Millisecond) // polling Redis's client list
	}
	if v := srv.Client().Get(ctx, "b:a").Val(); v != "v" {
		t.Fatalf("Redis holds %q after the Fence and the release; want v: the abandoned write landed", v)
	}
}

// TestReadInFlightWhenTheTrackedConnectionIsLostGoesAnotherWay: a read in
// flight on the tracked connection when Redis closes it (a CLIENT KILL of
// someone else's, or of a Fence that could not spare it) is read again
// through the caller's client within its bound, and not kept (coherent
// false): failing it made the store answer a session with no local copy
// as not found. (A connection dropped at a request's deadline fails its
// reads at once: see TestReview26LostReadRetryKeepsItsBoundOnAHungRedis.)
func TestReadInFlightWhenTheTrackedConnectionIsLostGoesAnotherWay(t *testing.T) {
	tr, l, proxy, srv := barrierTier(t, ListenPerKey, time.Second)
	ctx := context.Background()
	if err := srv.Client().Set(ctx, "b:held-read", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	hold := proxy.Hold([]byte("held-read"))
	defer hold.Release()
	type result struct {
		v           []byte
		ok, cohered bool
		err         error
	}
	done := make(chan result, 1)
	go func() {
		v, _, ok, coherent, err := tr.GetTracked(ctx, "held-read")
		done <- result{v, ok, coherent, err}
	}()
	<-hold.Held()
	ids := namedIDs(t, srv, l.tracked.name)
	if len(ids) != 1 {
		t.Fatalf("connections named as the tracked one: %v; want one", ids)
	}
	if err := srv.Client().Do(ctx, "CLIENT", "KILL", "ID", ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !r.ok || string(r.v) != "v" || r.cohered {
		t.Fatalf("GetTracked whose connection was killed under it = %q, found %v, coherent %v, %v; want v, found, not coherent", r.v, r.ok, r.cohered, r.err)
	}
}
