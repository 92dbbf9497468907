package tiered

import (
	"slices"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
)

// Once replay applied a delete of a session and left it no outage state,
// Redis is known to hold no key: a write of it accepted in a later outage
// must replay onto the absent key. The replay's DEL left the local tier
// as it was, so the base of that write was the copy the store held before
// the delete (out of service after concurrent changes, as review 37's
// stress test left it): the write conflicted with the store's own delete,
// and was lost (alerted as a conflict). The recovery loop is stopped here,
// so the test replays when it chooses.
func TestReplayedDeleteLeavesTheAbsentKeyAsTheBase(t *testing.T) {
	srv := redistest.Start(t)
	s := review31Store(t, srv.Addr, Options{})
	if err := s.Set(bg31, "x", []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(bg31, "x"); err != nil {
		t.Fatal(err)
	}
	// As a Delete accepted during an outage, overlapped by another change
	// of x, leaves it: a tombstone, and the copy out of service.
	s.local.EndRevoke(s.local.Begin("x"))
	if !s.out.tombstone("x") {
		t.Fatal("no room for a tombstone")
	}
	if !s.replay(bg31, false) {
		t.Fatal("the replay did not drain")
	}
	if n := srv.Client().Exists(bg31, "session:x").Val(); n != 0 {
		t.Fatal("the replayed DEL did not delete x")
	}
	// (An invalidation of x overlapping the replay's local write may keep
	// the copy beside the absent key.)
	if bases := s.lastSeen("x"); !slices.Contains(bases, "") {
		t.Fatalf("after its DEL was replayed, x's bases are %q; want the absent key among them", bases)
	}
}
