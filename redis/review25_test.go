package redis_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// Review 25: adversarial tests of f5712eb (a replay's first round trip
// reads, with EXISTS and STRLEN, the values each write may replace; the
// script path reads with plain commands but on a cluster client that reads
// from replicas).

// review25Split is a relay that, once armed, splits the next chunk a
// client sends that holds match, before the first occurrence of at: it
// forwards what comes before, signals paused, and forwards the rest once
// resume is closed; so that another client's command runs between two
// commands of one pipeline, which Redis otherwise runs back to back.
type review25Split struct {
	match, at []byte
	armed     atomic.Bool
	paused    chan struct{}
	resume    chan struct{}
}

func review25Relay(t *testing.T, target string, match, at string) (string, *review25Split) {
	s := &review25Split{match: []byte(match), at: []byte(at), paused: make(chan struct{}), resume: make(chan struct{})}
	addr := redistest.Relay(t, target, func(dst, src net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if i := bytes.Index(chunk, s.at); i >= 0 && bytes.Contains(chunk, s.match) && s.armed.CompareAndSwap(true, false) {
					if _, err := dst.Write(chunk[:i]); err != nil {
						return
					}
					close(s.paused)
					<-s.resume
					chunk = chunk[i:]
				}
				if _, err := dst.Write(chunk); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}, nil)
	t.Cleanup(func() {
		select {
		case <-s.resume:
		default:
			close(s.resume)
		}
	})
	return addr, s
}

// review25Tier is a Tier of prefix "r:" on path's client ("transaction": a
// single node; "script": a one-shard ring) of addr.
func review25Tier(t *testing.T, path, addr string, cfg redis.Config) *redis.Tier {
	t.Helper()
	var client goredis.UniversalClient
	if path == "script" {
		client = scriptClient(t, addr)
	} else {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		client = c
	}
	cfg.Prefix = "r:"
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	tr, err := redis.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// review25WaitCalls polls until Redis ran cmd more than before times.
func review25WaitCalls(t *testing.T, c *goredis.Client, cmd string, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for review6Calls(t, c, cmd)[cmd] <= before {
		if time.Now().After(deadline) {
			t.Fatalf("Redis never ran the %s before the split", cmd)
		}
	}
}

// TestReview25ChangedWithinTheFirstRoundTrip (expected to pass): on both
// plain-read paths, another client's command runs between two commands of
// the first round trip (the relay splits the pipeline; Redis would run a
// pipeline arriving whole back to back). Whatever the first round trip
// pieced together, the write is applied only over a value it accepts that
// Redis still holds, and never resurrects a key deleted meanwhile.
func TestReview25ChangedWithinTheFirstRoundTrip(t *testing.T) {
	type tc struct {
		name      string
		before    string // "" : absent
		at        string // split before this command
		bases     []string
		meanwhile func(ctx context.Context, c *goredis.Client)
		applied   bool
		want      string // what Redis holds after; "" : absent
	}
	set := func(v string) func(context.Context, *goredis.Client) {
		return func(ctx context.Context, c *goredis.Client) { c.Set(ctx, "r:s", v, time.Hour) }
	}
	del := func(ctx context.Context, c *goredis.Client) { c.Del(ctx, "r:s") }
	existsAt, getrangeAt := "*2\r\n$6\r\nexists", "*4\r\n$8\r\ngetrange"
	bases := []string{base("old"), base("mid"), base("middle")}
	cases := []tc{
		{"between STRLEN and GETRANGE: same length, a base", "old", getrangeAt, bases, set("mid"), true, "new"},
		{"between STRLEN and GETRANGE: same length, not a base", "old", getrangeAt, bases, set("oxd"), false, "oxd"},
		{"between STRLEN and GETRANGE: grown to a base", "old", getrangeAt, bases, set("middle"), true, "new"},
		{"between STRLEN and GETRANGE: shrunk, not a base", "old", getrangeAt, bases, set("o"), false, "o"},
		{"between STRLEN and GETRANGE: deleted", "old", getrangeAt, bases, del, false, ""},
		{"between STRLEN and EXISTS: deleted, an empty value accepted", "old", existsAt, []string{base(""), base("old")}, del, false, ""},
		{"between STRLEN and EXISTS: created, a new session", "", existsAt, []string{""}, set("theirs"), false, "theirs"},
		{"between STRLEN and EXISTS: created, absent or old accepted", "", existsAt, []string{"", base("old")}, set("theirs"), false, "theirs"},
	}
	for _, path := range []string{"transaction", "script"} {
		for _, c := range cases {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				srv := redistest.Start(t)
				plain := srv.Client()
				ctx := context.Background()
				addr, split := review25Relay(t, srv.Addr, "strlen", c.at)
				tr := review25Tier(t, path, addr, redis.Config{})
				if c.before != "" {
					plain.Set(ctx, "r:s", c.before, time.Hour)
				}
				cmd := "strlen" // the first command of each key (see redis's reader.probe)
				before := review6Calls(t, plain, cmd)[cmd]
				split.armed.Store(true)
				done := replayAsync(tr, []redis.Replay{{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: c.bases}})
				select {
				case <-split.paused:
				case r := <-done:
					t.Fatalf("the replay ended (%+v, %v) without the split", r.out, r.err)
				}
				review25WaitCalls(t, plain, cmd, before)
				c.meanwhile(ctx, plain)
				close(split.resume)
				r := <-done
				if r.err != nil || len(r.out) != 1 || r.out[0].Applied != c.applied || r.out[0].Err != nil {
					t.Errorf("ReplayWrites = %+v, %v; want applied %v", r.out, r.err, c.applied)
				}
				got, err := plain.Get(ctx, "r:s").Result()
				if c.want == "" {
					if err != goredis.Nil {
						t.Errorf("Redis holds %q (%v); want the key left absent", got, err)
					}
				} else if got != c.want {
					t.Errorf("Redis holds %q; want %q", got, c.want)
				}
			})
		}
	}
}

