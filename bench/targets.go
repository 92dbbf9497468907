package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	rediscache "github.com/go-redis/cache/v9"
	golanglru "github.com/hashicorp/golang-lru/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// ErrNotFound is what every target returns for a missing session.
var ErrNotFound = errors.New("bench: not found")

// Target is one system under test: a session store as a service uses it.
type Target interface {
	Get(ctx context.Context, id string) ([]byte, error)
	Set(ctx context.Context, id string, v []byte, ttl time.Duration) error
	Delete(ctx context.Context, id string) error
	Close() error
}

// TargetInfo describes a target for the report.
type TargetInfo struct {
	Name         string
	Note         string // what the report should say about it
	NeedsTrack   bool   // needs CLIENT TRACKING (not in miniredis)
	Invalidation bool   // drops local copies when another client changes Redis
	// ThroughputOnly: a reference run in W1..W3 alone, where W4 and W5
	// would measure nothing of it (no Redis to lose, no instances to
	// share it, or no session store at all).
	ThroughputOnly bool
	Settings       string // every setting New changes from the library's defaults ("budget" and "2×sessions" as in the report header)
	New            func(addr string, budget int64, sessions int) (Target, error)
}

// The targets, in report order; the first two are the subject (in its
// default invalidation mode, per-key, and in broadcast mode); ratios are taken to go-redis
// and to rueidis.
var Targets = []TargetInfo{
	{Name: "sessiontier", Settings: "go-redis client: ContextTimeoutEnabled, MaxRetries 1, PoolSize 128; tiered.Options: Prefix sessiontier-bench:, Local {2×sessions entries, budget bytes, TTL 1m}, Fallback {2×sessions, budget}, Breaker {OpenTimeout 100ms, MaxOpenTimeout 1s} (defaults 1s and 30s); every other option at its default (OpTimeout 100ms, MaxValueBytes 1 MiB, InvalidationAuto, which is per-key tracking); reads with GetShared (read-only bytes, no copy)", Note: "tiered.Store: bounded local LRU with cross-instance invalidation (client tracking), Redis behind a breaker", Invalidation: true, New: newSessiontier(tiered.InvalidationAuto)},
	{Name: "sessiontier-broadcast", Settings: "as sessiontier, with tiered.Options.Invalidation InvalidationTracking", Note: "tiered.Store in broadcast invalidation mode: every change under the prefix pushed to every instance (CLIENT TRACKING ON BCAST PREFIX NOLOOP on the store's tracked connection)", NeedsTrack: true, Invalidation: true, New: newSessiontier(tiered.InvalidationTracking)},
	{Name: "go-redis", Settings: "PoolSize 128; go-redis defaults otherwise", Note: "one GET/SET per request, as scs goredisstore and gorilla's Redis stores do", Invalidation: true, New: newGoRedis},
	{Name: "go-redis-csc", Settings: "Protocol 3, PoolSize 128, ClientSideCacheConfig {MaxEntries 2×sessions, MaxMemoryBytes budget}", Note: "go-redis v9 built-in client-side cache (RESP3, server-assisted invalidation)", NeedsTrack: true, Invalidation: true, New: newGoRedisCSC},
	{Name: "rueidis", Settings: "CacheSizeEachConn budget (per connection), DoCache TTL 1m, reads with ToString (the cached string, no copy); rueidis defaults otherwise", Note: "rueidis client-side caching (DoCache, server-assisted invalidation)", NeedsTrack: true, Invalidation: true, New: newRueidis},
	{Name: "go-redis-cache", Settings: "go-redis PoolSize 128; TinyLFU local cache of 2×sessions entries (no byte bound), local TTL 1m", Note: "go-redis/cache with a TinyLFU local cache: no cross-instance invalidation, a local copy lives until its local TTL", New: newGoRedisCache},
	{Name: "golang-lru", Settings: "golang-lru/v2 Cache of 2×sessions entries (no byte bound)", Note: "a bare golang-lru cache in process, no Redis: the in-process reference (not shared, not durable)", ThroughputOnly: true, New: newBareLRU},
	{Name: "redis-pipeline", Settings: "4 connections, at most 2 pipelines in flight on each, RESP2, no cache, no timeout but the caller's context, no retry", Note: "not a session store: a bare client of this suite's own that queues every caller's command on one of 4 connections and sends whatever is queued in one write, the Redis reference (what a client with no logic of its own gets from this Redis through the harness: the yardstick of W3, where Redis's work per write bounds every target)", Invalidation: true, ThroughputOnly: true, New: newPipeline},
}

