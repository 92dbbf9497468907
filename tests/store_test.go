package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/tiered"
)

var bg = context.Background()

// storeTier adapts a Store to the tier suite.
type storeTier struct{ s *tiered.Store }

func (a storeTier) Get(ctx context.Context, id string) ([]byte, bool, error) {
	v, err := a.s.Get(ctx, id)
	if errors.Is(err, tiered.ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}
func (a storeTier) Set(ctx context.Context, id string, v []byte, ttl time.Duration) error {
	return a.s.Set(ctx, id, v, ttl)
}
func (a storeTier) Delete(ctx context.Context, id string) error { return a.s.Delete(ctx, id) }
func (a storeTier) Touch(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	err := a.s.Touch(ctx, id, ttl)
	if errors.Is(err, tiered.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// TestStoreSuite runs the tier suite against the whole Store.
func TestStoreSuite(t *testing.T) {
	e := newEnv(t)
	n := 0
	tiertest.Run(t, func(t *testing.T) tiertest.Env {
		n++
		s := e.store(t, tiered.Options{Prefix: fmt.Sprintf("suite%d:", n)})
		return tiertest.Env{
			Tier: storeTier{s},
			AwaitExpiry: func(t *testing.T, id string) {
				waitFor(t, "expiry", func() bool {
					_, err := s.Get(bg, id)
					return errors.Is(err, tiered.ErrNotFound)
				})
			},
		}
	})
}

func TestLocalHitMakesNoNetworkCall(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationTracking}) // reads on the client, which the env counts
	e.plain.Set(bg, "session:a", "alpha", time.Hour)
	waitFor(t, "the write's invalidation", func() bool { return s.Stats().Invalidations >= 1 })
	if v, err := s.Get(bg, "a"); err != nil || string(v) != "alpha" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	before := e.count.cmds.Load()
	for range 100 {
		if v, err := s.Get(bg, "a"); err != nil || string(v) != "alpha" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if n := e.count.cmds.Load() - before; n != 0 {
		t.Fatalf("100 local hits sent %d commands; want 0", n)
	}
	if st := s.Stats(); st.LocalEntries != 1 || st.LocalBytes != int64(len("a")+len("alpha")+lru.EntryOverhead) {
		t.Fatalf("Stats = %+v; want one local entry", st)
	}
}

func TestMissReadsValueAndTTLInOneRoundTrip(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationTracking}) // reads on the client, which the env counts
	e.plain.Set(bg, "session:a", "alpha", time.Hour)
	before := e.count.cmds.Load()
	if _, err := s.Get(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if n := e.count.cmds.Load() - before; n != 2 {
		t.Fatalf("a miss sent %d commands; want GET and PTTL in one pipeline", n)
	}
}

// TestLocalFreshnessIsTheShorterOfTheTTLs: a filled entry is served
// locally for min(remaining Redis TTL, Local.TTL), on an injected clock.
func TestLocalFreshnessIsTheShorterOfTheTTLs(t *testing.T) {
	e := newEnv(t)
	clock := tiertest.NewClock()
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationTracking, Local: lru.Limits{TTL: time.Minute}, Clock: clock.Now})
	e.plain.Set(bg, "session:short", "s", 10*time.Second)
	e.plain.Set(bg, "session:long", "l", time.Hour)
	waitFor(t, "the writes' invalidations", func() bool { return s.Stats().Invalidations >= 2 })
	for _, id := range []string{"short", "long"} {
		if _, err := s.Get(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	roundTrips := func(id string) int64 {
		before := e.count.cmds.Load()
		if _, err := s.Get(bg, id); err != nil {
			t.Fatal(err)
		}
		return (e.count.cmds.Load() - before) / 2
	}
	clock.Advance(9 * time.Second)
	if n := roundTrips("short") + roundTrips("long"); n != 0 {
		t.Fatalf("within both TTLs: %d round trips; want 0", n)
	}
	clock.Advance(2 * time.Second) // 11s: past the 10s Redis TTL
	if n := roundTrips("short"); n != 1 {
		t.Fatalf("past its Redis TTL: %d round trips; want 1", n)
	}
	if n := roundTrips("long"); n != 0 {
		t.Fatalf("long at 11s: %d round trips; want 0", n)
	}
	clock.Advance(50 * time.Second) // 61s: past Local.TTL
	if n := roundTrips("long"); n != 1 {
		t.Fatalf("past Local.TTL: %d round trips; want 1", n)
	}
}

func TestConcurrentMissesShareOneRead(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationTracking}) // reads on the client, which the env counts
	e.plain.Set(bg, "session:hot", "v", time.Hour)
	held, release := e.count.holdPipelines()
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	get := func() {
		v, err := s.Get(bg, "hot")
		if err == nil && string(v) != "v" {
			err = fmt.Errorf("Get = %q", v)
		}
		errs <- err
	}
	wg.Go(get)
	<-held // the first caller is in Redis
	for range callers - 1 {
		wg.Go(get)
	}
	waitFor(t, "every caller to wait on the shared read", func() bool {
		return goroutinesIn("singleflight.(*Group).Do") == callers
	})
	before := e.count.cmds.Load()
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count.cmds.Load() - before; n != 0 {
		t.Fatalf("%d concurrent misses sent %d more commands after the first read; want 0", callers, n)
	}
}