// review25Rounds counts the round trips of a Tier by op, through Trace.
type review25Rounds struct {
	mu  sync.Mutex
	ops map[string]int
}

func (r *review25Rounds) trace(ctx context.Context, op string) (context.Context, func(error)) {
	r.mu.Lock()
	if r.ops == nil {
		r.ops = map[string]int{}
	}
	r.ops[op]++
	r.mu.Unlock()
	return ctx, func(error) {}
}

func (r *review25Rounds) get(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op]
}

// TestReview25EmptyValueReadInTheFirstRoundTrip (passes): a key holding an
// empty value that the write may replace (a base of "") is read whole by
// the first round trip's GETRANGE, which answers "": no GETRANGE round
// trip after it (f5712eb dropped read's size-0 case; probe relies on
// go-redis's StringCmd.Bytes answering a non-nil slice for "", which it
// does here: unsafe.Slice of unsafe.StringData of a string read off the
// wire), on both plain-read paths.
func TestReview25EmptyValueReadInTheFirstRoundTrip(t *testing.T) {
	for _, path := range []string{"transaction", "script"} {
		t.Run(path, func(t *testing.T) {
			srv := redistest.Start(t)
			plain := srv.Client()
			ctx := context.Background()
			var rounds review25Rounds
			tr := review25Tier(t, path, srv.Addr, redis.Config{Trace: rounds.trace})
			plain.Set(ctx, "r:s", "", time.Hour)
			out, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: []string{base("")}}})
			if err != nil || len(out) != 1 || !out[0].Applied {
				t.Fatalf("ReplayWrites = %+v, %v; want applied", out, err)
			}
			if got := plain.Get(ctx, "r:s").Val(); got != "new" {
				t.Errorf("Redis holds %q; want new", got)
			}
			if g := rounds.get("GETRANGE"); g != 0 {
				t.Errorf("%d GETRANGE round trips after the first; want none: the empty value was read whole in the first", g)
			}
		})
	}
}