const localTTL = time.Minute

type sessiontierTarget struct {
	*tiered.Store
	*wire
	client *goredis.Client

	mu     sync.Mutex // guards alerts
	alerts []telemetry.Alert
}

// newSessiontier returns the constructor of a sessiontier target whose
// store runs in invalidation mode mode.
func newSessiontier(mode tiered.Invalidation) func(addr string, budget int64, sessions int) (Target, error) {
	return func(addr string, budget int64, sessions int) (Target, error) {
		t, err := openStore(addr, budget, sessions, mode)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
}

// openStore opens a tiered.Store with the settings of the sessiontier
// target, invalidation mode mode, its local and outage tiers bounded by
// 2×sessions entries and budget bytes, and waits until its invalidation
// stream is confirmed (or 5s have passed).
func openStore(addr string, budget int64, sessions int, mode tiered.Invalidation) (*sessiontierTarget, error) {
	w := &wire{}
	client := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: 1, PoolSize: 128, Dialer: w.dial})
	t := &sessiontierTarget{client: client, wire: w}
	s, err := tiered.New(client, tiered.Options{
		Prefix:       Prefix,
		Local:        lru.Limits{MaxEntries: 2 * sessions, MaxBytes: budget, TTL: localTTL},
		Fallback:     lru.Limits{MaxEntries: 2 * sessions, MaxBytes: budget},
		Breaker:      breaker.Settings{OpenTimeout: 100 * time.Millisecond, MaxOpenTimeout: time.Second},
		Invalidation: mode,
		Telemetry: telemetry.Options{OnAlert: func(a telemetry.Alert) {
			t.mu.Lock()
			t.alerts = append(t.alerts, a)
			t.mu.Unlock()
		}},
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	t.Store = s
	// Until its invalidation stream is confirmed the store reads Redis
	// instead of its local tier: start measuring once it is.
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Invalidation == "connecting" && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return t, nil
}

// raised returns the alerts raised so far.
func (t *sessiontierTarget) raised() []telemetry.Alert {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]telemetry.Alert(nil), t.alerts...)
}

func (t *sessiontierTarget) Get(ctx context.Context, id string) ([]byte, error) {
	v, err := t.Store.GetShared(ctx, id) // read-only bytes, as a session manager decodes them
	if errors.Is(err, tiered.ErrNotFound) {
		return nil, ErrNotFound
	}
	return v, err
}

func (t *sessiontierTarget) Close() error { return errors.Join(t.Store.Close(), t.client.Close()) }

type goRedisTarget struct {
	c *goredis.Client
	*wire
}

func newGoRedis(addr string, _ int64, _ int) (Target, error) {
	w := &wire{}
	return goRedisTarget{goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 128, Dialer: w.dial}), w}, nil
}

func newGoRedisCSC(addr string, budget int64, sessions int) (Target, error) {
	w := &wire{}
	return goRedisTarget{goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 3, PoolSize: 128, Dialer: w.dial,
		ClientSideCacheConfig: &goredis.ClientSideCacheConfig{MaxEntries: 2 * sessions, MaxMemoryBytes: budget}}), w}, nil
}

func (t goRedisTarget) Get(ctx context.Context, id string) ([]byte, error) {
	v, err := t.c.Get(ctx, key(id)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, ErrNotFound
	}
	return v, err
}

func (t goRedisTarget) Set(ctx context.Context, id string, v []byte, ttl time.Duration) error {
	return t.c.Set(ctx, key(id), v, ttl).Err()
}

func (t goRedisTarget) Delete(ctx context.Context, id string) error {
	return t.c.Del(ctx, key(id)).Err()
}
func (t goRedisTarget) Close() error { return t.c.Close() }

type rueidisTarget struct {
	c rueidis.Client
	*wire
}

