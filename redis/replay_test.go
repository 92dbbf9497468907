package redis_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// proxiedTier returns a Tier of prefix "r:" with timeout, on a client
// through a proxy of a server the test started, the proxy, and a plain
// client of the server.
func proxiedTier(t *testing.T, timeout time.Duration) (*goredis.Client, *redistest.Proxy, *redis.Tier) {
	t.Helper()
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr})
	t.Cleanup(func() { client.Close() })
	tr, err := redis.New(client, redis.Config{Prefix: "r:", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return srv.Client(), proxy, tr
}

// scriptClient returns a one-shard ring of addr, closed when t ends: a
// client that is not a single node, on which a Tier replays by script.
func scriptClient(t *testing.T, addr string) *goredis.Ring {
	t.Helper()
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": addr}})
	t.Cleanup(func() { ring.Close() })
	return ring
}

// base is v as a replayed write's bases name it.
func base(v string) string { return redis.Base(redis.Sum([]byte(v))) }

// replayCase is a key's state in Redis before a replayed write, and what
// the replay must do with it.
type replayCase struct {
	name    string
	before  func(ctx context.Context, c *goredis.Client, key string) // nil: absent
	bases   []string
	applied bool
	err     string // a substring of the outcome's error
}

func holding(v string) func(context.Context, *goredis.Client, string) {
	return func(ctx context.Context, c *goredis.Client, key string) { c.Set(ctx, key, v, time.Hour) }
}

const replayed = "the outage write"

var replayCases = []replayCase{
	{name: "absent, absent accepted", bases: []string{""}, applied: true},
	{name: "absent, a value accepted", bases: []string{base("old")}},
	{name: "a base", before: holding("old"), bases: []string{"", base("old")}, applied: true},
	{name: "another value", before: holding("theirs"), bases: []string{"", base("old")}},
	{name: "its own value (landed unanswered)", before: holding(replayed), bases: []string{""}, applied: true},
	{name: "empty, absent accepted", before: holding(""), bases: []string{""}},
	{name: "absent, empty accepted", bases: []string{base("")}},
	{name: "empty, empty accepted", before: holding(""), bases: []string{base("")}, applied: true},
	{name: "a longer value, whose first limit+1 bytes are a base", before: holding(strings.Repeat("x", 200)),
		bases: []string{base(strings.Repeat("x", 101))}},
	{name: "a hash", before: func(ctx context.Context, c *goredis.Client, key string) { c.HSet(ctx, key, "f", "v") },
		bases: []string{""}, err: "WRONGTYPE"},
}

// TestReplayWritesTransactionAndScriptAgree: the checked transaction (a
// single-node client) and the script (any other client) give every case
// the same outcome, the same value and the same expiry, in one batch, with
// a value limit (GETRANGE and EXISTS) and without one (GET).
func TestReplayWritesTransactionAndScriptAgree(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	ring := scriptClient(t, srv.Addr)
	clients := map[string]goredis.UniversalClient{"transaction": plain, "script": ring}
	for _, limit := range []int{0, 100} {
		for name, client := range clients {
			tr, err := redis.New(client, redis.Config{Prefix: "r:", Timeout: time.Second, MaxValueBytes: limit})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Close)
			plain.FlushDB(ctx)
			exp := time.Now().Add(time.Minute).Truncate(time.Millisecond)
			var batch []redis.Replay
			for i, c := range replayCases {
				id := string(rune('a' + i))
				if c.before != nil {
					c.before(ctx, plain, "r:"+id)
				}
				batch = append(batch, redis.Replay{ID: id, Value: []byte(replayed), Expires: exp, Bases: c.bases})
			}
			out, err := tr.ReplayWrites(ctx, batch)
			if err != nil || len(out) != len(batch) {
				t.Fatalf("%s, limit %d: ReplayWrites = %v, %v", name, limit, out, err)
			}
			for i, c := range replayCases {
				key := "r:" + batch[i].ID
				o := out[i]
				if o.Applied != c.applied || (c.err == "") != (o.Err == nil) || c.err != "" && !strings.Contains(o.Err.Error(), c.err) {
					t.Errorf("%s, limit %d, %s: %+v; want applied %v, error %q", name, limit, c.name, o, c.applied, c.err)
					continue
				}
				if !c.applied {
					continue
				}
				got, _ := plain.Get(ctx, key).Result()
				at, _ := plain.PExpireTime(ctx, key).Result()
				if got != replayed || at != time.Duration(exp.UnixMilli())*time.Millisecond {
					t.Errorf("%s, limit %d, %s: Redis holds %q, expiring at %v; want %q at %v", name, limit, c.name, got, at, replayed, exp.UnixMilli())
				}
			}
		}
	}
}

