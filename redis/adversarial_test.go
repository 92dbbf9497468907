package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
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

// TestReplayWritesReportsEachWrite: in one batch, a write applies, one
// conflicts and one fails on a key of another type, without failing the
// batch; a write finding its own value in the key (a replay that landed
// unanswered) applies and sets its expiry, whether it requires an absent
// key (SET NX GET, then the script) or another value (the script); after
// SCRIPT FLUSH, the script is sent again.
func TestReplayWritesReportsEachWrite(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	tr := newTier(t, client, "r:")
	client.Set(ctx, "r:taken", "someone else's", time.Minute)
	client.HSet(ctx, "r:hash", "f", "v")
	exp := time.Now().Add(time.Minute)
	batch := []redis.Replay{
		{ID: "new", Bases: []string{""}, Value: []byte("a"), Expires: exp},
		{ID: "hash", Bases: []string{""}, Value: []byte("b"), Expires: exp},
		{ID: "taken", Bases: []string{""}, Value: []byte("c"), Expires: exp},
		{ID: "landed", Bases: []string{""}, Value: []byte("d"), Expires: exp},
		{ID: "landed2", Bases: []string{"0123456789012345678901234567890123456789"}, Value: []byte("e"), Expires: exp},
	}
	for _, round := range []string{"first", "after SCRIPT FLUSH"} {
		client.Del(ctx, "r:new")
		client.Set(ctx, "r:landed", "d", time.Hour)
		client.Set(ctx, "r:landed2", "e", time.Hour)
		out, err := tr.ReplayWrites(ctx, batch)
		if err != nil || len(out) != 5 {
			t.Fatalf("%s: ReplayWrites = %v, %v; want 5 outcomes and no error", round, out, err)
		}
		for k, id := range []string{"landed", "landed2"} {
			ttl := client.PTTL(ctx, "r:"+id).Val()
			if o := out[3+k]; !o.Applied || o.Err != nil || ttl > time.Minute || ttl < 50*time.Second {
				t.Errorf("%s: %s, holding its own value: %+v, PTTL %v; want applied with the replay's expiry (1m)", round, id, o, ttl)
			}
		}
		if !out[0].Applied || out[0].Err != nil {
			t.Errorf("%s: absent key: %+v; want applied", round, out[0])
		}
		if out[1].Applied || out[1].Err == nil || !strings.Contains(out[1].Err.Error(), "WRONGTYPE") || redis.IsUnreachable(out[1].Err) {
			t.Errorf("%s: hash: %+v; want failed with WRONGTYPE", round, out[1])
		}
		if out[2].Applied || out[2].Err != nil {
			t.Errorf("%s: changed key: %+v; want a conflict", round, out[2])
		}
		if got := client.Get(ctx, "r:taken").Val(); got != "someone else's" {
			t.Errorf("%s: r:taken = %q; want Redis's value kept", round, got)
		}
		client.ScriptFlush(ctx)
	}
}

// TestScanSkipsOtherTypesAndOversizedValues: Scan passes every string
// value within the limit to fn and counts the keys it skipped.
func TestScanSkipsOtherTypesAndOversizedValues(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	tr, err := redis.New(client, redis.Config{Prefix: "s:", Timeout: time.Second, MaxValueBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	for i := range 5 {
		client.Set(ctx, fmt.Sprint("s:ok", i), "v", time.Minute)
	}
	client.Set(ctx, "s:empty", "", time.Minute)
	client.Set(ctx, "s:over", "123456789", time.Minute)
	client.HSet(ctx, "s:hash", "f", "v")
	client.SAdd(ctx, "s:set", "m")
	var got []string
	skipped, err := tr.Scan(ctx, func(id string, v []byte) error {
		got = append(got, id+"="+string(v))
		return nil
	})
	sort.Strings(got)
	if err != nil || skipped != 3 || fmt.Sprint(got) != "[empty= ok0=v ok1=v ok2=v ok3=v ok4=v]" {
		t.Fatalf("Scan = %v, skipped %d, %v; want the six strings within the limit, 3 skipped", got, skipped, err)
	}
}