func TestWriteThrough(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	if err := s.Set(bg, "a", []byte("alpha"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := e.plain.Get(bg, "session:a").Result(); err != nil || v != "alpha" {
		t.Fatalf("Redis holds %q, %v; want alpha", v, err)
	}
	if ttl := e.plain.PTTL(bg, "session:a").Val(); ttl < 59*time.Second || ttl > time.Minute {
		t.Fatalf("PTTL = %v; want about 1m", ttl)
	}
	// The echo of the write drops the local copy (it cannot be told from
	// another client's change) and the store reads it again at once.
	cached(t, e, s, "a", "alpha")
}

// TestRefusedWriteIsNotCached: Redis answers (OOM) but refuses the write;
// the local tier must not hold the refused value.
func TestRefusedWriteIsNotCached(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	if err := s.Set(bg, "a", []byte("old"), time.Hour); err != nil {
		t.Fatal(err)
	}
	e.plain.ConfigSet(bg, "maxmemory-policy", "noeviction")
	e.plain.ConfigSet(bg, "maxmemory", "1")
	err := s.Set(bg, "a", []byte("refused"), time.Hour)
	e.plain.ConfigSet(bg, "maxmemory", "0")
	if err == nil || !strings.Contains(err.Error(), "OOM") || errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Set under maxmemory = %v; want Redis's OOM error, not ErrUnavailable", err)
	}
	if v, err := s.Get(bg, "a"); err != nil || string(v) != "old" {
		t.Fatalf("Get after a refused Set = %q, %v; want old", v, err)
	}
}

func TestDeleteRemovesBothTiers(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	s.Set(bg, "a", []byte("alpha"), time.Minute)
	if err := s.Delete(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if n := e.plain.Exists(bg, "session:a").Val(); n != 0 {
		t.Fatal("Delete left the key in Redis")
	}
	if _, err := s.Get(bg, "a"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after Delete = %v; want ErrNotFound", err)
	}
	if st := s.Stats(); st.LocalEntries != 0 {
		t.Fatalf("LocalEntries after Delete = %d", st.LocalEntries)
	}
	if err := s.Delete(bg, "never-written"); err != nil {
		t.Fatalf("Delete of a missing session = %v; want nil", err)
	}
}

func TestTouch(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	s.Set(bg, "a", []byte("alpha"), time.Minute)
	if err := s.Touch(bg, "a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl := e.plain.PTTL(bg, "session:a").Val(); ttl < 59*time.Minute {
		t.Fatalf("PTTL after Touch = %v; want about 1h", ttl)
	}
	if err := s.Touch(bg, "missing", time.Hour); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Touch of a missing session = %v; want ErrNotFound", err)
	}
	if n := e.plain.Exists(bg, "session:missing").Val(); n != 0 {
		t.Fatal("Touch created a session")
	}
	if v, err := s.Get(bg, "a"); err != nil || string(v) != "alpha" {
		t.Fatalf("Get after Touch = %q, %v", v, err)
	}
}

func TestCallerOwnsTheBytes(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	data := []byte("original")
	s.Set(bg, "a", data, time.Minute)
	copy(data, "CHANGED!")
	got, _ := s.Get(bg, "a")
	if string(got) != "original" {
		t.Fatalf("changing the bytes given to Set changed the session: %q", got)
	}
	copy(got, "CHANGED!")
	if again, _ := s.Get(bg, "a"); string(again) != "original" {
		t.Fatalf("changing the bytes Get returned changed the session: %q", again)
	}
	e.plain.Set(bg, "session:b", "from redis", time.Minute)
	got, _ = s.Get(bg, "b") // a miss: the value comes from Redis
	copy(got, "CHANGED!")
	if again, _ := s.Get(bg, "b"); string(again) != "from redis" {
		t.Fatalf("changing the bytes of a miss changed the cached session: %q", again)
	}
}

func TestEmptyData(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	if err := s.Set(bg, "empty", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(bg, "empty"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get of an empty session = %v (nil: %v), %v; want empty, non-nil", v, v == nil, err)
	}
}

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	opts := tiered.Options{MaxValueBytes: 10}
	calls := redisCalls(t, &opts)
	s := e.store(t, opts)
	ok := []byte("fine")
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"empty id", func() error { return s.Set(bg, "", ok, time.Minute) }, tiered.ErrInvalidID},
		{"long id", func() error { return s.Set(bg, strings.Repeat("x", tiered.MaxIDBytes+1), ok, time.Minute) }, tiered.ErrInvalidID},
		{"space", func() error { return s.Set(bg, "a b", ok, time.Minute) }, tiered.ErrInvalidID},
		{"tab", func() error { return s.Set(bg, "a\tb", ok, time.Minute) }, tiered.ErrInvalidID},
		{"newline", func() error { return s.Set(bg, "a\nb", ok, time.Minute) }, tiered.ErrInvalidID},
		{"NUL", func() error { return s.Set(bg, "a\x00b", ok, time.Minute) }, tiered.ErrInvalidID},
		{"DEL", func() error { return s.Set(bg, "a\x7fb", ok, time.Minute) }, tiered.ErrInvalidID},
		{"NBSP", func() error { return s.Set(bg, "a\u00a0b", ok, time.Minute) }, tiered.ErrInvalidID},
		{"C1 control", func() error { return s.Set(bg, "a\u0085b", ok, time.Minute) }, tiered.ErrInvalidID},
		{"bad UTF-8", func() error { return s.Set(bg, "a\xffb", ok, time.Minute) }, tiered.ErrInvalidID},
		{"zero TTL", func() error { return s.Set(bg, "a", ok, 0) }, tiered.ErrInvalidTTL},
		{"negative TTL", func() error { return s.Set(bg, "a", ok, -time.Second) }, tiered.ErrInvalidTTL},
		{"too large", func() error { return s.Set(bg, "a", make([]byte, 11), time.Minute) }, tiered.ErrTooLarge},
		{"get bad id", func() error { _, err := s.Get(bg, "a b"); return err }, tiered.ErrInvalidID},
		{"delete bad id", func() error { return s.Delete(bg, "") }, tiered.ErrInvalidID},
		{"touch bad id", func() error { return s.Touch(bg, "a\nb", time.Minute) }, tiered.ErrInvalidID},
		{"touch zero TTL", func() error { return s.Touch(bg, "a", 0) }, tiered.ErrInvalidTTL},
	}
	before := calls()
	for _, c := range cases {
		if err := c.call(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v; want %v", c.name, err, c.want)
		}
	}
	if n := calls() - before; n != 0 {
		t.Errorf("bad input made %d Redis calls; want 0", n)
	}
	if n := e.plain.DBSize(bg).Val(); n != 0 {
		t.Errorf("Redis holds %d keys after bad input; want 0", n)
	}
	if st := s.Stats(); st.LocalEntries != 0 || st.Breaker != "closed" {
		t.Errorf("Stats after bad input = %+v", st)
	}
	// Valid edge cases are accepted.
	for _, id := range []string{strings.Repeat("x", tiered.MaxIDBytes), "ünïcödé-ок", "a.b_c-d~e+f/g=h"} {
		if err := s.Set(bg, id, []byte("0123456789"), time.Minute); err != nil {
			t.Errorf("Set(%q): %v", id, err)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	e := newEnv(t)
	connections := func() string { // accepted by Redis so far, from any client
		info := e.plain.Info(bg, "stats").Val()
		_, v, _ := strings.Cut(info, "total_connections_received:")
		v, _, _ = strings.Cut(v, "\r\n")
		if v == "" {
			t.Fatal("INFO stats has no total_connections_received")
		}
		return v
	}
	conns := connections()
	if _, err := tiered.New(nil, tiered.Options{}); !errors.Is(err, tiered.ErrInvalidOptions) {
		t.Errorf("New(nil) = %v; want ErrInvalidOptions", err)
	}
	for _, o := range []tiered.Options{
		{OpTimeout: -1},
		{MaxValueBytes: -2},
		{Local: lru.Limits{MaxBytes: -1}},
		{Fallback: lru.Limits{TTL: -1}},
		{Breaker: breaker.Settings{OpenTimeout: -1}},
	} {
		if _, err := tiered.New(e.client, o); !errors.Is(err, tiered.ErrInvalidOptions) {
			t.Errorf("New(%+v) = %v; want ErrInvalidOptions", o, err)
		}
	}
	if n := e.count.cmds.Load(); n != 0 {
		t.Errorf("New sent %d commands; want none", n)
	}
	if now := connections(); now != conns {
		t.Errorf("New opened connections: %s accepted before, %s after; want none", conns, now)
	}
}

func TestClosed(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{})
	s.Set(bg, "a", []byte("alpha"), time.Minute)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]error{
		"Get":    func() error { _, err := s.Get(bg, "a"); return err }(),
		"Set":    s.Set(bg, "a", []byte("x"), time.Minute),
		"Delete": s.Delete(bg, "a"),
		"Touch":  s.Touch(bg, "a", time.Minute),
		"Range":  s.Range(bg, func(string, []byte) error { return nil }),
		"Close":  s.Close(),
	}
	for name, err := range calls {
		if !errors.Is(err, tiered.ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", name, err)
		}
	}
	if v := e.plain.Get(bg, "session:a").Val(); v != "alpha" {
		t.Errorf("a call after Close changed Redis: %q", v)
	}
}