// TestReview25ForeignValueOfAnotherLengthUnread (FAILS on f5712eb, against
// the README): "a value of a length no base has, or longer than
// MaxValueBytes, is a conflict, unread". The first round trip's GETRANGE
// is sent before the length is known: a key holding another writer's
// 400 KiB value, replaced by a write of 300 KiB over a short base, has
// its first 300 KiB + 1 bytes read back, to be found a conflict by its
// length. Bounded by the budget, so not a breach of the 512 KiB a round
// trip; the README's "unread" (and read's comment: "never read past that
// bound" holds only with the bound being the write's longest) is what no
// longer holds.
func TestReview25ForeignValueOfAnotherLengthUnread(t *testing.T) {
	for _, path := range []string{"transaction", "script"} {
		t.Run(path, func(t *testing.T) {
			srv := redistest.Start(t)
			plain := srv.Client()
			ctx := context.Background()
			tr := review25Tier(t, path, srv.Addr, redis.Config{})
			plain.Set(ctx, "r:s", strings.Repeat("t", 400<<10), time.Hour)
			before := netOut(t, plain)
			out, err := tr.ReplayWrites(ctx, []redis.Replay{{ID: "s", Value: bytes.Repeat([]byte("n"), 300<<10), Expires: time.Now().Add(time.Minute), Bases: []string{base("old")}}})
			if err != nil || len(out) != 1 || out[0].Applied || out[0].Err != nil {
				t.Fatalf("ReplayWrites = %+v, %v; want a conflict", out, err)
			}
			if sent := netOut(t, plain) - before; sent > 64<<10 {
				t.Errorf("Redis sent %d bytes to find a value of a length no base has a conflict; want it unread", sent)
			}
		})
	}
}

// TestReview25LengthsAtTheBounds (expected to pass): on both plain-read
// paths, with and without MaxValueBytes, values one byte off the lengths
// the write may replace, or differing by their last byte, are conflicts;
// a value one byte longer than the longest the write may replace (upTo+1,
// the most GETRANGE reads) is a conflict; a base exactly MaxValueBytes long
// is applied; a base longer than MaxValueBytes, held by Redis, is a
// conflict (a value no store of this limit wrote), one the write's base
// also names a shorter value of is applied; an empty value read whole.
func TestReview25LengthsAtTheBounds(t *testing.T) {
	long := strings.Repeat("L", 100)
	type tc struct {
		id, held string
		bases    []string
		applied  bool
	}
	cases := []tc{
		{"plus1", "old!", []string{base("old")}, false},
		{"minus1", "ol", []string{base("old")}, false},
		{"lastbyte", "olD", []string{base("old")}, false},
		{"longest+1", "nnnn", []string{base("o")}, false}, // Value "nnn" is the longest
		{"own", "nnn", []string{base("o")}, true},
		{"empty", "", []string{base(""), base("old")}, true},
		{"atlimit", long, []string{base(long)}, true},
		{"overlimit", long + "x", []string{base(long + "x")}, false},
		{"overlimit-short", "old", []string{base(long + "x"), base("old")}, true},
	}
	for _, limit := range []int{0, 100} {
		for _, path := range []string{"transaction", "script"} {
			t.Run(path, func(t *testing.T) {
				srv := redistest.Start(t)
				plain := srv.Client()
				ctx := context.Background()
				tr := review25Tier(t, path, srv.Addr, redis.Config{MaxValueBytes: limit})
				var batch []redis.Replay
				for _, c := range cases {
					plain.Set(ctx, "r:"+c.id, c.held, time.Hour)
					batch = append(batch, redis.Replay{ID: c.id, Value: []byte("nnn"), Expires: time.Now().Add(time.Minute), Bases: c.bases})
				}
				out, err := tr.ReplayWrites(ctx, batch)
				if err != nil || len(out) != len(batch) {
					t.Fatalf("ReplayWrites = %+v, %v", out, err)
				}
				for i, c := range cases {
					want := c.applied
					if c.id == "overlimit" && limit == 0 {
						want = true // no limit: a base like any other
					}
					if out[i].Applied != want || out[i].Err != nil {
						t.Errorf("limit %d, %s: outcome %+v; want applied %v", limit, c.id, out[i], want)
					}
					wantV := c.held
					if want {
						wantV = "nnn"
					}
					if got := plain.Get(ctx, "r:"+c.id).Val(); got != wantV {
						t.Errorf("limit %d, %s: Redis holds %q; want %q", limit, c.id, got, wantV)
					}
				}
			})
		}
	}
}

