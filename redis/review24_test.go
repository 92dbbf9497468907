package redis_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// Review 24: adversarial tests of 6c168e7 (bases are redis.Sum, Redis
// cannot compute them, so both replay paths read the values first and
// compare them in Go; the script path then sends the SHA-1 of what it read).

// review24Write is the outage write most tests replay: "new" over "old".
func review24Write(bases ...string) []redis.Replay {
	return []redis.Replay{{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: bases}}
}

// replayWhileHeld replays batch, the one write of key r:s, on tr; holds
// the first chunk it sends that contains hold; runs meanwhile, the
// interleaving tested, while it is held; releases it; and checks that
// the write was applied (Redis then holds its value) or not (Redis holds
// left).
func replayWhileHeld(t *testing.T, plain *goredis.Client, proxy *redistest.Proxy, tr *redis.Tier, hold []byte, batch []redis.Replay, meanwhile func(), applied bool, left string) {
	t.Helper()
	h := proxy.Hold(hold)
	done := replayAsync(tr, batch)
	heldOrFail(t, h, done)
	meanwhile()
	h.Release()
	r := <-done
	want := left
	if applied {
		want = string(batch[0].Value)
	}
	if r.err != nil || len(r.out) != 1 || r.out[0].Applied != applied || r.out[0].Err != nil {
		t.Errorf("ReplayWrites = %+v, %v; want applied %v", r.out, r.err, applied)
	}
	if got := plain.Get(context.Background(), "r:s").Val(); got != want {
		t.Errorf("Redis holds %.16q (%d bytes); want %.16q (%d bytes)", got, len(got), want, len(want))
	}
}

// review24ReadOnlyCluster returns a Tier of prefix "r:" on a cluster
// client of one shard, whose primary is primary and whose replica is
// replica, with ReadOnly set (reads go to the replica, as many cluster
// users configure it; RouteByLatency and RouteRandomly imply it).
func review24ReadOnlyCluster(t *testing.T, primary, replica string) *redis.Tier {
	t.Helper()
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{
		ClusterSlots: func(context.Context) ([]goredis.ClusterSlot, error) {
			return []goredis.ClusterSlot{{Start: 0, End: 16383, Nodes: []goredis.ClusterNode{{Addr: primary}, {Addr: replica}}}}, nil
		},
		ReadOnly: true,
	})
	t.Cleanup(func() { cc.Close() })
	tr, err := redis.New(cc, redis.Config{Prefix: "r:", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// TestReview24ReplicaReadsDropWritesRedisNeverChanged (FAILS on 6c168e7):
// on a cluster client with ReadOnly (reads served by replicas), the
// script path's read pipeline (EXISTS, STRLEN, GETRANGE: all read-only
// commands) goes to the replica, and only EVALSHA to the primary. A
// replica that lags (here its replication link is cut; after an outage a
// replica is often still resyncing) shows an older state of the key: the
// write is decided against it, and dropped as a conflict, although the
// primary, the only Redis whose value counts, still holds the write's base:
// "acknowledged writes are replayed unless Redis changed meanwhile". Before
// 6c168e7 the script compared on the primary alone. Either way nothing is
// overwritten (the script checks on the primary): the harm is the lost
// write.
func TestReview24ReplicaReadsDropWritesRedisNeverChanged(t *testing.T) {
	primary, replicaSrv := redistest.Start(t), redistest.Start(t)
	link := redistest.NewProxy(t, primary.Addr) // the replication link
	ctx := context.Background()
	p, r := primary.Client(), replicaSrv.Client()
	p.ConfigSet(ctx, "repl-diskless-sync-delay", "0") // sync at once
	p.Set(ctx, "r:s", "older", time.Hour)
	host, port, _ := strings.Cut(link.Addr, ":")
	if err := r.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Do(context.Background(), "REPLICAOF", "NO", "ONE") })
	deadline := time.Now().Add(10 * time.Second)
	for r.Get(ctx, "r:s").Val() != "older" {
		if time.Now().After(deadline) {
			t.Fatal("the replica never synced")
		}
		time.Sleep(5 * time.Millisecond) // polling the replica's sync
	}
	link.Cut() // the replica lags from here on
	// What this instance last saw of the sessions, on the primary.
	p.Set(ctx, "r:s", "old", time.Hour) // "older" on the replica
	p.Set(ctx, "r:u", "old", time.Hour) // absent on the replica
	if got := r.Get(ctx, "r:s").Val(); got != "older" {
		t.Fatalf("the replica holds %q; want it lagging at %q", got, "older")
	}
	tr := review24ReadOnlyCluster(t, primary.Addr, replicaSrv.Addr)
	exp := time.Now().Add(time.Minute)
	batch := []redis.Replay{
		{ID: "s", Value: []byte("new"), Expires: exp, Bases: []string{base("old")}},
		{ID: "u", Value: []byte("new"), Expires: exp, Bases: []string{base("old")}},
	}
	out, err := tr.ReplayWrites(ctx, batch)
	if err != nil || len(out) != 2 {
		t.Fatalf("ReplayWrites = %+v, %v", out, err)
	}
	for i, w := range batch {
		got := p.Get(ctx, "r:"+w.ID).Val()
		if !out[i].Applied || got != "new" {
			t.Errorf("%s: outcome %+v, the primary holds %q; want the write applied: the primary still holds its base %q, "+
				"but the replay read a lagging replica", w.ID, out[i], got, "old")
		}
	}
}

