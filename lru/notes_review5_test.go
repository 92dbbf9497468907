package lru_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
)

// The Cache's view of TestReview5KnownDoesNotDemoteProtectedNotes: sessions
// written again fill protected (one shard of 10 entries: 8); then a storm
// of sessions each written once (EndNoted) and then read (Set, a fill from
// the source, which supersedes the note) and of sessions only written
// once. A Set of a session noted once, while protected is at its share,
// strips one session written again of its protection (known finds the note
// with use, demoting protected's tail, before forgetting it), and the
// sessions written once then forget it: a session written again loses its
// note to a flood of sessions written once although protected never held
// more than its share (one per read made while protected is full).
func TestReview5CacheReadOfNotedSessionKeepsProtectedNotes(t *testing.T) {
	c := newCache(t, lru.Limits{MaxEntries: 10}, nil)
	for round := range 2 {
		for i := range 8 {
			noteWrite(c, fmt.Sprint("user", i), digestOf(fmt.Sprint("v", round+1)))
		}
	}
	for i := range 20 {
		noteWrite(c, fmt.Sprint("bot-read", i), digestOf("x"))
		c.Set(fmt.Sprint("bot-read", i), []byte("x"), time.Minute, time.Hour)
		noteWrite(c, fmt.Sprint("bot", i), digestOf("x"))
	}
	if lost := notesLost(c, 8, digestOf("v2")); lost > 0 {
		t.Fatalf("%d of 8 sessions written again (the protected share of 10) lost their note to a storm of sessions written once, half of them read back", lost)
	}
}
