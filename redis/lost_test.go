package redis

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// confirmHandler counts the stream's confirmations.
type confirmHandler struct{ up atomic.Int32 }

func (*confirmHandler) Changed([]string)       {}
func (*confirmHandler) Flushed()               {}
func (h *confirmHandler) Lost()                { h.up.Store(0) }
func (h *confirmHandler) Confirmed(ListenMode) { h.up.Store(1) }

// A write queued for the tracked connection that finds it gone when its
// turn comes (the connection was lost after the write checked that it was
// up: killed by a Fence, or by its read deadline) was not sent: it goes
// through the lanes, within what is left of its bound, and lands. Failing
// it instead would send every write queued behind a killed connection to
// the outage tier, and replay them.
func TestWriteQueuedWhenTheTrackedConnectionIsLostGoesAnotherWay(t *testing.T) {
	for _, mode := range []ListenMode{ListenPerKey, ListenTracking} {
		srv := redistest.Start(t)
		client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		defer client.Close()
		h := &confirmHandler{}
		l := NewListener(client, ListenerConfig{Prefix: "lost:", Mode: mode, Timeout: time.Second}, h)
		tr, err := New(client, Config{Prefix: "lost:", Timeout: time.Second, Listener: l})
		if err != nil {
			t.Fatal(err)
		}
		l.Start()
		for deadline := time.Now().Add(5 * time.Second); h.up.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the tracked connection did not come up")
			}
		}
		// The window between a write's check that the connection is up and
		// the flusher's turn, held open: the connection is gone, up is not
		// cleared yet.
		l.tracked.mu.Lock()
		conn := l.tracked.conn
		l.tracked.conn = nil
		l.tracked.mu.Unlock()
		err = tr.Set(context.Background(), "a", []byte("v"), time.Minute)
		l.tracked.mu.Lock()
		l.tracked.conn = conn
		l.tracked.mu.Unlock()
		if err != nil {
			t.Errorf("mode %v: a write the lost connection never sent failed: %v; want it sent through the lanes", mode, err)
		} else if v := srv.Client().Get(context.Background(), "lost:a").Val(); v != "v" {
			t.Errorf("mode %v: Redis holds %q after the write; want %q", mode, v, "v")
		}
		l.Close()
		tr.Close()
	}
}
