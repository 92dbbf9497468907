package tests

import (
	"testing"
	"time"
)

// TestReview35OutageSetDuringTheTouchsReplayKeepsTheSessionsBases is
// review 33's second test with the Set made while the replay of the
// Touch's pending write is in flight (sending marked it sent): add's
// old.sent branch then overwrites the bases that 86b6bd3 gave a Set
// superseding a touched write, leaving only the value touched (v0). Redis
// holds v1-late, this instance's own late-landed Set: the acknowledged
// outage Set x is replayed onto v0 only, conflicts, and is lost.
func TestReview35OutageSetDuringTheTouchsReplayKeepsTheSessionsBases(t *testing.T) {
	srv, proxy, plain, c := lateLandedThenOutage(t)
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
