package tests

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// A Touch during an outage adopts the copy held here as a pending write.
// Its bases were present(id): lastSeen without "", which still holds the
// digests of writes that may have landed (unsure notes, unfenced and
// settled values). Its replay SET the copy's value onto any of them: when
// Redis held such a value (a cancelled Set that landed late, after this
// instance read the older value), the Touch replaced it with the copy's:
// a Touch changed the session's value. Its only base is now the value
// touched.
func TestReview33OutageTouchDoesNotReplaceALateLandedValue(t *testing.T) {
	srv, _, plain, c := lateLandedThenOutage(t)
	if err := c.Touch(bg, "victim", 2*time.Hour); err != nil {
		t.Fatalf("Touch during the outage: %v", err)
	}
	srv.Resume()
	waitReplayed(t, c)
	if v := plain.Get(bg, "session:victim").Val(); v != "v1-late" {
		t.Fatalf("Redis holds %q after the replay of a Touch; it held v1-late: a Touch changed the session's value", v)
	}
}

// A Set after that Touch, in the same outage, is replayed as any outage
// Set of the session would be: onto what this instance last saw or wrote
// there, v1-late included. It must not inherit the Touch's one base (the
// value touched), or it conflicts with the late value and is lost.
func TestReview33OutageSetAfterATouchKeepsTheSessionsBases(t *testing.T) {
	srv, _, plain, c := lateLandedThenOutage(t)
	if err := c.Touch(bg, "victim", 2*time.Hour); err != nil {
		t.Fatalf("Touch during the outage: %v", err)
	}
	if err := c.Set(bg, "victim", []byte("x"), time.Hour); err != nil {
		t.Fatalf("Set during the outage: %v", err)
	}
	srv.Resume()
	waitReplayed(t, c)
	if v := plain.Get(bg, "session:victim").Val(); v != "x" {
		t.Fatalf("Redis holds %q after the replay; want the acknowledged outage Set x (stats %+v)", v, c.Stats())
	}
}

// lateLandedThenOutage returns a store C (publish mode, behind proxy)
// holding a copy of "victim" at v0 while Redis holds v1-late, C's own
// cancelled Set, which landed after C read v0; Redis is then paused and
// C's breaker open.
func lateLandedThenOutage(t *testing.T) (*redistest.Server, *redistest.Proxy, *goredis.Client, *tiered.Store) {
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
	// C reads what Redis holds before the held SET lands: v0.
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
