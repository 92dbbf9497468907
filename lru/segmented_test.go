package lru_test

import (
	"fmt"
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
