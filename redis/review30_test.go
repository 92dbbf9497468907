package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// namedClients returns the ids of Redis's normal connections named name.
func namedClients(t *testing.T, c *goredis.Client, name string) []string {
	t.Helper()
	list, err := c.Do(context.Background(), "CLIENT", "LIST", "TYPE", "normal").Text()
	if err != nil {
		t.Fatal(err)
	}
	return clientIDs(list, name)
}

// TestReview30FenceAfterDoubtFencesIt: OnAbandoned says of a write in
// doubt (Landed false) that Redis may still execute it "until the next
// Fence". But the Fence counts writes to fence in Tier.fence.abandoned,
// which the caller's goroutine raises only once its call has returned
// (write, after bounded and its trace end), while the lane reports the
// write to OnAbandoned on its own goroutine, perhaps before. A Fence made
// in between finds nothing to fence, returns nil and makes no call: the
// connection that carries the write stays open, and the write lands after
// the Fence. The tiered Store's recovery loop, woken by the hook, makes
// exactly such a Fence and then forgets the doubt (settle).
//
// Here the caller is held in its trace's end (the window between await
// and abandoned.Add) until the Fence has returned.
func TestReview30FenceAfterDoubtFencesIt(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	told := make(chan Abandoned, 1)
	fenced := make(chan struct{})
	trace := func(ctx context.Context, cmd string) (context.Context, func(error)) {
		if cmd != "SET" {
			return ctx, func(error) {}
		}
		return ctx, func(error) { <-fenced } // the caller, between its give-up and abandoned.Add
	}
	tr, err := New(client, Config{Prefix: "f30:", Timeout: 300 * time.Millisecond, Trace: trace,
		OnAbandoned: func(a Abandoned) { told <- a }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	h := proxy.Hold([]byte("doubt-value"))
	defer h.Release()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- tr.Set(ctx, "k", []byte("doubt-value"), time.Minute) }()
	<-h.Held()
	cancel()
	select {
	case a := <-told:
		if a.Landed {
			t.Fatalf("told %+v, want a write in doubt", a)
		}
	case <-time.After(5 * time.Second):
		close(fenced)
		t.Fatal("OnAbandoned not called")
	}
	ferr := tr.Fence(context.Background())
	close(fenced)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Set whose caller gave up: %v", err)
	}
	if ferr != nil {
		t.Fatalf("Fence: %v", ferr)
	}
	plain := srv.Client()
	if ids := namedClients(t, plain, tr.fence.opt.ClientName); len(ids) > 0 {
		// Show the consequence: the write lands after the Fence.
		h.Release()
		deadline := time.Now().Add(5 * time.Second)
		for plain.Get(context.Background(), "f30:k").Val() != "doubt-value" && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling a condition
		}
		t.Fatalf("a Fence begun after OnAbandoned reported the write in doubt returned nil and left its connection %v open: Redis value now %q",
			ids, plain.Get(context.Background(), "f30:k").Val())
	}
}
