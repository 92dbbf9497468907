package tests

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestSlowLinkReplayFinishes: over a link of 40 ms round trips, within
// OpTimeout (150 ms) for any one call on an open connection, a write
// accepted during an outage is replayed once Redis is back. The write
// that timed out is abandoned, so the replay fences first: it closes the
// write connections, and the replay's new connections must not need
// their handshake and the call within one OpTimeout, or every retry
// times out and fences again.
func TestSlowLinkReplayFinishes(t *testing.T) {
	srv := redistest.Start(t)
	var oneWay atomic.Int64
	s := storeAt(t, redistest.LatencyProxy(t, srv.Addr, &oneWay), tiered.Options{
		OpTimeout: 150 * time.Millisecond,
		Breaker:   breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	})
	set(t, s, "w", "before")
	oneWay.Store(int64(20 * time.Millisecond))
	srv.Pause()
	set(t, s, "w", "outage") // times out: abandoned, accepted into the outage tier
	srv.Resume()
	waitReplayed(t, s)
	if got := srv.Client().Get(bg, "session:w").Val(); got != "outage" {
		t.Fatalf("Redis holds %q after the replay; want the outage write", got)
	}
}
