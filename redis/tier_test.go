package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/redis"
)

// tier adapts a Tier to the shared suite.
type tier struct{ t *redis.Tier }

func (a tier) Get(ctx context.Context, id string) ([]byte, bool, error) {
	v, _, ok, err := a.t.Get(ctx, id)
	return v, ok, err
}
func (a tier) Set(ctx context.Context, id string, v []byte, ttl time.Duration) error {
	return a.t.Set(ctx, id, v, ttl)
}
func (a tier) Delete(ctx context.Context, id string) error { return a.t.Delete(ctx, id) }
func (a tier) Touch(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	return a.t.Touch(ctx, id, ttl)
}

func newTier(t *testing.T, client goredis.UniversalClient, prefix string) *redis.Tier {
	t.Helper()
	tr, err := redis.New(client, redis.Config{Prefix: prefix, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

func TestSuite(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	n := 0
	tiertest.Run(t, func(t *testing.T) tiertest.Env {
		n++
		tr := newTier(t, client, fmt.Sprintf("suite%d:", n))
		return tiertest.Env{
			Tier: tier{tr},
			AwaitExpiry: func(t *testing.T, id string) {
				deadline := time.Now().Add(5 * time.Second)
				for {
					if _, _, ok, err := tr.Get(context.Background(), id); err == nil && !ok {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s did not expire within 5s", id)
					}
					time.Sleep(5 * time.Millisecond) // polling Redis's own expiry
				}
			},
		}
	})
}

func TestValuesAreStoredUnwrapped(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	tr := newTier(t, client, "session:")
	ctx := context.Background()
	if err := tr.Set(ctx, "abc", []byte("raw bytes"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "session:abc").Result(); err != nil || got != "raw bytes" {
		t.Fatalf("plain GET = %q, %v; want the caller's bytes as they were", got, err)
	}
	if ttl := client.PTTL(ctx, "session:abc").Val(); ttl <= 59*time.Second || ttl > time.Minute {
		t.Fatalf("PTTL = %v; want about 1m", ttl)
	}
	client.Set(ctx, "session:other", "written elsewhere", 90*time.Second)
	v, ttl, ok, err := tr.Get(ctx, "other")
	if err != nil || !ok || string(v) != "written elsewhere" || ttl <= 89*time.Second || ttl > 90*time.Second {
		t.Fatalf("Get = %q, %v, %v, %v; want the plain value with its TTL", v, ttl, ok, err)
	}
	client.Set(ctx, "session:forever", "no ttl", 0)
	if _, ttl, ok, err := tr.Get(ctx, "forever"); err != nil || !ok || ttl != redis.NoTTL {
		t.Fatalf("Get of a key without TTL = ttl %v, %v, %v; want NoTTL, true, nil", ttl, ok, err)
	}
}

func TestWrongTypeIsAnAnswer(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	tr := newTier(t, client, "session:")
	ctx := context.Background()
	client.HSet(ctx, "session:hash", "f", "v")
	_, _, ok, err := tr.Get(ctx, "hash")
	if err == nil || ok || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("Get of a hash = %v, %v; want an error carrying WRONGTYPE", ok, err)
	}
	if redis.IsUnreachable(err) {
		t.Fatalf("IsUnreachable(%v) = true; want false: Redis answered", err)
	}
}

func TestIsUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client()
	tr := newTier(t, client, "p:")
	srv.Kill()
	_, _, _, err := tr.Get(ctx, "x")
	if err == nil || !redis.IsUnreachable(err) {
		t.Fatalf("Get from a killed Redis = %v; want an unreachable error", err)
	}
	for _, reply := range []string{"LOADING Redis is loading", "READONLY You can't write", "MASTERDOWN Link down", "CLUSTERDOWN down", "TRYAGAIN later"} {
		if !redis.IsUnreachable(fmt.Errorf("wrapped: %w", replyError(reply))) {
			t.Errorf("IsUnreachable(%q) = false; want true", reply)
		}
	}
	for _, err := range []error{nil, goredis.Nil, replyError("ERR syntax error"), replyError("WRONGTYPE Operation")} {
		if redis.IsUnreachable(err) {
			t.Errorf("IsUnreachable(%v) = true; want false", err)
		}
	}
}

type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// TestEveryCallIsBounded: against a hung Redis (SIGSTOP), every call
// returns at the tier's timeout, with go-redis defaults (which ignore
// context deadlines) and with a client from NewClient.
func TestEveryCallIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	urlClient, err := redis.NewClient("redis://" + srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defaultClient := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	t.Cleanup(func() { urlClient.Close(); defaultClient.Close() })
	clients := map[string]goredis.UniversalClient{
		"go-redis defaults": defaultClient,
		"NewClient":         urlClient,
	}
	const timeout = 100 * time.Millisecond
	ctx := context.Background()
	for name, c := range clients {
		t.Run(name, func(t *testing.T) {
			tr, err := redis.New(c, redis.Config{Prefix: "b:", Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
				t.Fatal(err) // also opens a pooled connection
			}
			srv.Pause()
			defer srv.Resume()
			calls := map[string]func() error{
				"get":    func() error { _, _, _, err := tr.Get(ctx, "k"); return err },
				"set":    func() error { return tr.Set(ctx, "k", []byte("v"), time.Minute) },
				"delete": func() error { return tr.Delete(ctx, "k") },
				"touch":  func() error { _, err := tr.Touch(ctx, "k", time.Minute); return err },
				"scan":   func() error { _, err := tr.Scan(ctx, func(string, []byte) error { return nil }); return err },
			}
			for op, call := range calls {
				start := time.Now()
				err := call()
				elapsed := time.Since(start)
				if !errors.Is(err, context.DeadlineExceeded) || !redis.IsUnreachable(err) {
					t.Errorf("%s on a hung Redis: %v; want an unreachable error wrapping context.DeadlineExceeded", op, err)
				}
				// A generous bound against scheduling noise; go-redis's own
				// bound here is 3s or more.
				if elapsed > timeout+time.Second {
					t.Errorf("%s on a hung Redis took %v; want about %v", op, elapsed, timeout)
				}
			}
			srv.Resume()
			tr.Close() // returns once the detached calls finished
		})
	}
}

func TestScan(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	prefix := "s*[?]\\:" // glob characters must match only themselves
	tr := newTier(t, client, prefix)
	want := map[string]string{}
	for i := range 350 {
		id := fmt.Sprint("id", i)
		want[id] = fmt.Sprint("v", i)
		if err := tr.Set(ctx, id, []byte(want[id]), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	client.Set(ctx, "sX[?]\\:decoy", "other prefix", time.Minute)
	client.Set(ctx, "unrelated", "x", time.Minute)
	got := map[string]string{}
	_, err := tr.Scan(ctx, func(id string, v []byte) error { got[id] = string(v); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Scan found %d ids; want %d", len(got), len(want))
	}
	for id, v := range want {
		if got[id] != v {
			t.Fatalf("Scan: %s = %q; want %q", id, got[id], v)
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := redis.New(nil, redis.Config{Prefix: "p:", Timeout: time.Second}); err == nil {
		t.Error("New(nil client) succeeded")
	}
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := redis.New(c, redis.Config{Prefix: "p:"}); err == nil {
		t.Error("New with timeout 0 succeeded")
	}
}

func TestNewClient(t *testing.T) {
	c, err := redis.NewClient("rediss://alice:s3cret@127.0.0.1:7000/3?read_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.Options()
	if o.Username != "alice" || o.Password != "s3cret" || o.DB != 3 || o.TLSConfig == nil {
		t.Errorf("user %q db %d tls %v; want alice, 3, TLS", o.Username, o.DB, o.TLSConfig != nil)
	}
	if !o.ContextTimeoutEnabled || o.ReadTimeout != 2*time.Second || o.DialTimeout != redis.DefaultDialTimeout ||
		o.PoolTimeout != redis.DefaultPoolTimeout || o.MaxRetries != redis.DefaultMaxRetries {
		t.Errorf("options %+v; want context deadlines on, the URL's read timeout and the defaults otherwise", o)
	}
	for _, bad := range []string{"http://u:s3cret@host", "redis://u:s3cret@host/notanumber", "redis://u:s3cret@host:port%zz"} {
		_, err := redis.NewClient(bad)
		if !errors.Is(err, redis.ErrInvalidURL) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("NewClient(%q) = %v; want ErrInvalidURL without the password", bad, err)
		}
	}
}
