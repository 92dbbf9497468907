package tests

import (
	"testing"

	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview24StoreReplayWhileBusyIsNotAConflict (see redis's
// TestReview24BusyStopsTheBatch/cold): an acknowledged outage write of an
// existing session, replayed while Redis runs a script past its time
// (BUSY), must wait (replay_refused), then be applied: Redis never
// changed. The replay opens its connection while Redis is BUSY; the
// handshake's CLIENT SETNAME is refused, the read's commands carry no
// reply, read takes the key for absent, and the write is dropped as a
// conflict.
func TestReview24StoreReplayWhileBusyIsNotAConflict(t *testing.T) {
	log := &alertLog{}
	srv, proxy, s := proxiedStore(t, tiered.Options{Breaker: fastRetry, Telemetry: telemetry.Options{OnAlert: log.hook}})
	plain := srv.Client()
	set(t, s, "w", "before")
	proxy.Cut()
	set(t, s, "w", "outage") // acknowledged, pending
	stop := srv.Busy()
	proxy.Restore()
	waitFor(t, "the replay to be refused or decided", func() bool {
		n, _ := log.total(telemetry.AlertReplayRefused)
		st := s.Stats()
		return n > 0 || st.ReplayConflicts > 0 || st.PendingLost > 0 || st.PendingWrites == 0
	})
	st := s.Stats()
	stop()
	if st.ReplayConflicts != 0 || st.PendingLost != 0 || st.PendingWrites != 1 {
		t.Errorf("while Redis is BUSY: %d conflicts, %d lost, %d pending; want the write pending", st.ReplayConflicts, st.PendingLost, st.PendingWrites)
	}
	waitReplayed(t, s)
	if got := plain.Get(bg, "session:w").Val(); got != "outage" {
		t.Errorf("Redis holds %q once BUSY ends; want the outage write", got)
	}
}
