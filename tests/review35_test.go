package tests

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview35OutageSetDuringTheTouchsReplayKeepsTheSessionsBases is
// review 33's second test with the Set made while the replay of the
// Touch's pending write is in flight (sending marked it sent): add's
// old.sent branch then overwrites the bases that 86b6bd3 gave a Set
// superseding a touched write, leaving only the value touched (v0). Redis
// holds v1-late, this instance's own late-landed Set: the acknowledged
// outage Set x is replayed onto v0 only, conflicts, and is lost.
func TestReview35OutageSetDuringTheTouchsReplayKeepsTheSessionsBases(t *testing.T) {
	srv, proxy, plain, c := lateLandedThenOutage35(t)
	if err := c.Touch(bg, "victim", 2*time.Hour); err != nil {
		t.Fatalf("Touch during the outage: %v", err)
	}
	replay := proxy.Hold([]byte("WATCH")) // the replay of the Touch's pending write reads the key
	t.Cleanup(replay.Release)
	srv.Resume()
	<-replay.Held()
	if err := c.Set(bg, "victim", []byte("x"), time.Hour); err != nil {
		t.Fatalf("Set during the replay: %v", err)
	}
	replay.Release()
	waitReplayed(t, c)
	if v := plain.Get(bg, "session:victim").Val(); v != "x" {
		t.Fatalf("Redis holds %q after the replay; want the acknowledged outage Set x, made during the replay of a Touch's pending write (stats %+v)", v, c.Stats())
	}
}

// lateLandedThenOutage35 is lateLandedThenOutage, which also returns the
// proxy between the store and Redis.
func lateLandedThenOutage35(t *testing.T) (*redistest.Server, *redistest.Proxy, *goredis.Client, *tiered.Store) {
	t.Helper()
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	opts := fastFence()
	opts.Breaker = breaker.Settings{Failures: 2, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond}
	opts.Invalidation = tiered.InvalidationPublish
	c := storeAt(t, proxy.Addr, opts)
	plain := srv.Client()
	if err := c.Set(bg, "victim", []byte("v0"), time.Hour); err != nil {
		t.Fatal(err)
	}
	hold := holdCancelled(t, proxy, c, "v1-late")
	fence := proxy.Hold([]byte("\r\nLIST\r\n")) // C's Fence: CLIENT LIST
	t.Cleanup(fence.Release)
	<-hold.Ended() // C gave up on the connection: the SET is in doubt
	waitFor(t, "C to serve v0", func() bool {
		v, err := c.Get(bg, "victim")
		return err == nil && string(v) == "v0"
	})
	hold.Release() // lands before any Fence could close its connection
	waitFor(t, "the late SET to land", func() bool { return plain.Get(bg, "session:victim").Val() == "v1-late" })
	srv.Pause()
	fence.Release()
	openBreaker(t, c)
	return srv, proxy, plain, c
}