// TestReview24RefusedGetrangeIsNotAConflict (FAILS on 6c168e7): a reply
// refusing GETRANGE itself (here an ACL user without it, which serves
// EXISTS, STRLEN, WATCH, MULTI, SET, EXEC, EVALSHA and GET in scripts)
// is taken by readValues for "changed since STRLEN": the key is read
// again, three times, then counted a conflict, and the write dropped as
// replay_conflict, although Redis never changed: it still holds the
// write's base. Before 6c168e7 the key went to the script, which read it
// with GET and applied the write. A refused read must stop the batch (the
// writes wait) or be the write's error, never a conflict.
func TestReview24RefusedGetrangeIsNotAConflict(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	if err := plain.Do(ctx, "ACL", "SETUSER", "nogetrange", "on", ">pw", "~*", "&*", "+@all", "-getrange").Err(); err != nil {
		t.Fatal(err)
	}
	single := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "nogetrange", Password: "pw"})
	t.Cleanup(func() { single.Close() })
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": srv.Addr}, Username: "nogetrange", Password: "pw"})
	t.Cleanup(func() { ring.Close() })
	for name, client := range map[string]goredis.UniversalClient{"transaction": single, "script": ring} {
		t.Run(name, func(t *testing.T) {
			plain.Set(ctx, "r:s", "old", time.Hour)
			out, err := newTier(t, client, "r:").ReplayWrites(ctx, review24Write(base("old")))
			got := plain.Get(ctx, "r:s").Val()
			if err == nil && len(out) == 1 && !out[0].Applied && out[0].Err == nil {
				t.Fatalf("ReplayWrites = a conflict, Redis holding %q; want the write applied, or an error: Redis never changed, GETRANGE was refused", got)
			}
			if err == nil && (len(out) != 1 || out[0].Applied != (got == "new")) {
				t.Fatalf("ReplayWrites = %+v, Redis holding %q", out, got)
			}
		})
	}
}

// TestReview24DeletedBetweenReadAndScriptStaysDeleted (passes): a session
// deleted by another instance after the script path read it (and accepted
// its value) is not resurrected: the script finds the key absent, the key
// is read again, absent is no base of the write, a conflict.
func TestReview24DeletedBetweenReadAndScriptStaysDeleted(t *testing.T) {
	for _, how := range []string{"DEL", "FLUSHALL", "expiry"} {
		t.Run(how, func(t *testing.T) {
			plain, proxy, tr := scriptTier(t)
			ctx := context.Background()
			plain.Set(ctx, "r:s", "old", time.Hour)
			h := proxy.Hold([]byte("evalsha"))
			done := replayAsync(tr, review24Write(base("old")))
			heldOrFail(t, h, done)
			switch how {
			case "DEL":
				plain.Del(ctx, "r:s")
			case "FLUSHALL": // also drops nothing of the script cache; see the NOSCRIPT test
				plain.FlushAll(ctx)
			case "expiry":
				plain.PExpire(ctx, "r:s", time.Millisecond)
				for plain.Exists(ctx, "r:s").Val() != 0 { // polling; EXISTS expires it lazily
				}
			}
			h.Release()
			r := <-done
			if r.err != nil || len(r.out) != 1 || r.out[0].Applied || r.out[0].Err != nil {
				t.Errorf("ReplayWrites = %+v, %v; want a conflict", r.out, r.err)
			}
			if n := plain.Exists(ctx, "r:s").Val(); n != 0 {
				t.Errorf("the deleted session is back: %q", plain.Get(ctx, "r:s").Val())
			}
		})
	}
}

