package redis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// TestGetOverMaxValueBytesIsErrTooLarge: with a limit, Get tells a value
// at the limit, an empty value and a missing key apart, and a longer value
// is ErrTooLarge, which is not an unreachable error.
func TestGetOverMaxValueBytesIsErrTooLarge(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	tr, err := redis.New(client, redis.Config{Prefix: "s:", Timeout: time.Second, MaxValueBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	client.Set(ctx, "s:at", "12345678", time.Minute)
	client.Set(ctx, "s:over", "123456789", time.Minute)
	client.Set(ctx, "s:empty", "", 0)
	client.HSet(ctx, "s:hash", "f", "v")

	if v, ttl, ok, err := tr.Get(ctx, "at"); err != nil || !ok || string(v) != "12345678" || ttl <= 0 {
		t.Errorf("Get(at the limit) = %q, %v, %v, %v; want the value with its TTL", v, ttl, ok, err)
	}
	if v, ttl, ok, err := tr.Get(ctx, "empty"); err != nil || !ok || len(v) != 0 || ttl != redis.NoTTL {
		t.Errorf("Get(empty) = %q, %v, %v, %v; want found, empty, NoTTL", v, ttl, ok, err)
	}
	if _, _, ok, err := tr.Get(ctx, "missing"); err != nil || ok {
		t.Errorf("Get(missing) = %v, %v; want not found, no error", ok, err)
	}
	_, _, ok, err := tr.Get(ctx, "over")
	if !errors.Is(err, redis.ErrTooLarge) || ok || redis.IsUnreachable(err) {
		t.Errorf("Get(over the limit) = %v, %v; want ErrTooLarge, not unreachable", ok, err)
	}
	_, _, ok, err = tr.Get(ctx, "hash")
	if err == nil || ok || !strings.Contains(err.Error(), "WRONGTYPE") || redis.IsUnreachable(err) {
		t.Errorf("Get(hash) = %v, %v; want WRONGTYPE, not unreachable", ok, err)
	}
}
