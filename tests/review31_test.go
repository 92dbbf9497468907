package tests

import (
	"runtime"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview31CloseLeavesTheFinalFenceRunning: Close closes the Tier
// first (Tier.Close waits for the calls detached on a client that ignores
// context deadlines), then makes the Fence of a write its lanes left in
// doubt, on the caller's client. On such a client that Fence's CLIENT LIST
// is a detached call too, started after Tier.Close waited: when Redis does
// not answer it in CloseTimeout, Close returns with it still running,
// although Close promises to wait for Redis calls running past their
// deadline on a client that ignores context deadlines (the Store's
// goroutine outlives it; the caller may close the client under it).
func TestReview31CloseLeavesTheFinalFenceRunning(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, MaxRetries: -1, ReadTimeout: 5 * time.Second}) // ignores context deadlines
	t.Cleanup(func() { client.Close() })
	s, err := tiered.New(client, tiered.Options{
		Invalidation: tiered.InvalidationPublish,
		OpTimeout:    300 * time.Millisecond,
		CloseTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	hold := proxy.Hold([]byte("c-close"))
	defer hold.Release()
	setCancelled(t, s, hold, "victim", "c-close") // its batch ends without a reply at Close
	fence := proxy.Hold([]byte("\r\nLIST\r\n"))   // the final Fence's CLIENT LIST is not answered
	defer fence.Release()
	closed = true
	s.Close()
	select {
	case <-fence.Held():
	default:
		t.Fatal("Close made no Fence of the write its lanes left in doubt")
	}
	// A detached call that ended signals Close before its goroutine exits:
	// give it a moment. One still in its CLIENT LIST waits for the proxy's
	// reply (ReadTimeout 5s), far longer.
	end := time.Now().Add(200 * time.Millisecond)
	for goroutinesIn("redis.detach[") > 0 && time.Now().Before(end) {
		runtime.Gosched()
	}
	if n := goroutinesIn("redis.detach["); n > 0 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "redis.detach[") {
				t.Log(g)
			}
		}
		t.Fatalf("Close returned with %d Redis call(s) of the store still running on a client that ignores context deadlines (the final Fence's CLIENT LIST)", n)
	}
}
