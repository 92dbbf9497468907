package redis_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// review6Calls returns how many times Redis ran each of cmds successfully
// (INFO commandstats: calls less failed_calls, so that an EVALSHA answered
// NOSCRIPT does not count), keyed by command.
func review6Calls(t *testing.T, c *goredis.Client, cmds ...string) map[string]int {
	t.Helper()
	m, err := c.InfoMap(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int, len(cmds))
	for _, cmd := range cmds {
		stat := m["Commandstats"]["cmdstat_"+cmd]
		for _, f := range strings.Split(stat, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.Atoi(v)
				out[cmd] += n
			}
			if v, ok := strings.CutPrefix(f, "failed_calls="); ok {
				n, _ := strconv.Atoi(v)
				out[cmd] -= n
			}
		}
	}
	return out
}

// heldOrFail waits until h holds a chunk; a replay that ends first sent
// no such chunk, which the test's interleaving needs.
func heldOrFail(t *testing.T, h *redistest.Hold, done <-chan review6Result) {
	t.Helper()
	select {
	case <-h.Held():
	case r := <-done:
		t.Fatalf("the replay ended (%+v, %v) without sending the chunk the test holds", r.out, r.err)
	}
}

type review6Result struct {
	out []redis.Outcome
	err error
}

// replayAsync runs ReplayWrites in a goroutine.
func replayAsync(tr *redis.Tier, batch []redis.Replay) <-chan review6Result {
	done := make(chan review6Result, 1)
	go func() {
		out, err := tr.ReplayWrites(context.Background(), batch)
		done <- review6Result{out, err}
	}()
	return done
}

// TestReview6ConflictOnlyBatchLeavesNoWatch: a batch whose writes are all
// conflicts runs no EXEC. The WATCH it sent (by a raw command, which
// go-redis's Tx does not know of, so Tx.Close sends no UNWATCH) must not
// stay on the connection returned to the pool: otherwise the next batch on
// that connection, whose keys nobody touched, has its EXEC aborted because
// another client changed a key of the previous batch, and goes to the
// script (twice the round trips, and the script's work that the
// transaction is there to save).
func TestReview6ConflictOnlyBatchLeavesNoWatch(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	tr := newTier(t, plain, "r:")
	exp := time.Now().Add(time.Minute)

	plain.Set(ctx, "r:c", "theirs", time.Hour)
	out, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "c", Value: []byte("mine"), Expires: exp, Bases: []string{base("old")}}})
	if err != nil || len(out) != 1 || out[0].Applied || out[0].Err != nil {
		t.Fatalf("first batch: ReplayWrites = %+v, %v; want a conflict", out, err)
	}
	// Another client changes the key of the first batch afterwards.
	plain.Set(ctx, "r:c", "theirs again", time.Hour)

	before := review6Calls(t, plain, "exec", "evalsha", "eval")
	out, err = tr.ReplayWrites(ctx, []redis.Replay{{ID: "n", Value: []byte("new"), Expires: exp, Bases: []string{""}}})
	if err != nil || len(out) != 1 || !out[0].Applied || out[0].Err != nil {
		t.Fatalf("second batch: ReplayWrites = %+v, %v; want applied", out, err)
	}
	after := review6Calls(t, plain, "exec", "evalsha", "eval")
	if s := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]; s != 0 {
		t.Errorf("second batch, on an untouched absent key: %d script calls after EXEC (%d EXEC); want it decided by the transaction alone: "+
			"the first batch's WATCH was left on the pooled connection and aborted this EXEC", s, after["exec"]-before["exec"])
	}
}

// TestReview6RefusedWatchIsNotIgnored: the reply to WATCH is not ignored.
// Where Redis refuses WATCH (here an ACL user without it; a renamed
// command would do the same) while it serves EXISTS, STRLEN, GETRANGE,
// MULTI, SET and EXEC, EXEC would run unconditionally, over a value
// another client wrote after the read. The batch goes to the script
// instead (held here while another client writes): a conflict, never
// applied over the other value.
func TestReview6RefusedWatchIsNotIgnored(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	if err := plain.Do(ctx, "ACL", "SETUSER", "nowatch", "on", ">pw", "~*", "&*", "+@all", "-watch").Err(); err != nil {
		t.Fatal(err)
	}
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, Username: "nowatch", Password: "pw"})
	t.Cleanup(func() { client.Close() })
	tr := newTier(t, client, "r:")

	plain.Set(ctx, "r:s", "old", time.Hour)
	h := proxy.Hold([]byte("evalsha"))
	done := replayAsync(tr, []redis.Replay{{ID: "s", Value: []byte("mine"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}}})
	heldOrFail(t, h, done)
	plain.Set(ctx, "r:s", "theirs", time.Hour) // after the transaction read "old"
	h.Release()
	r := <-done
	if got := plain.Get(ctx, "r:s").Val(); got != "theirs" {
		t.Errorf("Redis holds %q; want the other client's value %q: the replay overwrote it (outcome %+v, %v)", got, "theirs", r.out, r.err)
	}
	if r.err == nil && len(r.out) == 1 && r.out[0].Applied {
		t.Errorf("ReplayWrites = %+v; want a conflict", r.out)
	}
}