// TestReview25BudgetOrder (expected to pass): a first write whose upTo
// exceeds the budget is left to a later round trip and does not take the
// budget from the small ones after it; a first write whose upTo takes the
// whole budget leaves writes of upTo 0 read in the first round trip, those
// of upTo 1 to a later one; all applied over their bases.
func TestReview25BudgetOrder(t *testing.T) {
	big := strings.Repeat("B", 600<<10)
	whole := strings.Repeat("W", 512<<10)
	for _, path := range []string{"transaction", "script"} {
		t.Run(path, func(t *testing.T) {
			srv := redistest.Start(t)
			plain := srv.Client()
			ctx := context.Background()
			var rounds review25Rounds
			tr := review25Tier(t, path, srv.Addr, redis.Config{Trace: rounds.trace})
			exp := time.Now().Add(time.Minute)
			// Huge upTo first (its key holds a short base), small ones after.
			plain.Set(ctx, "r:h", "old", time.Hour)
			batch := []redis.Replay{{ID: "h", Value: []byte("v"), Expires: exp, Bases: []string{base(big), base("old")}}}
			for _, id := range []string{"a", "b", "c"} {
				plain.Set(ctx, "r:"+id, "old", time.Hour)
				batch = append(batch, redis.Replay{ID: id, Value: []byte("v"), Expires: exp, Bases: []string{base("old")}})
			}
			out, err := tr.ReplayWrites(ctx, batch)
			if err != nil || len(out) != 4 {
				t.Fatalf("ReplayWrites = %+v, %v", out, err)
			}
			for i, o := range out {
				if !o.Applied {
					t.Errorf("write %d: %+v; want applied", i, o)
				}
			}
			if g := rounds.get("GETRANGE"); g != 1 {
				t.Errorf("%d GETRANGE round trips; want 1 (the huge upTo's key alone)", g)
			}
			// The whole budget first: upTo 0 still read with it, upTo 1 not.
			plain.FlushDB(ctx)
			rounds = review25Rounds{}
			plain.Set(ctx, "r:w", whole, time.Hour)
			plain.Set(ctx, "r:z", "", time.Hour)
			plain.Set(ctx, "r:o", "o", time.Hour)
			batch = []redis.Replay{
				{ID: "w", Value: []byte(""), Expires: exp, Bases: []string{base(whole)}},
				{ID: "z", Value: []byte(""), Expires: exp, Bases: []string{base("")}},
				{ID: "o", Value: []byte("p"), Expires: exp, Bases: []string{base("o")}},
			}
			out, err = tr.ReplayWrites(ctx, batch)
			if err != nil || len(out) != 3 || !out[0].Applied || !out[1].Applied || !out[2].Applied {
				t.Fatalf("ReplayWrites = %+v, %v; want all applied", out, err)
			}
			if v := plain.Get(ctx, "r:o").Val(); v != "p" {
				t.Errorf("Redis holds %q at r:o; want p", v)
			}
		})
	}
}