func TestWrongTypeIsAnErrorThatDoesNotTrip(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Breaker: breaker.Settings{Failures: 2}})
	e.plain.HSet(bg, "session:h", "field", "value")
	for range 10 {
		_, err := s.Get(bg, "h")
		if err == nil || errors.Is(err, tiered.ErrNotFound) || errors.Is(err, tiered.ErrUnavailable) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("Get of a hash = %v; want Redis's WRONGTYPE error", err)
		}
	}
	if st := s.Stats(); st.Breaker != "closed" {
		t.Fatalf("breaker %s after WRONGTYPE replies; want closed", st.Breaker)
	}
}

func TestCallerCancellationDoesNotTrip(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Breaker: breaker.Settings{Failures: 2}})
	ctx, cancel := context.WithCancel(bg)
	cancel()
	for range 10 {
		err := s.Set(ctx, "a", []byte("x"), time.Minute)
		if !errors.Is(err, context.Canceled) || errors.Is(err, tiered.ErrUnavailable) {
			t.Fatalf("Set with a cancelled context = %v; want context.Canceled", err)
		}
	}
	if st := s.Stats(); st.Breaker != "closed" {
		t.Fatalf("breaker %s after cancelled calls; want closed", st.Breaker)
	}
}

// TestBreakerOpensFailsFastAndRecovers, without an outage tier: calls fail
// fast with ErrUnavailable while the breaker is open.
func TestBreakerOpensFailsFastAndRecovers(t *testing.T) {
	e := newEnv(t)
	opts := tiered.Options{
		Breaker:     breaker.Settings{Failures: 3, OpenTimeout: 50 * time.Millisecond},
		Fallback:    lru.Limits{MaxEntries: -1},
		StrictReads: true,
	}
	calls := redisCalls(t, &opts)
	s := e.store(t, opts)
	s.Set(bg, "a", []byte("alpha"), time.Minute)
	settled(t, e, s, "a", "alpha")
	e.srv.Kill()
	for i := range 3 {
		if _, err := s.Get(bg, fmt.Sprint("miss", i)); !errors.Is(err, tiered.ErrUnavailable) {
			t.Fatalf("Get with Redis down = %v; want ErrUnavailable", err)
		}
	}
	if st := s.Stats(); st.Breaker != "open" {
		t.Fatalf("breaker %s after 3 failures; want open", st.Breaker)
	}
	before := calls()
	for range 100 {
		if err := s.Set(bg, "b", []byte("x"), time.Minute); !errors.Is(err, tiered.ErrUnavailable) || !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("Set with the breaker open = %v; want ErrUnavailable wrapping breaker.ErrOpen", err)
		}
	}
	if n := calls() - before; n != 0 {
		t.Fatalf("an open breaker let %d Redis calls through; want 0", n)
	}
	// A local hit still answers while Redis is down.
	if v, err := s.Get(bg, "a"); err != nil || string(v) != "alpha" {
		t.Fatalf("local hit with Redis down = %q, %v", v, err)
	}
	e.srv.Restart()
	waitFor(t, "the breaker to close", func() bool { // the background probe closes it
		return s.Stats().Breaker == "closed"
	})
	if err := s.Set(bg, "b", []byte("back"), time.Minute); err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}
	if st := s.Stats(); st.Breaker != "closed" {
		t.Fatalf("breaker %s after a successful probe; want closed", st.Breaker)
	}
}