// TestReview6ExecLostThenKeyChanged: EXEC held in the network past the
// timeout (the call fails, as unreachable); another client changes the key;
// the held transaction then reaches Redis, whose WATCH aborts it; the
// replay tried again is a conflict and the other client's value stays.
func TestReview6ExecLostThenKeyChanged(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr})
	t.Cleanup(func() { client.Close() })
	tr, err := redis.New(client, redis.Config{Prefix: "r:", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	plain.Set(ctx, "r:s", "old", time.Hour)
	batch := []redis.Replay{{ID: "s", Value: []byte("mine"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}}}
	h := proxy.Hold([]byte("multi"))
	r := <-replayAsync(tr, batch)
	if r.err == nil || !redis.IsUnreachable(r.err) {
		t.Fatalf("ReplayWrites with EXEC held past the timeout = %+v, %v; want an unreachable error", r.out, r.err)
	}
	plain.Set(ctx, "r:s", "theirs", time.Hour)
	before := review6Calls(t, plain, "exec")["exec"]
	h.Release()
	for review6Calls(t, plain, "exec")["exec"] == before { // the late EXEC runs (aborted)
		time.Sleep(time.Millisecond)
	}
	if got := plain.Get(ctx, "r:s").Val(); got != "theirs" {
		t.Fatalf("after the late EXEC, Redis holds %q; want %q", got, "theirs")
	}
	out, err := tr.ReplayWrites(ctx, batch)
	if err != nil || len(out) != 1 || out[0].Applied || out[0].Err != nil {
		t.Fatalf("ReplayWrites again = %+v, %v; want a conflict", out, err)
	}
	if got := plain.Get(ctx, "r:s").Val(); got != "theirs" {
		t.Fatalf("Redis holds %q; want %q", got, "theirs")
	}
}

// TestReview6FlushDBBeforeExec: FLUSHDB between the transaction's reads
// and EXEC aborts EXEC; the script then decides: the update of a session
// that is gone is a conflict (no revival), the new session is written
// with its expiry.
func TestReview6FlushDBBeforeExec(t *testing.T) {
	plain, proxy, tr := proxiedTier(t, time.Second)
	ctx := context.Background()
	plain.Set(ctx, "r:u", "old", time.Hour)
	exp := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	h := proxy.Hold([]byte("multi"))
	done := replayAsync(tr, []redis.Replay{
		{ID: "u", Value: []byte("u2"), Expires: exp, Bases: []string{base("old")}},
		{ID: "n", Value: []byte("n2"), Expires: exp, Bases: []string{""}},
	})
	heldOrFail(t, h, done)
	plain.FlushDB(ctx)
	h.Release()
	r := <-done
	if r.err != nil || len(r.out) != 2 || r.out[0].Applied || r.out[0].Err != nil || !r.out[1].Applied {
		t.Fatalf("ReplayWrites = %+v, %v; want u a conflict, n applied", r.out, r.err)
	}
	if n := plain.Exists(ctx, "r:u").Val(); n != 0 {
		t.Errorf("the session flushed meanwhile is back")
	}
	if at := plain.PExpireTime(ctx, "r:n").Val(); at != time.Duration(exp.UnixMilli())*time.Millisecond {
		t.Errorf("n expires at %v; want %v", at, exp.UnixMilli())
	}
}

// TestReview6KeyExpiresBeforeExec: the key holding the base expires after
// the transaction read it and before EXEC (nobody touches it): EXEC must
// not run, and the replay must not revive the expired session.
func TestReview6KeyExpiresBeforeExec(t *testing.T) {
	plain, proxy, tr := proxiedTier(t, 5*time.Second) // EXEC is held past the expiry
	ctx := context.Background()
	gone := time.Now().Add(time.Second)
	plain.Set(ctx, "r:e", "old", 0)
	plain.PExpireAt(ctx, "r:e", gone)
	h := proxy.Hold([]byte("multi"))
	done := replayAsync(tr, []redis.Replay{{ID: "e", Value: []byte("e2"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}}})
	heldOrFail(t, h, done)
	if time.Now().After(gone) {
		t.Fatalf("the transaction reached MULTI after the key expired: the interleaving is not the one tested")
	}
	for time.Now().Before(gone.Add(20 * time.Millisecond)) { // without touching the key
		time.Sleep(5 * time.Millisecond)
	}
	h.Release()
	r := <-done
	if r.err != nil || len(r.out) != 1 || r.out[0].Applied {
		t.Fatalf("ReplayWrites = %+v, %v; want a conflict", r.out, r.err)
	}
	if n := plain.Exists(ctx, "r:e").Val(); n != 0 {
		t.Errorf("the session expired meanwhile is back: %q", plain.Get(ctx, "r:e").Val())
	}
}

// TestReview6ValueGrowsBetweenLengthAndRead: a key's value grows (past the
// read budget) between STRLEN and GETRANGE: no more than STRLEN said is
// read back, and the write is a conflict, the other client's value kept;
// the other write of the batch is applied.
func TestReview6ValueGrowsBetweenLengthAndRead(t *testing.T) {
	plain, proxy, tr := proxiedTier(t, time.Second)
	ctx := context.Background()
	plain.Set(ctx, "r:g", "old", time.Hour)
	h := proxy.Hold([]byte("getrange"))
	exp := time.Now().Add(time.Minute)
	done := replayAsync(tr, []redis.Replay{
		{ID: "g", Value: []byte("g2"), Expires: exp, Bases: []string{base("old")}},
		{ID: "n", Value: []byte("n2"), Expires: exp, Bases: []string{""}},
	})
	heldOrFail(t, h, done)
	big := bytes.Repeat([]byte("x"), 4<<20)
	plain.Append(ctx, "r:g", string(big))
	before := netOut(t, plain)
	h.Release()
	r := <-done
	if sent := netOut(t, plain) - before; sent > 1<<20 {
		t.Errorf("Redis sent %d bytes for the batch; want no more than the read budget", sent)
	}
	if r.err != nil || len(r.out) != 2 || r.out[0].Applied || r.out[0].Err != nil || !r.out[1].Applied {
		t.Fatalf("ReplayWrites = %+v, %v; want g a conflict, n applied", r.out, r.err)
	}
	if n := plain.StrLen(ctx, "r:g").Val(); n != int64(3+len(big)) {
		t.Errorf("g holds %d bytes; want the other client's %d", n, 3+len(big))
	}
}

// TestReview6ValueAtLimitsAndBudget: a base exactly MaxValueBytes long is
// read and compared (applied); one byte more is a conflict; with no limit,
// two values of 300 KiB exceed the read budget together: they are read in
// two round trips of the transaction, both applied, with no script.
func TestReview6ValueAtLimitsAndBudget(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	at, over := strings.Repeat("a", 100), strings.Repeat("o", 101)
	tr, err := redis.New(plain, redis.Config{Prefix: "r:", Timeout: time.Second, MaxValueBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	plain.Set(ctx, "r:at", at, time.Hour)
	plain.Set(ctx, "r:over", over, time.Hour)
	out, err := tr.ReplayWrites(ctx, []redis.Replay{
		{ID: "at", Value: []byte("v"), Expires: exp, Bases: []string{base(at)}},
		{ID: "over", Value: []byte("v"), Expires: exp, Bases: []string{base(over)}},
	})
	if err != nil || len(out) != 2 || !out[0].Applied || out[1].Applied || out[1].Err != nil {
		t.Fatalf("ReplayWrites = %+v, %v; want a value at the limit applied, one over a conflict", out, err)
	}

	tr2 := newTier(t, plain, "r:")
	big1, big2 := strings.Repeat("1", 300<<10), strings.Repeat("2", 300<<10)
	plain.Set(ctx, "r:b1", big1, time.Hour)
	plain.Set(ctx, "r:b2", big2, time.Hour)
	before := review6Calls(t, plain, "evalsha", "eval", "getrange")
	out, err = tr2.ReplayWrites(ctx, []redis.Replay{
		{ID: "b1", Value: []byte("v1"), Expires: exp, Bases: []string{base(big1)}},
		{ID: "b2", Value: []byte("v2"), Expires: exp, Bases: []string{base(big2)}},
	})
	if err != nil || len(out) != 2 || !out[0].Applied || !out[1].Applied {
		t.Fatalf("ReplayWrites = %+v, %v; want both applied", out, err)
	}
	after := review6Calls(t, plain, "evalsha", "eval", "getrange")
	if s := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]; s != 0 {
		t.Errorf("%d script calls; want none: the transaction decides both", s)
	}
	if g := after["getrange"] - before["getrange"]; g != 2 {
		t.Errorf("%d values read; want 2", g)
	}
	if v1, v2 := plain.Get(ctx, "r:b1").Val(), plain.Get(ctx, "r:b2").Val(); v1 != "v1" || v2 != "v2" {
		t.Errorf("Redis holds %q, %q; want v1, v2", v1, v2)
	}
}

// TestReview6WriteConnectionKilledBeforeExec: the write connection is
// closed server-side (as Fence does) while MULTI/SET/EXEC is in the
// network: nothing of it runs, the call fails as unreachable, and the
// replay tried again is applied.
func TestReview6WriteConnectionKilledBeforeExec(t *testing.T) {
	plain, proxy, tr := proxiedTier(t, time.Second)
	ctx := context.Background()
	plain.Set(ctx, "r:k", "old", time.Hour)
	batch := []redis.Replay{{ID: "k", Value: []byte("k2"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}}}
	h := proxy.Hold([]byte("multi"))
	done := replayAsync(tr, batch)
	heldOrFail(t, h, done)
	if err := plain.Do(ctx, "CLIENT", "KILL", "ADDR", h.Addr()).Err(); err != nil {
		t.Fatal(err)
	}
	h.Release()
	r := <-done
	if r.err == nil || !redis.IsUnreachable(r.err) {
		t.Fatalf("ReplayWrites on a killed connection = %+v, %v; want an unreachable error", r.out, r.err)
	}
	if got := plain.Get(ctx, "r:k").Val(); got != "old" {
		t.Fatalf("Redis holds %q after the killed transaction; want %q", got, "old")
	}
	out, err := tr.ReplayWrites(ctx, batch)
	if err != nil || len(out) != 1 || !out[0].Applied {
		t.Fatalf("ReplayWrites again = %+v, %v; want applied", out, err)
	}
}

// TestReview6ReplayFitsTheTimeoutOfOneRoundTrip: over a link whose round
// trip (60ms) is well within the timeout (150ms; the default OpTimeout is
// 100ms, a 40ms round trip would do the same), where Get and the script
// take one round trip each on a warm connection, the replay of an update
// of a session must finish. The checked transaction needs three
// sequential round trips (WATCH and lengths, GETRANGE, MULTI/EXEC) within
// the one timeout of the batch: it times out, its connection is closed,
// and every retry, on a new connection, needs more still; the replay
// never finishes although Redis answers every call in time. The ring
// (script) case is the control: it passes. Connections are opened with
// no latency, then the link slows down.
func TestReview6ReplayFitsTheTimeoutOfOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	var oneWay atomic.Int64
	addr := redistest.LatencyProxy(t, srv.Addr, &oneWay)
	single := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { single.Close(); ring.Close() })
	for _, c := range []struct {
		name   string
		client goredis.UniversalClient
	}{{"script (ring)", ring}, {"transaction (single node)", single}} {
		t.Run(c.name, func(t *testing.T) {
			oneWay.Store(0)
			tr, err := redis.New(c.client, redis.Config{Prefix: "r:", Timeout: 150 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Close)
			// Warm connections, the script loaded, as in a store running
			// before: one replay that applies, on the write connections.
			plain.Set(ctx, "r:s", "old", time.Hour)
			if out, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "w", Value: []byte("w"), Expires: time.Now().Add(time.Minute), Bases: []string{""}}}); err != nil || !out[0].Applied {
				t.Fatalf("warm-up replay without latency: %+v, %v", out, err)
			}
			if _, _, ok, err := tr.Get(ctx, "s"); err != nil || !ok {
				t.Fatalf("warm-up Get: %v, %v", ok, err)
			}
			oneWay.Store(int64(30 * time.Millisecond))
			start := time.Now()
			if _, _, ok, err := tr.Get(ctx, "s"); err != nil || !ok {
				t.Fatalf("Get over the slow link: %v, %v; want the value within the timeout", ok, err)
			}
			t.Logf("Get over the slow link took %v", time.Since(start).Round(time.Millisecond))
			batch := []redis.Replay{{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}}}
			var errs []error
			for range 3 {
				out, err := tr.ReplayWrites(ctx, batch)
				if err == nil {
					if len(out) != 1 || !out[0].Applied {
						t.Fatalf("ReplayWrites = %+v; want applied", out)
					}
					return
				}
				errs = append(errs, err)
			}
			t.Fatalf("ReplayWrites of one update failed 3 times in a row over a link of 60ms round trips, timeout 150ms: %v", errs)
		})
	}
}
