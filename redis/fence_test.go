package redis_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/redis"
)

// clients returns the id of every normal connection of Redis by its name.
func clients(t *testing.T, c *goredis.Client) map[string][]string {
	t.Helper()
	list, err := c.Do(context.Background(), "CLIENT", "LIST", "TYPE", "normal").Text()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			}
		}
		byName[name] = append(byName[name], id)
	}
	return byName
}

// writeNames returns the names of the Tiers' write connections.
func writeNames(byName map[string][]string) []string {
	var names []string
	for name := range byName {
		if strings.HasPrefix(name, "sessiontier-w-") {
			names = append(names, name)
		}
	}
	return names
}

// clientListCalls returns how many CLIENT LIST Redis has served.
func clientListCalls(t *testing.T, c *goredis.Client) string {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_client|list:"); ok {
			calls, _, _ := strings.Cut(v, ",")
			return calls
		}
	}
	return "calls=0"
}

// TestFenceKillsOnlyItsTiersWriteConnections: two Tiers share the caller's
// client; each writes on connections of its own; after a write of A ends
// without a reply, A's Fence closes A's write connections server-side and
// no other: not B's, not the caller's, not another client's. A Fence with
// nothing abandoned since the last one makes no call.
func TestFenceKillsOnlyItsTiersWriteConnections(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	caller := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ClientName: "caller", ContextTimeoutEnabled: true})
	t.Cleanup(func() { caller.Close() })
	other := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ClientName: "other"})
	t.Cleanup(func() { other.Close() })
	a, b := newTier(t, caller, "a:"), newTier(t, caller, "b:")

	if err := a.Set(ctx, "x", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	names := writeNames(clients(t, other))
	if len(names) != 1 {
		t.Fatalf("write connections after A's Set: %v; want one name", names)
	}
	nameA := names[0]
	if err := b.Set(ctx, "x", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := caller.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := clients(t, other)
	if names := writeNames(before); len(names) != 2 {
		t.Fatalf("write connections after B's Set: %v; want two names", names)
	}

	calls := clientListCalls(t, other)
	if err := a.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if now := clientListCalls(t, other); now != calls {
		t.Fatalf("Fence with nothing abandoned listed clients (%s, then %s)", calls, now)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Set(cancelled, "x", []byte("late"), time.Minute); err == nil {
		t.Fatal("Set with a cancelled context succeeded")
	}
	if err := a.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	after := clients(t, other)
	if ids := after[nameA]; len(ids) != 0 {
		t.Fatalf("A's write connections %v survived its Fence", ids)
	}
	delete(before, nameA)
	for name, ids := range before {
		for _, id := range ids {
			if !slices.Contains(after[name], id) {
				t.Errorf("connection %s named %q was closed by A's Fence", id, name)
			}
		}
	}

	if err := a.Set(ctx, "x", []byte("again"), time.Minute); err != nil {
		t.Fatalf("A's Set after its Fence: %v", err)
	}
	calls = clientListCalls(t, other)
	if err := a.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if now := clientListCalls(t, other); now != calls {
		t.Fatalf("a second Fence with nothing new abandoned listed clients (%s, then %s)", calls, now)
	}
}

// TestFenceFailsWithoutClientList: a server that refuses CLIENT LIST (an
// ACL here) fails the Fence with ErrFence, and it is tried again next time.
func TestFenceFailsWithoutClientList(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-client|list").Err(); err != nil {
		t.Fatal(err)
	}
	app := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Username: "app", Password: "pw", ContextTimeoutEnabled: true})
	t.Cleanup(func() { app.Close() })
	tr := newTier(t, app, "p:")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tr.Delete(cancelled, "x")
	for range 2 {
		if err := tr.Fence(ctx); !errors.Is(err, redis.ErrFence) {
			t.Fatalf("Fence without CLIENT LIST = %v; want ErrFence", err)
		}
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "+client|list").Err(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Fence(ctx); err != nil {
		t.Fatalf("Fence once CLIENT LIST is allowed: %v", err)
	}
}

// TestFenceOfOtherClientsIsANoOp: a ring's writes go through the ring
// itself, and Fence does nothing.
func TestFenceOfOtherClientsIsANoOp(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"one": srv.Addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { ring.Close() })
	tr := newTier(t, ring, "p:")
	if err := tr.Set(ctx, "x", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tr.Set(cancelled, "x", []byte("late"), time.Minute)
	plain := srv.Client()
	calls := clientListCalls(t, plain)
	if err := tr.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if now := clientListCalls(t, plain); now != calls {
		t.Fatalf("Fence of a ring listed clients (%s, then %s)", calls, now)
	}
	if names := writeNames(clients(t, plain)); len(names) != 0 {
		t.Fatalf("a ring's Tier opened write connections of its own: %v", names)
	}
}