// TestHungRedisCostsOpTimeout: SIGSTOP; each call returns ErrUnavailable
// at OpTimeout until the breaker opens, then at once.
func TestHungRedisCostsOpTimeout(t *testing.T) {
	e := newEnv(t)
	const opTimeout = 100 * time.Millisecond
	s := e.store(t, tiered.Options{OpTimeout: opTimeout, StrictReads: true, Breaker: breaker.Settings{Failures: 3, OpenTimeout: time.Hour}})
	s.Set(bg, "warm", []byte("x"), time.Minute)
	e.srv.Pause()
	defer e.srv.Resume()
	for i := range 5 {
		start := time.Now()
		_, err := s.Get(bg, fmt.Sprint("id", i))
		took := time.Since(start)
		if !errors.Is(err, tiered.ErrUnavailable) {
			t.Fatalf("Get on a hung Redis = %v; want ErrUnavailable", err)
		}
		if took > opTimeout+time.Second { // generous: this machine is shared
			t.Fatalf("Get on a hung Redis took %v; want about %v", took, opTimeout)
		}
	}
	if st := s.Stats(); st.Breaker != "open" {
		t.Fatalf("breaker %s; want open", st.Breaker)
	}
}

// TestSlowReadCannotResurrectADeletedSession: a miss that read the value
// before a concurrent Delete must not put it into the local tier.
func TestSlowReadCannotResurrectADeletedSession(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: tiered.InvalidationTracking}) // reads on the client, which the env counts
	e.plain.Set(bg, "session:victim", "stolen", time.Hour)
	held, release := e.count.holdPipelines()
	got := make(chan error, 1)
	go func() { _, err := s.Get(bg, "victim"); got <- err }()
	<-held // the read has the value
	if err := s.Delete(bg, "victim"); err != nil {
		t.Fatal(err)
	}
	release()
	<-got
	if _, err := s.Get(bg, "victim"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after Delete = %v; want ErrNotFound", err)
	}
}

