package lru

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// The index agrees with a map through inserts, replacements, deletes,
// growth and tombstone clean-ups, while readers load concurrently and
// only ever see an item of the key they asked for.
func TestIndexAgreesWithAMap(t *testing.T) {
	seed := maphash.MakeSeed()
	hash := func(k string) uint64 { return maphash.String(seed, k) >> 16 }
	var x index
	want := map[string]int{}
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				k := keys[rand.IntN(len(keys))]
				if it, ok := x.load(k, hash(k)); ok && it.key != k {
					t.Errorf("load(%s) returned the item of %s", k, it.key)
					return
				}
			}
		})
	}
	for round := range 20_000 {
		k := keys[rand.IntN(len(keys))]
		if rand.IntN(3) == 0 {
			x.remove(k, hash(k))
			delete(want, k)
		} else {
			x.store(&item{key: k, hash: hash(k), cached: cached{fresh: int64(round)}}, hash(k))
			want[k] = round
		}
		if round == 10_000 {
			x.clear()
			clear(want)
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, k := range keys {
		it, ok := x.load(k, hash(k))
		v, wok := want[k]
		if ok != wok || ok && it.fresh != int64(v) {
			t.Fatalf("%s: index has %v (%v), map has %v (%v)", k, ok, it, wok, v)
		}
	}
	if x.live != len(want) {
		t.Fatalf("index counts %d items; the map holds %d", x.live, len(want))
	}
	if tb := x.t.Load(); 4*(x.live+x.dead) > 3*len(tb.slots) {
		t.Fatalf("%d items and %d tombstones in %d slots: past the load factor", x.live, x.dead, len(tb.slots))
	}
}