// TestReview24ScriptFlushedBetweenReadAndScript (passes): SCRIPT FLUSH
// (or a restart that lost the script cache) between the read and EVALSHA:
// NOSCRIPT, the script is sent whole, and decides as EVALSHA would: applied
// over an unchanged base, a conflict over another writer's value.
func TestReview24ScriptFlushedBetweenReadAndScript(t *testing.T) {
	for _, c := range []struct {
		meanwhile string // "" : unchanged
		applied   bool
	}{{"", true}, {"theirs", false}} {
		t.Run("meanwhile "+c.meanwhile, func(t *testing.T) {
			plain, proxy, tr := scriptTier(t)
			ctx := context.Background()
			plain.Set(ctx, "r:s", "old", time.Hour)
			// Load the script first, so that EVALSHA is what the replay sends.
			if _, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "warm", Value: []byte("w"), Expires: time.Now().Add(time.Minute), Bases: []string{""}}}); err != nil {
				t.Fatal(err)
			}
			replayWhileHeld(t, plain, proxy, tr, []byte("evalsha"), review24Write(base("old")), func() {
				plain.ScriptFlush(ctx)
				if c.meanwhile != "" {
					plain.Set(ctx, "r:s", c.meanwhile, time.Hour)
				}
			}, c.applied, c.meanwhile)
		})
	}
}

// TestReview24ValueChangedBetweenStrlenAndGetrange (passes): on both
// paths, a value changed between STRLEN and GETRANGE: to another value of
// the same length (GETRANGE reads it whole, no length mismatch) that is
// no base, a conflict and that value stays; grown to another base, read
// again and applied; shrunk to a value not a base, a conflict.
func TestReview24ValueChangedBetweenStrlenAndGetrange(t *testing.T) {
	for _, c := range []struct {
		name, meanwhile string
		applied         bool
	}{
		{"same length, not a base", "oxd", false},
		{"grown, a base", "middle", true},
		{"shrunk, not a base", "o", false},
		{"same length, a base", "mid", true},
	} {
		for _, path := range []string{"transaction", "script"} {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				plain, proxy, tr := pathTier(t, path, time.Second)
				ctx := context.Background()
				plain.Set(ctx, "r:s", "old", time.Hour)
				replayWhileHeld(t, plain, proxy, tr, getrangeOf(path), review24Write(base("old"), base("mid"), base("middle")), func() {
					plain.Set(ctx, "r:s", c.meanwhile, time.Hour)
				}, c.applied, c.meanwhile)
			})
		}
	}
}

// TestReview24TypeChangedBetweenStrlenAndGetrange (passes): a key turned
// into a hash between STRLEN and GETRANGE is read again, and is then that
// write's error (a key of another type), on both paths, the hash left as
// it is.
func TestReview24TypeChangedBetweenStrlenAndGetrange(t *testing.T) {
	for _, path := range []string{"transaction", "script"} {
		t.Run(path, func(t *testing.T) {
			plain, proxy, tr := pathTier(t, path, time.Second)
			ctx := context.Background()
			plain.Set(ctx, "r:s", "old", time.Hour)
			h := proxy.Hold(getrangeOf(path))
			done := replayAsync(tr, review24Write(base("old")))
			heldOrFail(t, h, done)
			plain.Del(ctx, "r:s")
			plain.HSet(ctx, "r:s", "f", "v")
			h.Release()
			r := <-done
			if r.err != nil || len(r.out) != 1 || r.out[0].Applied || r.out[0].Err == nil || !strings.Contains(r.out[0].Err.Error(), "WRONGTYPE") {
				t.Errorf("ReplayWrites = %+v, %v; want a WRONGTYPE outcome", r.out, r.err)
			}
			if typ := plain.Type(ctx, "r:s").Val(); typ != "hash" {
				t.Errorf("the key is a %s; want the hash left as it was", typ)
			}
		})
	}
}