func newRueidis(addr string, budget int64, _ int) (Target, error) {
	w := &wire{}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, CacheSizeEachConn: int(budget), DialCtxFn: w.dialRueidis})
	if err != nil {
		return nil, err
	}
	return rueidisTarget{c, w}, nil
}

func (t rueidisTarget) Get(ctx context.Context, id string) ([]byte, error) {
	// ToString hands out the cached string itself; its bytes are read-only,
	// as sessiontier's GetShared: neither copies on a hit.
	v, err := t.c.DoCache(ctx, t.c.B().Get().Key(key(id)).Cache(), localTTL).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, ErrNotFound
	}
	return unsafe.Slice(unsafe.StringData(v), len(v)), err
}

func (t rueidisTarget) Set(ctx context.Context, id string, v []byte, ttl time.Duration) error {
	return t.c.Do(ctx, t.c.B().Set().Key(key(id)).Value(rueidis.BinaryString(v)).Px(ttl).Build()).Error()
}

func (t rueidisTarget) Delete(ctx context.Context, id string) error {
	return t.c.Do(ctx, t.c.B().Del().Key(key(id)).Build()).Error()
}

func (t rueidisTarget) Close() error { t.c.Close(); return nil }

type goRedisCacheTarget struct {
	c      *rediscache.Cache
	client *goredis.Client
	*wire
}

func newGoRedisCache(addr string, _ int64, sessions int) (Target, error) {
	w := &wire{}
	client := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 128, Dialer: w.dial})
	return goRedisCacheTarget{rediscache.New(&rediscache.Options{Redis: client, LocalCache: rediscache.NewTinyLFU(2*sessions, localTTL)}), client, w}, nil
}

func (t goRedisCacheTarget) Get(ctx context.Context, id string) ([]byte, error) {
	var v []byte
	err := t.c.Get(ctx, key(id), &v)
	if errors.Is(err, rediscache.ErrCacheMiss) {
		return nil, ErrNotFound
	}
	return v, err
}

func (t goRedisCacheTarget) Set(ctx context.Context, id string, v []byte, ttl time.Duration) error {
	return t.c.Set(&rediscache.Item{Ctx: ctx, Key: key(id), Value: v, TTL: ttl})
}

func (t goRedisCacheTarget) Delete(ctx context.Context, id string) error {
	return t.c.Delete(ctx, key(id))
}
func (t goRedisCacheTarget) Close() error { return t.client.Close() }

// stored decodes a value as go-redis/cache keeps it in Redis (marshalled,
// compressed past 64 bytes), for W4's accounting.
func (t goRedisCacheTarget) stored(raw []byte) []byte {
	var v []byte
	if err := t.c.Unmarshal(raw, &v); err != nil {
		return nil
	}
	return v
}

type bareLRU struct {
	c *golanglru.Cache[string, []byte]
}

// RoundTrips is always 0: the bare cache has no Redis.
func (bareLRU) RoundTrips() int64 { return 0 }

func newBareLRU(_ string, _ int64, sessions int) (Target, error) {
	c, err := golanglru.New[string, []byte](2 * sessions)
	if err != nil {
		return nil, err
	}
	return bareLRU{c}, nil
}

func (t bareLRU) Get(_ context.Context, id string) ([]byte, error) {
	if v, ok := t.c.Get(id); ok {
		return v, nil
	}
	return nil, ErrNotFound
}

func (t bareLRU) Set(_ context.Context, id string, v []byte, _ time.Duration) error {
	t.c.Add(id, bytes.Clone(v)) // a store keeps its own copy: the memory figures count it
	return nil
}

func (t bareLRU) Delete(_ context.Context, id string) error { t.c.Remove(id); return nil }
func (t bareLRU) Close() error                              { return nil }

// TargetByName returns the target called name.
func TargetByName(name string) (TargetInfo, error) {
	for _, t := range Targets {
		if t.Name == name {
			return t, nil
		}
	}
	return TargetInfo{}, fmt.Errorf("bench: unknown target %q", name)
}

// isSessiontier reports whether the target called name is a tiered.Store
// (in one invalidation mode or another).
func isSessiontier(name string) bool { return strings.HasPrefix(name, "sessiontier") }