// review25ReadOnlyCluster is a Tier on a cluster client of one shard with
// ReadOnly, whose primary is primary and whose "replica" is another
// server, empty and not replicating (a replica that lags all the way): a
// read that reaches it decides against the wrong Redis. protocol is the
// client's RESP version.
func review25ReadOnlyCluster(t *testing.T, primary, replica string, protocol int, limit int) *redis.Tier {
	t.Helper()
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{
		ClusterSlots: func(context.Context) ([]goredis.ClusterSlot, error) {
			return []goredis.ClusterSlot{{Start: 0, End: 16383, Nodes: []goredis.ClusterNode{{Addr: primary}, {Addr: replica}}}}, nil
		},
		ReadOnly: true,
		Protocol: protocol,
	})
	t.Cleanup(func() { cc.Close() })
	tr, err := redis.New(cc, redis.Config{Prefix: "r:", Timeout: 5 * time.Second, MaxValueBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// TestReview25ReadOnlyClusterProbeScript (expected to pass): on a ReadOnly
// cluster client, RESP2 and RESP3, the probe script's replies ({e, n} or
// {e, n, value}) are decoded right for every state of the key on the
// primary: a base (applied), the write's own value (applied), an empty
// value that is a base (applied), absent with "" accepted (applied),
// absent without (a conflict), another value of the same length (a
// conflict), a value longer than the probe reads that is a base (read by
// rangeScript, applied), a value one byte longer than the longest the
// write may replace (a conflict), a hash (WRONGTYPE).
func TestReview25ReadOnlyClusterProbeScript(t *testing.T) {
	big := strings.Repeat("B", 600<<10)
	type tc struct {
		id      string
		held    func(ctx context.Context, c *goredis.Client, key string)
		bases   []string
		applied bool
		err     string
	}
	cases := []tc{
		{"base", holding("old"), []string{base("old")}, true, ""},
		{"own", holding("nnn"), []string{""}, true, ""},
		{"empty", holding(""), []string{base("")}, true, ""},
		{"absent-ok", nil, []string{""}, true, ""},
		{"absent-no", nil, []string{base("old")}, false, ""},
		{"other", holding("oxd"), []string{base("old")}, false, ""},
		{"big", holding(big), []string{base(big)}, true, ""},
		{"plus1", holding("nnnn"), []string{base("o")}, false, ""},
		{"hash", func(ctx context.Context, c *goredis.Client, key string) { c.HSet(ctx, key, "f", "v") }, []string{base("old")}, false, "WRONGTYPE"},
	}
	for _, protocol := range []int{2, 3} {
		t.Run(map[int]string{2: "RESP2", 3: "RESP3"}[protocol], func(t *testing.T) {
			primary, replica := redistest.Start(t), redistest.Start(t)
			p := primary.Client()
			ctx := context.Background()
			tr := review25ReadOnlyCluster(t, primary.Addr, replica.Addr, protocol, 0)
			var batch []redis.Replay
			for _, c := range cases {
				if c.held != nil {
					c.held(ctx, p, "r:"+c.id)
				}
				batch = append(batch, redis.Replay{ID: c.id, Value: []byte("nnn"), Expires: time.Now().Add(time.Minute), Bases: c.bases})
			}
			out, err := tr.ReplayWrites(ctx, batch)
			if err != nil || len(out) != len(batch) {
				t.Fatalf("ReplayWrites = %+v, %v", out, err)
			}
			for i, c := range cases {
				o := out[i]
				switch {
				case c.err != "":
					if o.Applied || o.Err == nil || !strings.Contains(o.Err.Error(), c.err) {
						t.Errorf("%s: %+v; want a %s outcome", c.id, o, c.err)
					}
				case o.Applied != c.applied || o.Err != nil:
					t.Errorf("%s: %+v; want applied %v", c.id, o, c.applied)
				}
				if c.applied {
					if got := p.Get(ctx, "r:"+c.id).Val(); got != "nnn" {
						t.Errorf("%s: the primary holds %q; want nnn", c.id, got)
					}
				}
			}
			if n := replica.Client().DBSize(ctx).Val(); n != 0 {
				t.Errorf("the replica holds %d keys; want none written there", n)
			}
		})
	}
}

// TestReview25GetrangeRefusedByACL (expected to pass): an ACL that allows
// EXISTS and STRLEN but not GETRANGE. The first round trip's speculative
// GETRANGE is refused (the pipeline's error is that command's): an update
// is not taken for a conflict (an error, of the write or of the batch; a
// denial now fails the batch, see
// TestReplayWritesFailsWhileAnACLDeniesACommand, and a new session's
// write, which sends no GETRANGE, waits with it), and its key keeps its
// value.
func TestReview25GetrangeRefusedByACL(t *testing.T) {
	for _, path := range []string{"transaction", "script"} {
		t.Run(path, func(t *testing.T) {
			srv := redistest.Start(t)
			plain := srv.Client()
			ctx := context.Background()
			if err := plain.Do(ctx, "ACL", "SETUSER", "r25", "on", ">pw", "~*", "&*", "+@all", "-getrange").Err(); err != nil {
				t.Fatal(err)
			}
			var client goredis.UniversalClient
			if path == "script" {
				client = goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": srv.Addr}, Username: "r25", Password: "pw"})
			} else {
				client = goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "r25", Password: "pw"})
			}
			t.Cleanup(func() { client.Close() })
			tr, err := redis.New(client, redis.Config{Prefix: "r:", Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tr.Close)
			plain.Set(ctx, "r:u", "old", time.Hour)
			exp := time.Now().Add(time.Minute)
			out, err := tr.ReplayWrites(ctx, []redis.Replay{
				{ID: "n", Value: []byte("new"), Expires: exp, Bases: []string{""}},
				{ID: "u", Value: []byte("new"), Expires: exp, Bases: []string{base("old")}},
			})
			switch {
			case err != nil:
				t.Logf("the batch failed: %v", err)
			case len(out) != 2:
				t.Fatalf("ReplayWrites = %+v", out)
			default:
				if !out[0].Applied || out[0].Err != nil {
					t.Errorf("new session: %+v; want applied", out[0])
				}
				if out[1].Applied || out[1].Err == nil || !strings.Contains(out[1].Err.Error(), "NOPERM") {
					t.Errorf("update: %+v; want a NOPERM outcome, not a conflict", out[1])
				}
			}
			if got := plain.Get(ctx, "r:u").Val(); got != "old" {
				t.Errorf("Redis holds %q at r:u; want old", got)
			}
		})
	}
}

// TestReview25FirstRoundTripLandsAfterItsTimeout (expected to pass): the
// first round trip (WATCH, EXISTS, STRLEN, GETRANGE) held in the network
// past four times the timeout fails the batch as unreachable, within
// about that bound; the round trip landing afterwards (it only reads, and
// its WATCH dies with its connection) changes nothing, and the replay
// tried again is applied.
func TestReview25FirstRoundTripLandsAfterItsTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	plain, proxy, tr := proxiedTier(t, timeout)
	ctx := context.Background()
	plain.Set(ctx, "r:s", "old", time.Hour)
	h := proxy.Hold([]byte("strlen"))
	start := time.Now()
	done := replayAsync(tr, review24Write(base("old")))
	heldOrFail(t, h, done)
	r := <-done
	if took := time.Since(start); r.err == nil || !redis.IsUnreachable(r.err) || took > 4*timeout+time.Second {
		t.Fatalf("ReplayWrites with its first round trip held = %+v, %v after %v; want unreachable within 4×%v", r.out, r.err, took, timeout)
	}
	before := review6Calls(t, plain, "strlen")["strlen"]
	h.Release()
	review25WaitCalls(t, plain, "strlen", before)
	if got := plain.Get(ctx, "r:s").Val(); got != "old" {
		t.Fatalf("Redis holds %q after the late round trip; want old", got)
	}
	out, err := tr.ReplayWrites(ctx, review24Write(base("old")))
	if err != nil || len(out) != 1 || !out[0].Applied {
		t.Fatalf("ReplayWrites again = %+v, %v; want applied", out, err)
	}
	if got := plain.Get(ctx, "r:s").Val(); got != "new" {
		t.Errorf("Redis holds %q; want new", got)
	}
}

