package lru_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sessiontier/sessiontier/lru"
)

func TestSegmentedEvictsProbationFirstAndReports(t *testing.T) {
	var evicted []string
	s := lru.NewSegmented[int](10, 1<<20, func(key string, _ int) { evicted = append(evicted, key) })
	for i := range 5 {
		s.Add(fmt.Sprint("used", i), i, 1)
		s.Get(fmt.Sprint("used", i))
	}
	for i := range 100 {
		s.Add(fmt.Sprint("once", i), i, 1)
		if s.Len() > 10 {
			t.Fatalf("Len = %d; want at most 10", s.Len())
		}
	}
	for i := range 5 {
		if _, ok := s.Peek(fmt.Sprint("used", i)); !ok {
			t.Fatalf("used%d was evicted by keys added once", i)
		}
	}
	if len(evicted) != 95 || s.Evictions() != 95 {
		t.Fatalf("onEvict saw %d, Evictions %d; want 95", len(evicted), s.Evictions())
	}
	if v, ok := s.Remove("used0"); !ok || v != 0 {
		t.Fatalf("Remove = %v, %v", v, ok)
	}
	n := 0
	s.Range(func(string, int) bool { n++; return true })
	if n != s.Len() || n != 9 {
		t.Fatalf("Range saw %d entries, Len %d; want 9", n, s.Len())
	}
}

func TestSegmentedByteBound(t *testing.T) {
	s := lru.NewSegmented[string](100, 10, nil)
	s.Add("a", "a", 4)
	s.Add("b", "b", 4)
	s.Add("c", "c", 4) // 12 > 10: a goes
	if _, ok := s.Peek("a"); ok || s.Bytes() != 8 {
		t.Fatalf("after exceeding the byte bound: a present %v, Bytes %d; want a evicted, 8", ok, s.Bytes())
	}
	if s.Add("huge", "x", 11) {
		t.Fatal("an entry larger than the byte bound was stored")
	}
}

// TestSegmentedNeverReportsAnEvictedAdd: protected entries filling the
// byte bound neither evict a new entry that fits in probation's share nor
// let Add report as stored an entry that is gone.
func TestSegmentedNeverReportsAnEvictedAdd(t *testing.T) {
	var evicted []string
	s := lru.NewSegmented[int](100, 1000, func(key string, _ int) { evicted = append(evicted, key) })
	for i := range 10 { // 1000 bytes, all read again
		s.Add(fmt.Sprint("used", i), i, 100)
		s.Get(fmt.Sprint("used", i))
	}
	// Protected keeps at most 800 bytes: the new entry's 200 fit.
	if !s.Add("new", 0, 200) {
		t.Fatal("an entry within probation's share was refused")
	}
	if _, ok := s.Peek("new"); !ok {
		t.Fatal("Add reported as stored an entry it evicted")
	}
	if s.Bytes() > 1000 {
		t.Fatalf("Bytes = %d; want at most 1000", s.Bytes())
	}
	// 800 protected bytes plus 300 cannot fit: refused, and nothing is
	// evicted in vain.
	before := len(evicted)
	if s.Add("big", 0, 300) {
		t.Fatal("an entry that cannot fit beside the protected ones was reported stored")
	}
	if _, ok := s.Peek("big"); ok || len(evicted) != before {
		t.Fatalf("refused entry present %v, %d entries evicted for it; want absent, none", ok, len(evicted)-before)
	}
}

// TestSegmentedAddKeepsWhatItReports drives random adds, uses and removals
// and checks after each Add that it reported exactly what it kept, that an
// entry within probation's share, or replacing one, is always kept, and the
// bounds.
func TestSegmentedAddKeepsWhatItReports(t *testing.T) {
	const maxEntries, maxBytes = 20, 1000
	const seed = 1
	rng := rand.New(rand.NewPCG(seed, 0))
	s := lru.NewSegmented[int](maxEntries, maxBytes, nil)
	for i := range 20_000 {
		key := fmt.Sprint(rng.IntN(40))
		switch rng.IntN(4) {
		case 0:
			s.Get(key)
		case 1:
			s.Remove(key)
		default:
			size := 1 + rng.Int64N(900)
			_, present := s.Peek(key)
			stored := s.Add(key, i, size)
			v, ok := s.Peek(key)
			if stored != (ok && v == i) {
				t.Fatalf("seed %d, step %d: Add(size %d) = %v, present %v", seed, i, size, stored, ok)
			}
			if (size <= maxBytes/5 || present) && !stored {
				t.Fatalf("seed %d, step %d: Add(size %d, present %v) refused an entry within probation's share or replacing one", seed, i, size, present)
			}
		}
		var sum int64
		s.Range(func(string, int) bool { sum++; return true })
		if s.Len() > maxEntries || s.Bytes() > maxBytes || sum != int64(s.Len()) {
			t.Fatalf("seed %d, step %d: Len %d (Range %d), Bytes %d; want within %d, %d", seed, i, s.Len(), sum, s.Bytes(), maxEntries, maxBytes)
		}
	}
}
