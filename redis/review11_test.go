package redis_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// A write whose caller gave up after its lane had taken it into a batch,
// but before the batch reached Redis (here its connection is still being
// dialled: a lost SYN, a Redis restarting), is abandoned. Fence promises
// that Redis will not execute it after Fence returned nil: the DEL that a
// replay sends after the fence must not be overtaken by it.
func TestFenceCoversAWriteStillWaitingForItsConnection(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var hold atomic.Bool
	gate := make(chan struct{})
	dialing := make(chan struct{}, 1)
	var d net.Dialer
	caller := goredis.NewClient(&goredis.Options{
		Addr:                  srv.Addr,
		ContextTimeoutEnabled: true,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if hold.Load() {
				select {
				case dialing <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return d.DialContext(ctx, network, addr)
		},
	})
	t.Cleanup(func() { caller.Close() })
	other := srv.Client()
	tr, err := redis.New(caller, redis.Config{Prefix: "f:", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	if err := caller.Ping(ctx).Err(); err != nil { // the Fence's CLIENT LIST needs no dial
		t.Fatal(err)
	}

	hold.Store(true)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = tr.Set(short, "x", []byte("late"), time.Minute)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set whose connection cannot be dialled: %v; want a deadline error", err)
	}
	select {
	case <-dialing:
	default:
		t.Fatal("the write client did not dial")
	}
	if err := tr.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	// What a replay sends once the fence holds: the logout.
	if err := other.Del(ctx, "f:x").Err(); err != nil {
		t.Fatal(err)
	}
	hold.Store(false)
	close(gate)
	// The key's next write queues behind the abandoned one on its lane.
	found, err := tr.Touch(ctx, "x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := other.Get(ctx, "f:x").Result(); found || err == nil {
		t.Fatalf("a Set abandoned before Fence landed after it, over the DEL sent after the fence: Redis holds %q (touch found %v)", v, found)
	}
}

// A lane keeps no value once its write was answered: a burst of large
// writes must not stay on the heap (up to 256 values a lane) after the
// caller, and the Store's tiers, let go of them.
func TestLanesKeepNoValueOnceAnswered(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTier(t, srv.Client(), "lanes:")
	value := make([]byte, 1<<20)
	held := weak.Make(&value[0])
	if err := tr.Set(context.Background(), "big", value, time.Minute); err != nil {
		t.Fatal(err)
	}
	value = nil
	for deadline := time.Now().Add(2 * time.Second); held.Value() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("a lane still holds the value of a write it answered")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}
