package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
)

// The telemetry cost pair: a local hit through GetShared (span, histogram,
// with the global no-op providers) and the same hit with telemetry removed
// (the unexported get that GetShared wraps); neither copies the value. Compare within one run:
//
//	go test -run '^$' -bench 'HitTelemetry' -benchmem -count 6 ./tiered
func benchHitStore(b *testing.B) (*Store, []string) {
	srv := redistest.Start(b)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { client.Close() })
	s, err := New(client, Options{Local: lru.Limits{MaxEntries: 20_000, MaxBytes: 256 << 20}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Invalidation == "connecting"; {
		if time.Now().After(deadline) {
			b.Fatal("the invalidation stream did not come up")
		}
		time.Sleep(time.Millisecond)
	}
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("hit-%06d", i)
		if err := s.Set(context.Background(), ids[i], make([]byte, 1024), time.Hour); err != nil {
			b.Fatal(err)
		}
		// A read makes the local copy: in per-key mode (the default) a
		// Set of a session this instance does not hold keeps none.
		if _, err := s.GetShared(context.Background(), ids[i]); err != nil {
			b.Fatal(err)
		}
	}
	if st := s.Stats(); st.LocalEntries != len(ids) {
		b.Fatalf("the local tier holds %d of the %d sessions: the pair would not time hits", st.LocalEntries, len(ids))
	}
	return s, ids
}

// runHits times get on a store holding the pair's sessions, on every
// goroutine of RunParallel.
func runHits(b *testing.B, get func(s *Store, ctx context.Context, id string) error) {
	s, ids := benchHitStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if err := get(s, ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkHitTelemetryOn(b *testing.B) {
	runHits(b, func(s *Store, ctx context.Context, id string) error {
		_, err := s.GetShared(ctx, id)
		return err
	})
}

func BenchmarkHitTelemetryOff(b *testing.B) {
	runHits(b, func(s *Store, ctx context.Context, id string) error {
		tier := telemetry.TierRedis
		_, err := s.get(ctx, id, &tier)
		return err
	})
}
