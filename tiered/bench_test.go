package tiered_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	golanglru "github.com/hashicorp/golang-lru/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

// The hit-path benchmarks read Zipf(1.1)-distributed ids over benchSessions
// sessions of benchValueSize bytes, every cache large enough for all of
// them and warmed before timing. Compare them within one run:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./tiered
const (
	benchSessions  = 100_000
	benchValueSize = 1024
)

var benchIDs = func() []string {
	ids := make([]string, benchSessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-session-%08d", i)
	}
	return ids
}()

// benchSeed gives every goroutine's picker its own seed.
var benchSeed atomic.Int64

// newPicker returns a per-goroutine source of Zipf(1.1) indexes. The draws
// are made before timing: a Zipf draw costs more than a cache hit.
func newPicker() func() int {
	r := rand.New(rand.NewSource(benchSeed.Add(1)))
	z := rand.NewZipf(r, 1.1, 1, benchSessions-1)
	draws := make([]int32, 1<<16)
	for i := range draws {
		draws[i] = int32(z.Uint64())
	}
	n := 0
	return func() int {
		n++
		return int(draws[n&(len(draws)-1)])
	}
}

func benchStore(b *testing.B, local lru.Limits) (*tiered.Store, *goredis.Client) {
	b.Helper()
	srv := redistest.Start(b)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, PoolSize: 64})
	b.Cleanup(func() { client.Close() })
	s, err := tiered.New(client, tiered.Options{Local: local, OpTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	waitStream(b, s)
	value := make([]byte, benchValueSize)
	eachSession(b, func(id string) error { return s.Set(context.Background(), id, value, time.Hour) })
	// A new session is cached by its first read, not by its write
	// (per-key mode, the default): read each once, once no write is in
	// flight, which would void a read's fill.
	eachSession(b, func(id string) error { _, err := s.Get(context.Background(), id); return err })
	return s, client
}

// eachSession calls fn with every bench session id, on 32 goroutines, and
// returns once all calls have; each goroutine stops at its first error.
func eachSession(b *testing.B, fn func(id string) error) {
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < benchSessions; i += 32 {
				if err := fn(benchIDs[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// waitStream waits for the store's invalidation stream: until then local
// hits are not served.
func waitStream(b *testing.B, s *tiered.Store) {
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Invalidation == "connecting"; {
		if time.Now().After(deadline) {
			b.Fatal("the invalidation stream did not come up")
		}
		time.Sleep(time.Millisecond)
	}
}

// runGets times get over Zipf-picked session ids on every goroutine of
// RunParallel; get reports a failure as a non-empty string.
func runGets(b *testing.B, get func(id string) string) {
	runtime.GC() // no warm-up garbage left to the timed loop
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pick := newPicker()
		for pb.Next() {
			if failure := get(benchIDs[pick()]); failure != "" {
				b.Error(failure)
				return
			}
		}
	})
}

// storeGet is runGets's get for a Store.
func storeGet(s *tiered.Store) func(string) string {
	ctx := context.Background()
	return func(id string) string {
		if _, err := s.Get(ctx, id); err != nil {
			return err.Error()
		}
		return ""
	}
}

var roomForAll = lru.Limits{MaxEntries: 2 * benchSessions, MaxBytes: 4 * benchSessions * (benchValueSize + lru.EntryOverhead)}

// BenchmarkGetLocalHit: Store.Get answered by the local tier, including
// the copy handed to the caller.
func BenchmarkGetLocalHit(b *testing.B) {
	s, _ := benchStore(b, roomForAll)
	if st := s.Stats(); st.LocalEntries != benchSessions {
		b.Fatalf("warm-up left %d local entries; want %d", st.LocalEntries, benchSessions)
	}
	runGets(b, storeGet(s))
}

// BenchmarkGetMiss: Store.Get with no local tier, one GET+PTTL round trip
// to a local redis-server per call.
func BenchmarkGetMiss(b *testing.B) {
	s, _ := benchStore(b, lru.Limits{MaxEntries: -1})
	runGets(b, storeGet(s))
}

// BenchmarkBareGolangLRUGet is the reference: a bare golang-lru/v2 cache
// (one mutex, taken exclusively on every hit), no copy of the value.
func BenchmarkBareGolangLRUGet(b *testing.B) {
	c := bareGolangLRU(b)
	runGets(b, func(id string) string {
		if _, ok := c.Get(id); !ok {
			return "miss"
		}
		return ""
	})
}

// BenchmarkBareGolangLRUGetCopy is the like-for-like reference of
// BenchmarkGetLocalHit: the bare golang-lru/v2 hit plus the copy that a
// store handing out bytes the caller owns must make.
func BenchmarkBareGolangLRUGetCopy(b *testing.B) {
	c := bareGolangLRU(b)
	runGets(b, func(id string) string {
		v, ok := c.Get(id)
		if !ok {
			return "miss"
		}
		sink(bytes.Clone(v))
		return ""
	})
}

//go:noinline
func sink([]byte) {}

// bareGolangLRU returns a golang-lru/v2 cache holding every session.
func bareGolangLRU(b *testing.B) *golanglru.Cache[string, []byte] {
	c, err := golanglru.New[string, []byte](2 * benchSessions)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range benchIDs {
		c.Add(id, make([]byte, benchValueSize))
	}
	return c
}

// BenchmarkLocalTierGet: the local tier alone (lru.Cache), no copy: the
// part of a Store hit that the cache design decides.
func BenchmarkLocalTierGet(b *testing.B) {
	c, err := lru.New(roomForAll, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range benchIDs {
		c.Set(id, make([]byte, benchValueSize), time.Hour, time.Hour)
	}
	runGets(b, func(id string) string {
		if _, _, ok := c.Get(id); !ok {
			return "miss"
		}
		return ""
	})
}