// TestReplayWritesTransactionLeavesAKeyChangedBeforeEXEC: a key changed by
// another client after the transaction read it aborts EXEC; the script
// then decides every write of the batch: the changed key keeps the other
// client's value and is a conflict, the others are applied.
func TestReplayWritesTransactionLeavesAKeyChangedBeforeEXEC(t *testing.T) {
	plain, proxy, tr := proxiedTier(t, time.Second)
	ctx := context.Background()
	plain.Set(ctx, "r:b", "old", time.Hour)
	exp := time.Now().Add(time.Minute)
	batch := []redis.Replay{
		{ID: "a", Value: []byte("a2"), Expires: exp, Bases: []string{""}},
		{ID: "b", Value: []byte("b2"), Expires: exp, Bases: []string{base("old")}},
	}
	h := proxy.Hold([]byte("multi")) // go-redis spells commands in lower case
	type result struct {
		out []redis.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := tr.ReplayWrites(ctx, batch)
		done <- result{out, err}
	}()
	<-h.Held()
	plain.Set(ctx, "r:b", "theirs", time.Hour)
	h.Release()
	r := <-done
	if r.err != nil || len(r.out) != 2 || !r.out[0].Applied || r.out[1].Applied || r.out[1].Err != nil {
		t.Fatalf("ReplayWrites = %+v, %v; want a applied, b a conflict", r.out, r.err)
	}
	if a, b := plain.Get(ctx, "r:a").Val(), plain.Get(ctx, "r:b").Val(); a != "a2" || b != "theirs" {
		t.Fatalf("Redis holds a=%q b=%q; want a2 and the other client's value", a, b)
	}
}

// TestReplayWritesDoesNotReadHugeValues: a key holding a huge value is a
// conflict, decided without reading the value back, by the transaction
// and by the script: past the value limit it is none this store wrote;
// with no limit, its length is none of the write's bases'.
func TestReplayWritesDoesNotReadHugeValues(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	plain.Set(ctx, "r:big", bytes.Repeat([]byte("h"), 64<<20), time.Hour)
	clients := map[string]goredis.UniversalClient{"transaction": plain, "script": scriptClient(t, srv.Addr)}
	for _, limit := range []int{1024, 0} {
		for name, client := range clients {
			tr, err := redis.New(client, redis.Config{Prefix: "r:", Timeout: time.Second, MaxValueBytes: limit})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Close)
			before := netOut(t, plain)
			out, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "big", Value: []byte("v"), Expires: time.Now().Add(time.Minute), Bases: []string{"", base("small")}}})
			if err != nil || len(out) != 1 || out[0].Applied || out[0].Err != nil {
				t.Fatalf("%s, limit %d: ReplayWrites = %+v, %v; want a conflict", name, limit, out, err)
			}
			if sent := netOut(t, plain) - before; sent > 1<<20 {
				t.Fatalf("%s, limit %d: Redis sent %d bytes to decide one write; want no more than the read budget", name, limit, sent)
			}
		}
	}
}

// netOut is what Redis has sent to its clients, in bytes.
func netOut(t *testing.T, c *goredis.Client) int64 {
	t.Helper()
	m, err := c.InfoMap(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(m["Stats"]["total_net_output_bytes"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplayWritesWaitWhileRedisRefusesWrites: under maxmemory with
// noeviction Redis refuses every write (OOM), whatever the key: on both
// paths ReplayWrites returns an error, a reply and not unreachable, and no
// outcomes, so that the writes wait instead of being dropped one by one.
func TestReplayWritesWaitWhileRedisRefusesWrites(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	ring := scriptClient(t, srv.Addr)
	plain.Set(ctx, "r:s", "old", time.Hour)
	plain.ConfigSet(ctx, "maxmemory-policy", "noeviction")
	plain.ConfigSet(ctx, "maxmemory", "1")
	t.Cleanup(func() { plain.ConfigSet(ctx, "maxmemory", "0") })
	batch := []redis.Replay{
		{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}},
		{ID: "n", Value: []byte("n"), Expires: time.Now().Add(time.Minute), Bases: []string{""}},
	}
	for name, client := range map[string]goredis.UniversalClient{"transaction": plain, "script": ring} {
		out, err := newTier(t, client, "r:").ReplayWrites(ctx, batch)
		if err == nil || !strings.Contains(err.Error(), "OOM") || redis.IsUnreachable(err) || out != nil {
			t.Errorf("%s: ReplayWrites under OOM = %+v, %v; want an OOM error, not unreachable, and no outcomes", name, out, err)
		}
	}
	if got := plain.Get(ctx, "r:s").Val(); got != "old" {
		t.Fatalf("Redis holds %q; want the key unchanged", got)
	}
}

// TestReplayWritesWaitOnAReplica: a replay that reaches a replica (after a
// failover, before the client follows the new primary) is answered
// READONLY for every write. That is Redis unreachable for writes, not the
// writes' fault: ReplayWrites fails the batch, as an unreachable Redis, on
// both paths, so that the writes wait instead of being dropped as lost.
func TestReplayWritesWaitOnAReplica(t *testing.T) {
	primary, replica := redistest.Start(t), redistest.Start(t)
	plain := replica.Client()
	ctx := context.Background()
	host, port, _ := strings.Cut(primary.Addr, ":")
	if err := plain.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Do(ctx, "REPLICAOF", "NO", "ONE") })
	ring := scriptClient(t, replica.Addr)
	batch := []redis.Replay{
		{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}},
		{ID: "n", Value: []byte("n"), Expires: time.Now().Add(time.Minute), Bases: []string{""}},
	}
	for name, client := range map[string]goredis.UniversalClient{"transaction": plain, "script": ring} {
		out, err := newTier(t, client, "r:").ReplayWrites(ctx, batch)
		if err == nil || !strings.Contains(err.Error(), "READONLY") || !redis.IsUnreachable(err) || out != nil {
			t.Errorf("%s: ReplayWrites on a replica = %+v, %v; want a READONLY error, unreachable, and no outcomes", name, out, err)
		}
	}
}