// TestReview24LateScriptDoesNotOverwrite (passes): a script held past the
// timeout (the batch fails, unreachable; a ring is not fenced) reaches
// Redis after another instance wrote the key: it compares the SHA-1 of
// what was read with what Redis holds then, and leaves the other value.
// The replay tried again is a conflict.
func TestReview24LateScriptDoesNotOverwrite(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	proxy := redistest.NewProxy(t, srv.Addr)
	tr, err := redis.New(scriptClient(t, proxy.Addr), redis.Config{Prefix: "r:", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	plain.Set(ctx, "r:s", "old", time.Hour)
	// Load the script, so that the held chunk is the EVALSHA.
	if _, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "warm", Value: []byte("w"), Expires: time.Now().Add(time.Minute), Bases: []string{""}}}); err != nil {
		t.Fatal(err)
	}
	h := proxy.Hold([]byte("evalsha"))
	done := replayAsync(tr, review24Write(base("old")))
	heldOrFail(t, h, done)
	r := <-done // the timeout passes
	if r.err == nil || !redis.IsUnreachable(r.err) {
		t.Fatalf("ReplayWrites with its script held = %+v, %v; want an unreachable error", r.out, r.err)
	}
	plain.Set(ctx, "r:s", "theirs", time.Hour)
	before := review6Calls(t, plain, "evalsha")["evalsha"]
	h.Release()
	for review6Calls(t, plain, "evalsha")["evalsha"] == before { // polling until the late script ran
	}
	if got := plain.Get(ctx, "r:s").Val(); got != "theirs" {
		t.Fatalf("the late script overwrote the other instance's value: Redis holds %q", got)
	}
	out, err := tr.ReplayWrites(ctx, review24Write(base("old")))
	if err != nil || len(out) != 1 || out[0].Applied || out[0].Err != nil {
		t.Errorf("ReplayWrites again = %+v, %v; want a conflict", out, err)
	}
}

