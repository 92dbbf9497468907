package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestAbandonedSetCannotUndoAReplayedDelete: a SET is held in the network
// past OpTimeout (as a TCP retransmission would); the Set is accepted into
// the outage tier; the session is then deleted during the outage (a
// tombstone) and the delete replayed once Redis answers again. When the
// held packet finally reaches Redis, the session must not come back: the
// replay fenced the connection that carried the SET before replaying.
func TestAbandonedSetCannotUndoAReplayedDelete(t *testing.T) {
	srv, proxy, s := proxiedStore(t, tiered.Options{
		Breaker: breaker.Settings{Failures: 1, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
	})
	plain := srv.Client()

	const value = "held-in-the-network"
	hold := proxy.Hold([]byte(value))
	defer hold.Release()
	start := time.Now()
	if err := s.Set(bg, "victim", []byte(value), time.Hour); err != nil {
		t.Fatalf("Set with its SET held: %v; want it accepted into the outage tier", err)
	}
	select {
	case <-hold.Held():
	default:
		t.Fatal("the SET did not reach the proxy")
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("Set returned after %v; want it abandoned at OpTimeout (100ms)", took)
	}
	srv.Pause() // the outage: the delete can only be a tombstone
	if err := s.Delete(bg, "victim"); err != nil {
		t.Fatalf("Delete during the outage: %v", err)
	}
	if st := s.Stats(); st.PendingDeletes != 1 {
		t.Fatalf("Stats after the Delete = %+v; want a tombstone", st)
	}
	srv.Resume()
	waitReplayed(t, s)

	// The held SET reaches Redis now, if its connection is still open; wait
	// until Redis has dropped that connection, so that it executed whatever
	// it received on it.
	hold.Release()
	waitFor(t, "Redis to drop the held connection", func() bool {
		list, err := plain.ClientList(bg).Result()
		return err == nil && !strings.Contains(list, " addr="+hold.Addr()+" ")
	})
	if n := plain.Exists(bg, "session:victim").Val(); n != 0 {
		t.Fatal("a SET abandoned before the delete landed after its replay: the session is back in Redis")
	}
	if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after the replayed delete = %q, %v; want ErrNotFound", v, err)
	}
}
