// Package tiertest provides the behaviour suite that every tier
// implementation of sessiontier runs: the local LRU, the Redis tier, and
// the outage tier.
package tiertest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// Tier is the common shape of a tier as the suite sees it. Each
// implementation's test adapts its own API to it.
type Tier interface {
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	Touch(ctx context.Context, key string, ttl time.Duration) (ok bool, err error)
}

// Env is one fresh tier and the means to let its time pass.
type Env struct {
	Tier Tier
	// AwaitExpiry returns once an entry written with ShortTTL just before
	// the call has expired: by advancing an injected clock, or by polling
	// the tier until the entry is gone.
	AwaitExpiry func(t *testing.T, key string)
}

// ShortTTL is the TTL the suite uses for entries it lets expire.
const ShortTTL = 50 * time.Millisecond

// Run runs the suite; newEnv returns a fresh, empty tier per subtest.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	ctx := context.Background()
	t.Run("RoundTrip", func(t *testing.T) {
		tier := newEnv(t).Tier
		mustSet(t, tier, "a", []byte("alpha"), time.Hour)
		mustSet(t, tier, "empty", []byte{}, time.Hour)
		wantValue(t, tier, "a", "alpha")
		wantValue(t, tier, "empty", "")
		wantMissing(t, tier, "never-written")
	})
	t.Run("Overwrite", func(t *testing.T) {
		tier := newEnv(t).Tier
		mustSet(t, tier, "a", []byte("one"), time.Hour)
		mustSet(t, tier, "a", []byte("two, longer"), time.Hour)
		wantValue(t, tier, "a", "two, longer")
	})
	t.Run("Delete", func(t *testing.T) {
		tier := newEnv(t).Tier
		mustSet(t, tier, "a", []byte("alpha"), time.Hour)
		mustSet(t, tier, "b", []byte("beta"), time.Hour)
		if err := tier.Delete(ctx, "a"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := tier.Delete(ctx, "never-written"); err != nil {
			t.Fatalf("Delete of a missing key: %v", err)
		}
		wantMissing(t, tier, "a")
		wantValue(t, tier, "b", "beta")
	})
	t.Run("Expiry", func(t *testing.T) {
		env := newEnv(t)
		mustSet(t, env.Tier, "long", []byte("stays"), time.Hour)
		mustSet(t, env.Tier, "short", []byte("goes"), ShortTTL)
		env.AwaitExpiry(t, "short")
		wantMissing(t, env.Tier, "short")
		wantValue(t, env.Tier, "long", "stays")
	})
	t.Run("Touch", func(t *testing.T) {
		env := newEnv(t)
		mustSet(t, env.Tier, "touched", []byte("kept"), ShortTTL)
		mustSet(t, env.Tier, "witness", []byte("goes"), ShortTTL)
		ok, err := env.Tier.Touch(ctx, "touched", time.Hour)
		if err != nil || !ok {
			t.Fatalf("Touch of a present key = %v, %v; want true, nil", ok, err)
		}
		ok, err = env.Tier.Touch(ctx, "never-written", time.Hour)
		if err != nil || ok {
			t.Fatalf("Touch of a missing key = %v, %v; want false, nil", ok, err)
		}
		wantMissing(t, env.Tier, "never-written")
		env.AwaitExpiry(t, "witness")
		wantMissing(t, env.Tier, "witness")
		wantValue(t, env.Tier, "touched", "kept")
	})
	t.Run("BinaryValues", func(t *testing.T) {
		tier := newEnv(t).Tier
		v := make([]byte, 4096)
		for i := range v {
			v[i] = byte(i * 7)
		}
		mustSet(t, tier, "bin", v, time.Hour)
		got, ok, err := tier.Get(ctx, "bin")
		if err != nil || !ok || !bytes.Equal(got, v) {
			t.Fatalf("Get(bin) = %d bytes, %v, %v; want the 4096 bytes written", len(got), ok, err)
		}
	})
	t.Run("ManyKeys", func(t *testing.T) {
		tier := newEnv(t).Tier
		for i := range 200 {
			mustSet(t, tier, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)), time.Hour)
		}
		for i := range 200 {
			wantValue(t, tier, fmt.Sprint("k", i), fmt.Sprint("v", i))
		}
	})
}

func mustSet(t *testing.T, tier Tier, key string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := tier.Set(context.Background(), key, v, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t *testing.T, tier Tier, key, want string) {
	t.Helper()
	got, ok, err := tier.Get(context.Background(), key)
	if err != nil || !ok || string(got) != want {
		t.Fatalf("Get(%q) = %q, %v, %v; want %q, true, nil", key, got, ok, err, want)
	}
}

func wantMissing(t *testing.T, tier Tier, key string) {
	t.Helper()
	got, ok, err := tier.Get(context.Background(), key)
	if err != nil || ok {
		t.Fatalf("Get(%q) = %q, %v, %v; want missing", key, got, ok, err)
	}
}
