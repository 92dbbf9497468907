package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// Many callers' writes share pipelines; each gets its own answer.
func TestConcurrentWritesEachGetTheirAnswer(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	tr := newTier(t, client, "lanes:")
	ctx := context.Background()
	const writers, each = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := tr.Set(ctx, id, []byte(id), time.Minute); err != nil {
					errs <- err
					return
				}
				if found, err := tr.Touch(ctx, id, time.Hour); err != nil || !found {
					errs <- fmt.Errorf("touch of %s just written: found %v, %v", id, found, err)
					return
				}
				if found, err := tr.Touch(ctx, id+"-missing", time.Hour); err != nil || found {
					errs <- fmt.Errorf("touch of a missing key: found %v, %v", found, err)
					return
				}
				if i%2 == 0 {
					if err := tr.Delete(ctx, id); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		for i := range each {
			id := fmt.Sprintf("w%d-%d", w, i)
			v, err := client.Get(ctx, "lanes:"+id).Result()
			switch {
			case i%2 == 0 && err == nil:
				t.Fatalf("%s was deleted, Redis holds %q", id, v)
			case i%2 == 1 && v != id:
				t.Fatalf("%s: Redis holds %q, %v", id, v, err)
			}
		}
	}
}

// A write whose caller gave up before it was sent never reaches Redis: it
// cannot land later, after the writes sent since.
func TestCancelledWriteIsNotSent(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTier(t, srv.Client(), "lanes:")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 50 {
		id := fmt.Sprintf("c%d", i)
		if err := tr.Set(cancelled, id, []byte("x"), time.Minute); !errors.Is(err, context.Canceled) {
			t.Fatalf("Set with a cancelled context: %v; want context.Canceled", err)
		}
		// The key's writes keep their order: had the Set been sent, it
		// would have been sent before this Touch.
		if found, err := tr.Touch(context.Background(), id, time.Minute); err != nil || found {
			t.Fatalf("the cancelled Set of %s reached Redis (touch: found %v, %v)", id, found, err)
		}
	}
}

// Writes queued behind a batch that hangs are bounded by the tier's
// timeout too, not by the batch ahead of them.
func TestWritesQueuedOnAHungRedisAreBounded(t *testing.T) {
	srv := redistest.Start(t)
	const timeout = 100 * time.Millisecond
	tr, err := redis.New(srv.Client(), redis.Config{Prefix: "lanes:", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	if err := tr.Set(ctx, "warm", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	var wg sync.WaitGroup
	slow := make(chan string, 200)
	for i := range 200 {
		wg.Go(func() {
			start := time.Now()
			err := tr.Set(ctx, fmt.Sprintf("k%d", i), []byte("v"), time.Minute)
			if elapsed := time.Since(start); elapsed > timeout+time.Second || !errors.Is(err, context.DeadlineExceeded) {
				slow <- fmt.Sprintf("took %v, %v", elapsed, err)
			}
		})
	}
	wg.Wait()
	close(slow)
	for s := range slow {
		t.Errorf("a write queued on a hung Redis %s; want a deadline error within about %v", s, timeout)
	}
	srv.Resume()
}

// A write after Close fails at once.
func TestWriteAfterCloseFails(t *testing.T) {
	srv := redistest.Start(t)
	tr, err := redis.New(srv.Client(), redis.Config{Prefix: "lanes:", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Set(context.Background(), "a", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if err := tr.Set(context.Background(), "a", []byte("v"), time.Minute); err == nil {
		t.Fatal("Set after Close succeeded")
	}
}

// The writes of one pipeline that broke share one failure, which a breaker
// counts once (breaker.SharedFailure); another pipeline's failure is
// another.
func TestBrokenPipelineIsOneSharedFailure(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	tr, err := redis.New(client, redis.Config{Prefix: "lanes:", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	hold := proxy.Hold([]byte("first"))
	first := make(chan error, 1)
	go func() { first <- tr.Set(ctx, "k", []byte("first"), time.Minute) }()
	<-hold.Held() // the lane of k is busy with this pipeline: what follows queues up
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- tr.Set(ctx, "k", []byte(fmt.Sprint("queued ", i)), time.Minute) }()
	}
	for deadline := time.Now().Add(5 * time.Second); redis.QueuedWrites(tr) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writes queued behind the held pipeline", redis.QueuedWrites(tr), n)
		}
		time.Sleep(time.Millisecond) // polling a condition
	}
	proxy.Cut() // the held pipeline breaks, and so does the next one, on a connection refused
	hold.Release()
	keys := map[uint64]int{}
	var sh interface{ SharedFailure() uint64 }
	for range n {
		err := <-errs
		if !errors.As(err, &sh) {
			t.Fatalf("a write of a broken pipeline failed with %v; want a shared failure", err)
		}
		keys[sh.SharedFailure()]++
	}
	if err := <-first; !errors.As(err, &sh) {
		t.Fatalf("the held write failed with %v; want a shared failure", err)
	} else if keys[sh.SharedFailure()] > 0 {
		t.Fatal("two pipelines' failures share a key")
	}
	if len(keys) >= n {
		t.Fatalf("%d writes queued together failed with %d distinct failures; want them to share", n, len(keys))
	}
}
