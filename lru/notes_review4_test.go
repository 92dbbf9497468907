package lru_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
)

// Review 4 (910f221: the notes in pointer-free slots linked by index).

// README: "At most Local.MaxEntries sessions are noted, within
// lru.NoteBytes (208) bytes each on average"; NoteBytes: "all the notes
// of a Cache take at most NoteBytes times MaxEntries". A login storm
// notes every session (one digest each: the slots, one per entry allowed,
// and the map of hashes grow to MaxEntries); then sessions whose writes
// overlap or end unknown (clients that go away) keep 16 digests each,
// charged 808 bytes: a quarter as many notes. The slots' array and the
// map of hashes keep their size (they never shrink), and each full note
// adds an array of 28 digests (576 bytes: append to a clipped slice of 14
// doubles it) and an entry of notes.more: 252 heap bytes per entry
// allowed on 910f221. (The simplelru notes before, whose entries were
// freed with their notes, took 215 in this test: over too, by less.)
// Fails on 910f221.
func TestReview4NoteBytesBoundsFullNotesAfterAFlood(t *testing.T) {
	const n = 20_000
	keys := make([]string, 2*n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%011d", i)
	}
	before := tiertest.HeapAfterGC()
	c, err := lru.New(lru.Limits{MaxEntries: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys[:n] { // the storm: one note a session
		c.EndNoted(c.Begin(k), lru.Digest{byte(i), byte(i >> 8), byte(i >> 16)}, time.Hour)
	}
	if got := c.Stats().Notes; got < n*9/10 {
		t.Fatalf("precondition: %d notes after the storm of %d sessions", got, n)
	}
	for i, k := range keys[n:] { // then sessions written by requests that go away
		for j := range lru.MaxNoted {
			c.EndUnsure(c.Begin(k), lru.Digest{byte(i), byte(i >> 8), byte(i >> 16), byte(j), 1}, time.Hour)
		}
	}
	after := tiertest.HeapAfterGC()
	notes := c.Stats().Notes
	if got := len(c.Noted(keys[2*n-1])); got != lru.MaxNoted {
		t.Fatalf("precondition: %d digests noted of the last session; want %d", got, lru.MaxNoted)
	}
	runtime.KeepAlive(keys)
	runtime.KeepAlive(c)
	perEntry := float64(after-before) / n
	t.Logf("%d notes kept for %d entries allowed: %.0f heap bytes per entry allowed", notes, n, perEntry)
	if perEntry > lru.NoteBytes {
		t.Fatalf("after a storm of new sessions, notes of %d digests take %.0f heap bytes per entry allowed; NoteBytes (the README's bound) is %d",
			lru.MaxNoted, perEntry, lru.NoteBytes)
	}
}

// keyDigest is a digest of key number k's j-th write: every digest names
// its key, so a digest noted of another key is seen.
func keyDigest(k, j int) lru.Digest {
	return lru.Digest{0xEE, byte(k), byte(k >> 8), byte(k >> 16), byte(j), byte(j >> 8)}
}

// ownDigests checks that every digest noted of key number k is its own or
// the absent key's, and that they are at most MaxNoted.
func ownDigests(k int, ds []lru.Digest) error {
	if len(ds) > lru.MaxNoted {
		return fmt.Errorf("key %d: %d digests noted; MaxNoted is %d", k, len(ds), lru.MaxNoted)
	}
	for _, d := range ds {
		if d == lru.Absent {
			continue
		}
		if d[0] != 0xEE || int(d[1])|int(d[2])<<8|int(d[3])<<16 != k {
			return fmt.Errorf("key %d: digest %x noted, a value of key %d", k, d[:6], int(d[1])|int(d[2])<<8|int(d[3])<<16)
		}
	}
	return nil
}

// Through the Cache, on one shard of 512 keys: keys noted with 1 to 6
// digests (overlapped and unsure writes), deleted, read, touched, flooded
// past the bound, purged: slots freed by every path are taken by other
// keys. Every key's notes must hold only its own digests (a slot's older
// digests inherited by the key that takes it would be bases of values it
// never wrote), at most MaxEntries keys noted, and the most recently
// written keys kept. Passes on 910f221.
func TestReview4CacheNotesKeepOnlyTheirKeysDigests(t *testing.T) {
	const max = 512 // one shard
	clock := tiertest.NewClock()
	c := newCache(t, lru.Limits{MaxEntries: max}, clock)
	key := func(k int) string { return fmt.Sprint("s-", k) }
	const keys = 4 * max
	for round := range 3 {
		for k := range keys {
			writes := 1 + (k+round)%6
			if writes == 1 {
				c.EndNoted(c.Begin(key(k)), keyDigest(k, round), time.Hour)
			} else {
				ws := make([]lru.Write, writes)
				for j := range ws {
					ws[j] = c.Begin(key(k))
				}
				for j, w := range ws {
					if j%2 == 0 {
						c.EndUnsure(w, keyDigest(k, round*16+j), time.Hour)
					} else {
						c.EndNoted(w, keyDigest(k, round*16+j), time.Hour)
					}
				}
			}
			switch (k * 7) % 11 {
			case 0:
				c.EndDelete(c.Begin(key(k)))
			case 1:
				c.Set(key(k), []byte("v"), time.Hour, time.Hour) // known: keeps unsure digests but the absent key
			case 2:
				c.EndTouch(c.Begin(key(k)), 2*time.Hour)
			case 3:
				if k > 10 {
					c.EndDelete(c.Begin(key(k - 10))) // an older key's slot freed
				}
			}
			if k%97 == 0 {
				for j := k - min(k, 600); j <= k; j++ {
					if err := ownDigests(j, c.Noted(key(j))); err != nil {
						t.Fatalf("round %d, after key %d: %v", round, k, err)
					}
				}
			}
		}
		if got := c.Stats().Notes; got > max {
			t.Fatalf("round %d: %d keys noted; MaxEntries %d", round, got, max)
		}
		for k := range keys {
			if err := ownDigests(k, c.Noted(key(k))); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		// The last key written once, alone, and kept: it is noted.
		last := keys - 1
		for ; (last+round)%6 != 0 || (last*7)%11 <= 3 || (last+10 < keys && ((last+10)*7)%11 == 3); last-- {
		}
		if got := c.Noted(key(last)); len(got) == 0 || got[len(got)-1] != keyDigest(last, round) {
			t.Fatalf("round %d: the last session written alone (%d) has notes %x; want its own digest last", round, last, got)
		}
		if round == 1 {
			c.Purge()
			if got := c.Stats().Notes; got != 0 {
				t.Fatalf("%d notes after Purge", got)
			}
		}
		clock.Advance(time.Minute)
	}
}

// Noted and Stats read the notes under the shard's read lock while
// writers add new keys (the slots grow, by copying, to the shard's bound),
// overlap and end unknown writes (notes.more), read and delete keys, and
// purge. Run with -race. Every digest read is its key's or the absent
// key's, at most MaxNoted, and at most MaxEntries keys noted. Fixed
// rounds, no sleep. Passes on 910f221 (with -race).
func TestReview4NotedConcurrentWithSlotGrowth(t *testing.T) {
	const max, keys, rounds = 2048, 3000, 6000 // 4 shards of 512 notes
	clock := tiertest.NewClock()
	c := newCache(t, lru.Limits{MaxEntries: max}, clock)
	key := func(k int) string { return fmt.Sprint("s-", k) }
	var writers, readers sync.WaitGroup
	for g := range 2 {
		writers.Go(func() {
			for i := range rounds {
				k := (i*7 + g*1499) % keys
				switch i % 8 {
				case 0, 1, 2:
					c.EndNoted(c.Begin(key(k)), keyDigest(k, i), time.Hour)
				case 3:
					w1, w2 := c.Begin(key(k)), c.Begin(key(k))
					c.EndUnsure(w1, keyDigest(k, i), time.Hour)
					c.EndNoted(w2, keyDigest(k, i+1), time.Hour)
				case 4:
					c.Set(key(k), []byte("v"), time.Hour, time.Hour)
				case 5:
					c.EndDelete(c.Begin(key(k)))
				case 6:
					c.EndTouch(c.Begin(key(k)), time.Hour)
				case 7:
					if i%2000 == 7 {
						c.Purge()
					} else {
						c.EndUnsure(c.Begin(key(k)), keyDigest(k, i), time.Hour)
					}
				}
			}
		})
	}
	done := make(chan struct{})
	var failed sync.Once
	for r := range 2 {
		readers.Go(func() {
			for pass := 0; ; pass++ {
				select {
				case <-done:
					return
				default:
				}
				for k := r; k < keys; k += 2 {
					if err := ownDigests(k, c.Noted(key(k))); err != nil {
						failed.Do(func() { t.Errorf("pass %d: %v", pass, err) })
						return
					}
				}
				if n := c.Stats().Notes; n > max {
					failed.Do(func() { t.Errorf("%d keys noted; MaxEntries %d", n, max) })
					return
				}
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()
	noted := 0
	for k := range keys {
		ds := c.Noted(key(k))
		if err := ownDigests(k, ds); err != nil {
			t.Fatal(err)
		}
		if len(ds) > 0 {
			noted++
		}
	}
	if noted == 0 || noted > max {
		t.Fatalf("%d keys noted at the end; want some, at most %d", noted, max)
	}
}