func TestReadsScsGoredisstoreData(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Prefix: "scs:session:"})
	e.plain.Set(bg, "scs:session:tok", "\x00gob bytes\xff", time.Hour)
	if v, err := s.Get(bg, "tok"); err != nil || string(v) != "\x00gob bytes\xff" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

func TestLocalTierStaysBounded(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Local: lru.Limits{MaxEntries: 100, MaxBytes: 100 * (lru.EntryOverhead + 64)}})
	for i := range 1000 {
		if err := s.Set(bg, fmt.Sprint("id", i), make([]byte, 40+i%40), time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(bg, fmt.Sprint("id", i)); err != nil { // cached by its read in per-key mode
			t.Fatal(err)
		}
		if st := s.Stats(); st.LocalEntries > 100 || st.LocalBytes > 100*(lru.EntryOverhead+64) {
			t.Fatalf("local tier over its bounds: %+v", st)
		}
	}
	if st := s.Stats(); st.LocalEvictions == 0 {
		t.Fatalf("Stats = %+v; want evictions", st)
	}
}

func TestLocalTierDisabled(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, tiered.Options{Local: lru.Limits{MaxEntries: -1}})
	s.Set(bg, "a", []byte("alpha"), time.Minute)
	before := e.count.cmds.Load()
	if v, err := s.Get(bg, "a"); err != nil || string(v) != "alpha" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if n := e.count.cmds.Load() - before; n != 2 {
		t.Fatalf("Get without a local tier sent %d commands; want 2", n)
	}
}
