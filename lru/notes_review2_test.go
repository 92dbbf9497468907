package lru_test

import (
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
)

// Review 2 (notes, 8622a0e): the README bounds the notes' memory at
// NoteBytes times Local.MaxEntries. A note keeps up to MaxNoted (16)
// digests as long as no write of its key ends sure, and EndUnsure adds one
// per write whose outcome is unknown, overlapped or not: a session written
// by requests whose clients go away (each Set cancelled, with a value of
// its own: a CSRF token, a timestamp) keeps 16. Such a note took about 735
// bytes, and the notes about 70 MiB at the default MaxEntries, not the
// 18 MiB documented. Now a note is charged by its digests, and the notes
// of a shard are bounded by bytes too: full notes, fewer of them.
func TestReviewNotes2NoteBytesBoundsFullNotes(t *testing.T) {
	const n = 20_000
	var last string
	c, heap := notesHeap(t, n, func(c *lru.Cache, keys []string) {
		for i, k := range keys {
			for j := range lru.MaxNoted {
				c.EndUnsure(c.Begin(k), lru.Digest{byte(i), byte(i >> 8), byte(j), 1}, time.Hour)
			}
		}
		last = keys[n-1]
	})
	if got := len(c.Noted(last)); got != lru.MaxNoted {
		t.Fatalf("%d digests noted; want %d", got, lru.MaxNoted)
	}
	perEntry := float64(heap) / n
	t.Logf("%d full notes kept of %d keys; heap %.0f bytes per entry allowed", c.Stats().Notes, n, perEntry)
	if perEntry > lru.NoteBytes {
		t.Fatalf("notes of %d digests cost %.0f heap bytes per entry allowed; NoteBytes (the README's bound) is %d", lru.MaxNoted, perEntry, lru.NoteBytes)
	}
}
