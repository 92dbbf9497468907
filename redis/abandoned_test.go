package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/internal/redistest"
)

// A write sent through the lanes whose caller gave up before its reply is
// told to Config.OnAbandoned: landed once Redis answered OK, in doubt if
// its batch ended without a reply. A write refused by Redis and a write
// whose caller gave up before it was sent are not.
func TestLanesTellOfAbandonedWrites(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.NewProxy(t, srv.Addr)
	client := goredis.NewClient(&goredis.Options{Addr: proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	told := make(chan Abandoned, 8)
	tr, err := New(client, Config{Prefix: "ab:", Timeout: 300 * time.Millisecond, OnAbandoned: func(a Abandoned) { told <- a }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// abandon holds the command that carries match, runs op with a
	// context cancelled once it is held, and releases it after wait.
	abandon := func(match string, op func(ctx context.Context) error, wait func(h *redistest.Hold)) {
		t.Helper()
		h := proxy.Hold([]byte(match))
		defer h.Release()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- op(ctx) }()
		select {
		case <-h.Held():
		case <-time.After(5 * time.Second):
			t.Fatalf("%q was never sent", match)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("%s whose caller gave up: %v, want context.Canceled", match, err)
		}
		wait(h)
		h.Release()
	}
	expect := func(what string, want Abandoned) {
		t.Helper()
		select {
		case a := <-told:
			if fmt.Sprint(a) != fmt.Sprint(want) {
				t.Fatalf("%s: told %+v, want %+v", what, a, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: OnAbandoned not called", what)
		}
	}
	set := func(id, v string) func(ctx context.Context) error {
		return func(ctx context.Context) error { return tr.Set(ctx, id, []byte(v), time.Minute) }
	}
	released := func(*redistest.Hold) {}

	abandon("landed-value", set("a", "landed-value"), released)
	expect("a SET released before the timeout", Abandoned{ID: "a", Value: []byte("landed-value"), Landed: true})

	abandon("doubt-value", set("b", "doubt-value"), func(h *redistest.Hold) { <-h.Ended() })
	expect("a SET held past the timeout", Abandoned{ID: "b", Value: []byte("doubt-value")})

	abandon("\r\nab:c\r\n", func(ctx context.Context) error { return tr.Delete(ctx, "c") }, released)
	expect("a DEL released before the timeout", Abandoned{ID: "c", Kind: WriteDelete, Landed: true})

	abandon("pexpire", func(ctx context.Context) error { _, err := tr.Touch(ctx, "a", time.Minute); return err }, released)
	expect("a PEXPIRE released before the timeout", Abandoned{ID: "a", Kind: WriteTouch, Landed: true})

	// Not told: Redis refused it, not sent. A SET told after
	// them shows that nothing was told before it.
	plain := srv.Client()
	config := func(v string) {
		t.Helper()
		if err := plain.ConfigSet(context.Background(), "maxmemory", v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	config("1") // with noeviction, the default: SET answers OOM
	abandon("refused-value", set("f", "refused-value"), released)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(plain.Info(context.Background(), "errorstats").Val(), "errorstat_OOM"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the SET released never reached Redis")
		}
	}
	config("0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Set(ctx, "d", []byte("never-sent"), time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set with a cancelled context: %v", err)
	}
	abandon("last-value", set("e", "last-value"), released)
	expect("the last SET", Abandoned{ID: "e", Value: []byte("last-value"), Landed: true})
}

// AnnounceLater announces ids from the Listener's goroutine; past maxLate
// ids waiting, it sends one flush instead.
func TestAnnounceLater(t *testing.T) {
	srv := redistest.Start(t)
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	l := NewListener(client, ListenerConfig{Prefix: "al:", Mode: ListenPublish, Timeout: time.Second}, &confirmHandler{})
	sub := srv.Client().Subscribe(context.Background(), l.channel)
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		select {
		case m := <-sub.Channel():
			return m.Payload
		case <-time.After(5 * time.Second):
			t.Fatal("no announcement")
			return ""
		}
	}
	many := make([]string, maxLate+1)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	l.AnnounceLater(many...) // before Start: waits for its goroutine
	l.Start()
	defer l.Close()
	if m := next(); m != l.nonce {
		t.Fatalf("after %d ids: %q, want the flush %q", len(many), m, l.nonce)
	}
	l.AnnounceLater("x", "y")
	for _, id := range []string{"x", "y"} {
		if m := next(); m != l.nonce+" "+id {
			t.Fatalf("got %q, want %q", m, l.nonce+" "+id)
		}
	}
}
