package lru_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
)

// Review (notes): a note forgotten by EndDelete frees its key's place, as
// EndNoted documents ("each shard notes at most as many keys as it holds
// entries, forgetting the key noted first"): a shard that notes 1 key
// of 600 must not forget it to note a second one. The ring (now an LRU)
// reused its slots in order, live or dead, so there it did.
func TestReviewNotesAForgottenNoteFreesItsPlace(t *testing.T) {
	const max = 600 // one shard
	c := newCache(t, lru.Limits{MaxEntries: max}, nil)
	c.EndNoted(c.Begin("keep"), digestOf("keep"), time.Hour)
	for i := range max - 1 { // sessions written, then deleted by this process
		k := fmt.Sprint("gone-", i)
		c.EndNoted(c.Begin(k), digestOf(k), time.Hour)
		c.EndDelete(c.Begin(k))
	}
	if n := c.Stats().Notes; n != 1 {
		t.Fatalf("%d notes, want 1", n)
	}
	c.EndNoted(c.Begin("new"), digestOf("new"), time.Hour)
	if n, got := c.Stats().Notes, c.Noted("keep"); !slices.Equal(got, []lru.Digest{digestOf("keep")}) {
		t.Fatalf("with %d keys noted of %d allowed, the note of keep is %v: forgotten to make room", n, max, got)
	}
}

// Review (notes): NoteBytes (128) is documented as the most heap a note
// takes, and the README bounds the notes' memory with it (12 MiB at the
// default MaxEntries). A key whose writes overlapped keeps up to 7 older
// digests in note.more, a slice that put reused (more[:0]) and never
// frees: about 160 bytes more. TestNoteBytesCoversTheHeap notes one
// digest per key, so it does not see it.
func TestReviewNotesNoteBytesCoversOverlappedWrites(t *testing.T) {
	const n = 20_000
	c, heap := notesHeap(t, n, func(c *lru.Cache, keys []string) {
		for i, k := range keys {
			var ws []lru.Write
			for range 8 { // a hot session: 8 requests writing it at once
				ws = append(ws, c.Begin(k))
			}
			for j, w := range ws {
				c.EndNoted(w, lru.Digest{byte(i), byte(i >> 8), byte(j)}, time.Hour)
			}
			c.EndNoted(c.Begin(k), lru.Digest{byte(i), byte(i >> 8), 0xff}, time.Hour) // then alone: one digest noted
		}
	})
	notes := c.Stats().Notes
	perNote := float64(heap) / float64(notes)
	if notes < n*9/10 {
		t.Fatalf("%d notes of %d keys", notes, n)
	}
	if perNote > lru.NoteBytes {
		t.Fatalf("a note costs %.0f heap bytes (one digest noted, after overlapped writes); NoteBytes is %d", perNote, lru.NoteBytes)
	}
}
