package tests

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestDeleteAfterAnEvictedWriteInFlightIsNotUndone: a write accepted
// during an outage is being replayed when a newer write of another session
// evicts it from a full outage tier (its loss is counted: it may not
// land). The same store then deletes that session: nothing of it is
// pending any more, so the Delete goes to Redis at once and succeeds. The
// replay's SET, sent before the eviction, arrives after the DEL (the key
// was absent, so the DEL did not touch the transaction's WATCH): the
// deleted session must not be back. Found by TestRandomFaults, whose store
// A holds 4 pending writes.
func TestDeleteAfterAnEvictedWriteInFlightIsNotUndone(t *testing.T) {
	for name, mode := range map[string]tiered.Invalidation{"tracking": tiered.InvalidationTracking, "per-key": tiered.InvalidationPerKey, "publish": tiered.InvalidationPublish} {
		t.Run(name, func(t *testing.T) {
			const small = 64 // bytes of each value but the last
			srv, proxy, s := proxiedStore(t, tiered.Options{
				Invalidation: mode,
				OpTimeout:    time.Second, // the held replay must not time out: it is answered
				Breaker:      breaker.Settings{Failures: 1, OpenTimeout: 50 * time.Millisecond, MaxOpenTimeout: time.Second},
				Fallback:     lru.Limits{MaxEntries: 8, MaxBytes: 2*lru.EntryOverhead + 4*small},
			})
			plain := srv.Client()
			tripper := strings.Repeat("t", small)
			doomed := "doomed-" + strings.Repeat("d", small-7)

			srv.Pause()
			if err := s.Set(bg, "tripper", []byte(tripper), time.Hour); err != nil { // times out: the breaker opens
				t.Fatalf("Set while Redis is frozen: %v; want it accepted into the outage tier", err)
			}
			if err := s.Set(bg, "victim", []byte(doomed), time.Hour); err != nil {
				t.Fatal(err)
			}
			hold := proxy.Hold([]byte(doomed)) // the replay's SET of victim
			defer hold.Release()
			srv.Resume()
			<-hold.Held()

			// tripper is pending: this write queues behind it, and takes
			// the room of victim's.
			big := strings.Repeat("b", 3*small)
			if err := s.Set(bg, "tripper", []byte(big), time.Hour); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.PendingLost == 0 {
				t.Fatalf("Stats %+v: the pending write of victim was not evicted (the test's premise)", st)
			}
			if err := s.Delete(bg, "victim"); err != nil {
				t.Fatal(err)
			}
			hold.Release()
			waitReplayed(t, s)

			if v, err := plain.Get(bg, "session:victim").Result(); err == nil {
				t.Errorf("Redis holds %.16q for victim after its Delete returned nil: the replayed write landed after it", v)
			}
			if v, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
				t.Errorf("Get(victim) after its Delete = %.16q, %v; want ErrNotFound", v, err)
			}
			if v := plain.Get(bg, "session:tripper").Val(); v != big {
				t.Errorf("Redis holds %.16q for tripper; want the last acknowledged write", v)
			}
		})
	}
}