// TestReview24BusyStopsTheBatch (the "cold" cases FAIL on 6c168e7; the
// "warm" ones pass): a script running past its time (BUSY for every read)
// must stop the batch on both paths: an error, not unreachable, no
// outcomes, the key unchanged, the write waiting. Warm: the Tier's
// connection was open before Redis turned BUSY; WATCH is answered OK,
// EXISTS and STRLEN BUSY, and read returns the error. Cold: the replay
// opens the connection (as after a Fence, which closed the others) while
// Redis is BUSY: the connection's handshake sets its name (CLIENT SETNAME:
// always on the transaction path, whose write client is named for Fence;
// on the script path when the caller's client names its connections) and
// is refused BUSY; the pipeline fails before sending anything with a
// reply error (not unreachable), its commands carry no error and zero
// values, and read takes EXISTS 0 for every key: absent. A write whose
// bases do not include "" is then a conflict, dropped as replay_conflict
// while Redis never changed; one of a new session would be "applied".
func TestReview24BusyStopsTheBatch(t *testing.T) {
	for _, warm := range []bool{true, false} {
		name := map[bool]string{true: "warm", false: "cold"}[warm]
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			plain := srv.Client()
			ctx := context.Background()
			plain.Set(ctx, "r:s", "old", time.Hour)
			single := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
			t.Cleanup(func() { single.Close() })
			named := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": srv.Addr}, ClientName: "app"})
			t.Cleanup(func() { named.Close() })
			clients := map[string]goredis.UniversalClient{"transaction": single, "script": named}
			tiers := map[string]*redis.Tier{}
			for name, c := range clients {
				tiers[name] = newTier(t, c, "r:")
				if warm {
					if _, err := tiers[name].ReplayWrites(ctx, []redis.Replay{{ID: "warm", Value: []byte("w"), Expires: time.Now().Add(time.Minute), Bases: []string{""}}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			stop := srv.Busy()
			for name, tr := range tiers {
				out, err := tr.ReplayWrites(ctx, review24Write(base("old")))
				if err == nil || !strings.Contains(err.Error(), "BUSY") || redis.IsUnreachable(err) || out != nil {
					t.Errorf("%s: ReplayWrites while BUSY = %+v, %v; want a BUSY error, not unreachable, no outcomes", name, out, err)
				}
			}
			stop()
			if got := plain.Get(ctx, "r:s").Val(); got != "old" {
				t.Errorf("Redis holds %q; want the key unchanged", got)
			}
		})
	}
}

// TestReview24RefusedHandshakeIsNotAConflict (FAILS on 6c168e7): the same
// flaw as the cold BUSY case, with the handshake refused for good: the
// Redis user's password changed during the outage (a rotation, a Redis
// back without its ACL file). Every connection the replay opens fails its
// AUTH with a WRONGPASS reply, not unreachable; read takes every key for
// absent and compareAndSet every unanswered script for "changed since
// read": a batch of pending writes of existing sessions is dropped as
// replay_conflict without Redis ever having been read. (A batch with a
// write of a new session, "accepted" over the bogus absent key, stops
// instead: its script's missing reply, "unexpected type=<nil> for Int", is
// taken for unreachable.)
func TestReview24RefusedHandshakeIsNotAConflict(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	if err := plain.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	plain.Set(ctx, "r:s", "old", time.Hour)
	single := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "app", Password: "pw"})
	t.Cleanup(func() { single.Close() })
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": srv.Addr}, Username: "app", Password: "pw"})
	t.Cleanup(func() { ring.Close() })
	tiers := map[string]*redis.Tier{"transaction": newTier(t, single, "r:"), "script": newTier(t, ring, "r:")}
	if err := plain.Do(ctx, "ACL", "SETUSER", "app", "resetpass", ">rotated").Err(); err != nil {
		t.Fatal(err)
	}
	for name, tr := range tiers {
		out, err := tr.ReplayWrites(ctx, review24Write(base("old")))
		if err == nil {
			t.Errorf("%s: ReplayWrites with every connection refused (WRONGPASS) = %+v, no error; want an error and the writes waiting, not conflicts", name, out)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestReview24BusyBatchLeavesNoWatch (see the report): WATCH is allowed
// while a script is BUSY, the EXISTS and STRLEN after it are not; the
// batch fails with BUSY out of Client.Watch's function, and go-redis's Tx
// does not know of the WATCH sent raw in the pipeline, so the connection
// goes back to the pool still watching the key. A later batch on it, of
// keys nobody touched, then has its EXEC aborted because another client
// changed the first batch's key, and goes to the script: the extra round
// trips and the script's work the transaction is there to save.
func TestReview24BusyBatchLeavesNoWatch(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	tr := newTier(t, plain, "r:")
	plain.Set(ctx, "r:s", "old", time.Hour)
	// Open the Tier's write connection before Redis turns BUSY.
	if _, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "warm", Value: []byte("w"), Expires: time.Now().Add(time.Minute), Bases: []string{""}}}); err != nil {
		t.Fatal(err)
	}
	stop := srv.Busy()
	if _, err := tr.ReplayWrites(ctx, review24Write(base("old"))); err == nil || !strings.Contains(err.Error(), "BUSY") {
		t.Fatalf("ReplayWrites while BUSY = %v; want a BUSY error", err)
	}
	stop()
	plain.Set(ctx, "r:s", "theirs", time.Hour)
	before := review6Calls(t, plain, "exec", "evalsha", "eval")
	out, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "n", Value: []byte("n"), Expires: time.Now().Add(time.Minute), Bases: []string{""}}})
	if err != nil || len(out) != 1 || !out[0].Applied {
		t.Fatalf("ReplayWrites after BUSY = %+v, %v; want applied", out, err)
	}
	after := review6Calls(t, plain, "exec", "evalsha", "eval")
	if s := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]; s != 0 {
		t.Errorf("a batch of an untouched absent key went to the script (%d script calls, %d EXEC): "+
			"the BUSY batch's WATCH stayed on the pooled connection and aborted this EXEC", s, after["exec"]-before["exec"])
	}
}

