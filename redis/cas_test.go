package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// scriptTier returns a Tier of prefix "r:" on a one-shard ring through a
// proxy of a server the test started (a Tier that replays by script
// alone, as on a cluster), the proxy, and a plain client of the server.
func scriptTier(t *testing.T) (*goredis.Client, *redistest.Proxy, *redis.Tier) {
	t.Helper()
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	tr, err := redis.New(scriptClient(t, proxy.Addr), redis.Config{Prefix: "r:", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return srv.Client(), proxy, tr
}

// pathTier is scriptTier on path "script", and proxiedTier with a timeout
// of timeout on path "transaction" (a single node).
func pathTier(t *testing.T, path string, timeout time.Duration) (*goredis.Client, *redistest.Proxy, *redis.Tier) {
	t.Helper()
	if path == "script" {
		return scriptTier(t)
	}
	return proxiedTier(t, timeout)
}

// TestReplayScriptRereadsAKeyChangedAfterItsRead: on the script path, a
// key changed between the read and the script is read again: changed to
// another value the write accepts (another of its bases), the write is
// applied; to a value it does not accept, it is a conflict and that value
// stays.
func TestReplayScriptRereadsAKeyChangedAfterItsRead(t *testing.T) {
	// Short values are compared by the script as they were read; values
	// longer than a first read takes (16 KiB), by their SHA-1.
	for _, pad := range []int{0, 20 << 10} {
		v := func(s string) string { return s + strings.Repeat(".", pad) }
		for _, c := range []struct {
			name, meanwhile string
			applied         bool
		}{{"to another base", "mid", true}, {"to another value", "theirs", false}, {"to a value of the same length", "olD", false}} {
			t.Run(fmt.Sprintf("%s, %d bytes", c.name, len(v(c.meanwhile))), func(t *testing.T) {
				plain, proxy, tr := scriptTier(t)
				ctx := context.Background()
				plain.Set(ctx, "r:s", v("old"), time.Hour)
				batch := []redis.Replay{{ID: "s", Value: []byte(v("new")), Expires: time.Now().Add(time.Minute), Bases: []string{base(v("old")), base(v("mid"))}}}
				replayWhileHeld(t, plain, proxy, tr, []byte("evalsha"), batch, func() {
					plain.Set(ctx, "r:s", v(c.meanwhile), time.Hour)
				}, c.applied, v(c.meanwhile))
			})
		}
	}
}

// TestReplayScriptGivesUpOnAKeyThatKeepsChanging: a key changed between
// each read and its script, every time to a value the write accepts, is
// read three times, then counted a conflict: the replay ends, and the
// last value written meanwhile stays.
func TestReplayScriptGivesUpOnAKeyThatKeepsChanging(t *testing.T) {
	plain, proxy, tr := scriptTier(t)
	ctx := context.Background()
	plain.Set(ctx, "r:s", "old", time.Hour)
	meanwhile := []string{"mid", "old", "mid"}
	var done <-chan review6Result
	h := proxy.Hold([]byte("evalsha"))
	for i, v := range meanwhile {
		if i == 0 {
			done = replayAsync(tr, []redis.Replay{{ID: "s", Value: []byte("new"), Expires: time.Now().Add(time.Minute), Bases: []string{base("old"), base("mid")}}})
		}
		heldOrFail(t, h, done)
		plain.Set(ctx, "r:s", v, time.Hour)
		next := proxy.Hold([]byte("evalsha"))
		h.Release()
		h = next
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.out) != 1 || r.out[0].Applied || r.out[0].Err != nil {
			t.Fatalf("ReplayWrites = %+v, %v; want a conflict", r.out, r.err)
		}
	case <-h.Held():
		h.Release()
		t.Fatalf("a fourth script for a key changed before each of three")
	}
	if got := plain.Get(ctx, "r:s").Val(); got != "mid" {
		t.Errorf("Redis holds %q; want the last value written meanwhile, mid", got)
	}
}
