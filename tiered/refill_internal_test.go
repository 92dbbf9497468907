package tiered

import (
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
)

// A read of Redis must not fill the local tier with a session that has
// outage state: Redis holds what the state's replay has not replaced
// yet. The refill (a read, off the request path, of a session this store
// wrote lately whose copy an invalidation dropped) did so: with a Delete
// accepted during an outage and its DEL not replayed yet, it kept the
// deleted session's old value, served once the replay drained the outage
// tier, until the DEL's own invalidation came; with a pending write, the
// value it replaces. Here the recovery loop is stopped, so the tombstone
// waits, and load is the refill's read.
func TestLoadDoesNotFillASessionWithOutageState(t *testing.T) {
	srv := redistest.Start(t)
	s := review31Store(t, srv.Addr, Options{Invalidation: InvalidationTracking})
	for _, id := range []string{"deleted", "written"} {
		if err := srv.Client().Set(bg31, "session:"+id, "redis", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// As a Delete and a Set accepted during an outage leave them.
	if !s.out.tombstone("deleted") {
		t.Fatal("no room for a tombstone")
	}
	if stored, _ := s.out.write("written", []byte("outage"), time.Now().Add(time.Hour), func() []string { return []string{""} }, false); !stored {
		t.Fatal("the outage write was not stored")
	}
	for _, id := range []string{"deleted", "written"} {
		if v, err := s.load(bg31, id); err != nil || string(v) != "redis" {
			t.Fatalf("load(%s) = %q, %v; want what Redis holds", id, v, err)
		}
		if v, _, ok := s.local.Get(id); ok {
			t.Fatalf("the local tier holds %q of %s, read from Redis while its outage state was not replayed", v, id)
		}
	}
}