// TestReview24MalformedBasesNeverApply (passes): bases that Base did not
// spell (upper-case hex, an old SHA-1, truncated, "-", one naming the
// right length with another hash) never let a write replace what the key
// holds, on both paths; Redis keeps "old".
func TestReview24MalformedBasesNeverApply(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	good := base("old")
	forged := strings.Repeat("0", 16) + good[16:] // the length of "old", a zero hash
	bad := []string{strings.ToUpper(good), "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", good[:23], good + "0", "-", forged}
	for name, client := range map[string]goredis.UniversalClient{"transaction": srv.Client(), "script": scriptClient(t, srv.Addr)} {
		for _, b := range bad {
			plain.Set(ctx, "r:s", "old", time.Hour)
			out, err := newTier(t, client, "r:").ReplayWrites(ctx, review24Write(b))
			if err != nil || len(out) != 1 || out[0].Applied || out[0].Err != nil {
				t.Errorf("%s, base %q: ReplayWrites = %+v, %v; want a conflict", name, b, out, err)
			}
			if got := plain.Get(ctx, "r:s").Val(); got != "old" {
				t.Errorf("%s, base %q: Redis holds %q; want old", name, b, got)
			}
		}
	}
}

// TestReview24ReadBudgetPerRoundTrip (passes): values to compare are read
// in round trips of at most 512 KiB, a longer value alone, after the
// lengths (values over 16 KiB are not read with them): three values of
// 300 KiB take three round trips after the lengths, a 600 KiB value one,
// three of 100 KiB one together; each write is applied over its base.
func TestReview24ReadBudgetPerRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	ctx := context.Background()
	for name, client := range map[string]goredis.UniversalClient{"transaction": srv.Client(), "script": scriptClient(t, srv.Addr)} {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			rounds := 0
			tr, err := redis.New(client, redis.Config{Prefix: "r:", Timeout: 5 * time.Second, Trace: func(ctx context.Context, op string) (context.Context, func(error)) {
				if op == "GETRANGE" || op == "STRLEN" || op == "WATCH" {
					mu.Lock()
					rounds++
					mu.Unlock()
				}
				return ctx, func(error) {}
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Close)
			for _, c := range []struct {
				sizes  []int
				rounds int
			}{{[]int{300 << 10, 300 << 10, 300 << 10}, 4}, {[]int{600 << 10}, 2}, {[]int{100 << 10, 100 << 10, 100 << 10}, 2}} {
				plain.FlushDB(ctx)
				var batch []redis.Replay
				for i, n := range c.sizes {
					id := string(rune('a' + i))
					v := strings.Repeat(id, n)
					plain.Set(ctx, "r:"+id, v, time.Hour)
					batch = append(batch, redis.Replay{ID: id, Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: []string{base(v)}})
				}
				mu.Lock()
				rounds = 0
				mu.Unlock()
				out, err := tr.ReplayWrites(ctx, batch)
				if err != nil || len(out) != len(batch) {
					t.Fatalf("sizes %v: ReplayWrites = %+v, %v", c.sizes, out, err)
				}
				for i, o := range out {
					if !o.Applied {
						t.Errorf("sizes %v: write %d: %+v; want applied", c.sizes, i, o)
					}
				}
				mu.Lock()
				got := rounds
				mu.Unlock()
				if got != c.rounds {
					t.Errorf("sizes %v: %d round trips reading; want %d", c.sizes, got, c.rounds)
				}
			}
		})
	}
}

// TestReview24CancelledContext (passes): a replay under a cancelled
// context fails as unreachable with no outcomes, on both paths, and
// writes nothing.
func TestReview24CancelledContext(t *testing.T) {
	srv := redistest.Start(t)
	plain := srv.Client()
	plain.Set(context.Background(), "r:s", "old", time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, client := range map[string]goredis.UniversalClient{"transaction": srv.Client(), "script": scriptClient(t, srv.Addr)} {
		out, err := newTier(t, client, "r:").ReplayWrites(ctx, review24Write(base("old")))
		if err == nil || !redis.IsUnreachable(err) || !errors.Is(err, context.Canceled) || out != nil {
			t.Errorf("%s: ReplayWrites with a cancelled context = %+v, %v; want context.Canceled, unreachable, no outcomes", name, out, err)
		}
	}
	if got := plain.Get(context.Background(), "r:s").Val(); got != "old" {
		t.Errorf("Redis holds %q; want it unchanged", got)
	}
}

// getrangeOf is what the proxy holds to hold a replay's read of values on
// path: GETRANGE, on both (a cluster client that reads from replicas
// reads by script instead). Values as short as these tests' are read in
// the first round trip, with their lengths: what is held is then that
// round trip, and the change comes before it.
func getrangeOf(string) []byte { return []byte("getrange") }
