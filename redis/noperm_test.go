package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// TestReplayWritesFailsWhileAnACLDeniesACommand: an ACL that denies a
// command the replay needs refuses every write until an operator fixes
// it, on every path: SET (plain in the transaction, NOPERM; called by the
// replay script, an ERR reply in Redis 7.0), a command the replay reads
// with (STRLEN, EXISTS, GETRANGE: NOPERM plain, ERR called by the probe
// script of a cluster client that reads from replicas) and, on the script
// paths, the script itself (EVALSHA and EVAL: NOPERM). ReplayWrites
// returns the denial, and no outcome that would drop the write; once the
// ACL allows the command, the write is applied.
func TestReplayWritesFailsWhileAnACLDeniesACommand(t *testing.T) {
	for _, c := range []struct{ path, denied string }{
		{"transaction", "set"}, {"transaction", "strlen"}, {"transaction", "exists"}, {"transaction", "getrange"},
		{"script", "set"}, {"script", "strlen"}, {"script", "exists"}, {"script", "getrange"}, {"script", "eval evalsha"},
		{"probe script", "set"}, {"probe script", "strlen"}, {"probe script", "exists"}, {"probe script", "getrange"}, {"probe script", "eval evalsha"},
	} {
		t.Run(c.path+" "+c.denied, func(t *testing.T) {
			plain, tr := aclPathTier(t, c.path)
			ctx := context.Background()
			plain.Set(ctx, "r:s", "old", time.Hour)
			var deny, allow []string
			for _, cmd := range strings.Fields(c.denied) {
				deny, allow = append(deny, "-"+cmd), append(allow, "+"+cmd)
			}
			if err := plain.ACLSetUser(ctx, "default", deny...).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { plain.ACLSetUser(context.Background(), "default", "+@all") })
			batch := review24Write(base("old"))
			out, err := tr.ReplayWrites(ctx, batch)
			if err == nil || !redis.IsReply(err) || redis.IsUnreachable(err) || out != nil {
				t.Fatalf("ReplayWrites while the ACL denies %s = %+v, %v; want the denial, and no outcome", c.denied, out, err)
			}
			if got := plain.Get(ctx, "r:s").Val(); got != "old" {
				t.Fatalf("Redis holds %q; want old", got)
			}
			if err := plain.ACLSetUser(ctx, "default", allow...).Err(); err != nil {
				t.Fatal(err)
			}
			out, err = tr.ReplayWrites(ctx, batch)
			if err != nil || len(out) != 1 || !out[0].Applied {
				t.Fatalf("ReplayWrites once the ACL allows %s = %+v, %v; want the write applied", c.denied, out, err)
			}
			if got := plain.Get(ctx, "r:s").Val(); got != "new" {
				t.Fatalf("Redis holds %q; want new", got)
			}
		})
	}
}

// aclPathTier is pathTier's client of the server and Tier on path, or on
// path "probe script" a Tier on a cluster client that reads from replicas
// (see review25ReadOnlyCluster), whose reads go to the primary as
// probeScript and rangeScript.
func aclPathTier(t *testing.T, path string) (*goredis.Client, *redis.Tier) {
	t.Helper()
	if path == "probe script" {
		primary := redistest.Start(t)
		return primary.Client(), review25ReadOnlyCluster(t, primary.Addr, redistest.Start(t).Addr, 3, 0)
	}
	plain, _, tr := pathTier(t, path, time.Second)
	return plain, tr
}

// TestReplayWritesWithoutWatchOrMultiIsApplied: a single node whose ACL
// denies WATCH, or MULTI alone, replays the write all the same, and
// neither is reported as a refusal: the replay needs neither. Without
// WATCH it goes by script. Without MULTI, Redis runs the transaction's
// SETs as they come, unchecked, and answers EXEC with an error: the batch
// goes to the script path, which finds the keys holding the writes'
// values and reports them applied; the check between the read and the
// SET is then lost (see checked).
func TestReplayWritesWithoutWatchOrMultiIsApplied(t *testing.T) {
	for _, denied := range []string{"watch", "multi"} {
		t.Run(denied, func(t *testing.T) {
			plain, _, tr := pathTier(t, "transaction", time.Second)
			ctx := context.Background()
			plain.Set(ctx, "r:s", "old", time.Hour)
			if err := plain.ACLSetUser(ctx, "default", "-"+denied).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { plain.ACLSetUser(context.Background(), "default", "+@all") })
			out, err := tr.ReplayWrites(ctx, review24Write(base("old")))
			if err != nil || len(out) != 1 || !out[0].Applied {
				t.Fatalf("ReplayWrites while the ACL denies %s = %+v, %v; want the write applied", denied, out, err)
			}
			if got := plain.Get(ctx, "r:s").Val(); got != "new" {
				t.Fatalf("Redis holds %q; want new", got)
			}
		})
	}
}
