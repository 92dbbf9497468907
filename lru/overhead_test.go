package lru_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
)

// TestEntryOverheadCoversTheHeap checks that EntryOverhead is no smaller
// than what an entry really costs on the heap beyond its key and value.
// Map growth makes the cost per entry vary with the count, so several
// counts are tried.
func TestEntryOverheadCoversTheHeap(t *testing.T) {
	for _, n := range []int{20_000, 33_000, 50_000, 70_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { checkOverhead(t, n) })
	}
}

func checkOverhead(t *testing.T, n int) {
	const valueSize = 112 // a size class of its own: no rounding up
	keys := make([]string, n)
	values := make([][]byte, n)
	for i := range n {
		keys[i] = fmt.Sprintf("key-%011d", i) // 16 bytes, a size class of its own
		values[i] = make([]byte, valueSize)
	}
	before := tiertest.HeapAfterGC()
	c, err := lru.New(lru.Limits{MaxEntries: 2 * n, MaxBytes: 1 << 30}, nil) // room to spare in every shard
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c.Set(keys[i], values[i], time.Hour, time.Hour)
	}
	after := tiertest.HeapAfterGC()
	perEntry := float64(after-before) / float64(n)
	t.Logf("heap per entry beyond key and value: %.0f bytes (EntryOverhead %d)", perEntry, lru.EntryOverhead)
	if perEntry > lru.EntryOverhead {
		t.Fatalf("an entry costs %.0f heap bytes beyond its key and value; EntryOverhead is %d", perEntry, lru.EntryOverhead)
	}
	if got := c.Stats().Entries; got != n {
		t.Fatalf("Entries = %d; want %d", got, n)
	}
	runtime.KeepAlive(keys)
	runtime.KeepAlive(values)
}

// notesHeap returns a Cache of n entries whose notes fill wrote, given n
// keys of 16 bytes (their strings are not counted), and the heap it grew
// by.
func notesHeap(t *testing.T, n int, fill func(c *lru.Cache, keys []string)) (*lru.Cache, int64) {
	t.Helper()
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("key-%011d", i)
	}
	before := tiertest.HeapAfterGC()
	c, err := lru.New(lru.Limits{MaxEntries: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(c, keys)
	after := tiertest.HeapAfterGC()
	runtime.KeepAlive(keys)
	return c, int64(after - before)
}

// TestNoteBytesCoversTheHeap checks that NoteBytes is no smaller than the
// heap a note takes, its key not retained, at the fill levels of a shard's
// LRU and map that cost most.
func TestNoteBytesCoversTheHeap(t *testing.T) {
	for _, n := range []int{20_000, 33_000, 50_000, 70_000, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, heap := notesHeap(t, n, func(c *lru.Cache, keys []string) {
				for i, k := range keys {
					c.EndNoted(c.Begin(k), lru.Digest{byte(i)}, time.Hour)
				}
			})
			notes := c.Stats().Notes
			perNote := float64(heap) / float64(notes)
			t.Logf("heap per note: %.0f bytes (NoteBytes %d), %d notes", perNote, lru.NoteBytes, notes)
			if notes < n*9/10 {
				t.Fatalf("%d notes of %d keys", notes, n)
			}
			if perNote > lru.NoteBytes {
				t.Fatalf("a note costs %.0f heap bytes; NoteBytes is %d", perNote, lru.NoteBytes)
			}
		})
	}
}
