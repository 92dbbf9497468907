package tests

import (
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// review24Busy makes srv answer BUSY (a script running past
// busy-reply-threshold) until the returned function kills the script.
func review24Busy(t *testing.T, srv *redistest.Server) (stop func()) {
	t.Helper()
	admin := srv.Client()
	must(t, admin.ConfigSet(bg, "busy-reply-threshold", "1").Err())
	looper := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ReadTimeout: -1})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		looper.Eval(bg, "while true do end", nil)
	}()
	probe := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	for {
		err := probe.Exists(bg, "probe").Err()
		if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
			break
		}
	}
	probe.Close()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		for {
			err := admin.Do(bg, "SCRIPT", "KILL").Err()
			if err == nil || strings.Contains(err.Error(), "NOTBUSY") {
				break
			}
		}
		<-ended
		looper.Close()
	}
	t.Cleanup(stop)
	return stop
}

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
	stop := review24Busy(t, srv)
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