// TestReview25ChangedBeforeTheSecondRoundTrip (expected to pass): a value
// too long for the first round trip's budget (600 KiB: upTo -1, its
// length only) changed before the GETRANGE round trip that reads it, on
// both plain-read paths: to another value of the same length, a base,
// applied; not a base, a conflict, that value left; to a shorter base,
// read again and applied.
func TestReview25ChangedBeforeTheSecondRoundTrip(t *testing.T) {
	old, mid, theirs := strings.Repeat("o", 600<<10), strings.Repeat("m", 600<<10), strings.Repeat("t", 600<<10)
	for _, c := range []struct {
		name, meanwhile string
		applied         bool
	}{{"same length, a base", mid, true}, {"same length, not a base", theirs, false}, {"shorter, a base", "short", true}} {
		for _, path := range []string{"transaction", "script"} {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				plain, proxy, tr := pathTier(t, path, 5*time.Second)
				ctx := context.Background()
				plain.Set(ctx, "r:s", old, time.Hour)
				replayWhileHeld(t, plain, proxy, tr, []byte("getrange"), review24Write(base(old), base(mid), base("short")), func() {
					plain.Set(ctx, "r:s", c.meanwhile, time.Hour)
				}, c.applied, c.meanwhile)
			})
		}
	}
}
