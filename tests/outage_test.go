package tests

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/internal/tiertest"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
	"github.com/sessiontier/sessiontier/tiered"
)

// alertLog records the alerts a Store raises.
type alertLog struct {
	mu     sync.Mutex // guards alerts
	alerts []telemetry.Alert
}

func (l *alertLog) hook(a telemetry.Alert) {
	l.mu.Lock()
	l.alerts = append(l.alerts, a)
	l.mu.Unlock()
}

// total returns how many alerts of kind fired and the sum of their counts.
func (l *alertLog) total(kind telemetry.AlertKind) (n int, count int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.alerts {
		if a.Kind == kind {
			n++
			count += a.Count
		}
	}
	return n, count
}

// outageOptions fail fast and probe often, so that tests run quickly.
func outageOptions(log *alertLog) tiered.Options {
	return tiered.Options{
		Breaker:   breaker.Settings{Failures: 2, OpenTimeout: 20 * time.Millisecond, MaxOpenTimeout: 100 * time.Millisecond},
		Telemetry: telemetry.Options{OnAlert: log.hook},
	}
}

func mustSet(t *testing.T, s *tiered.Store, id, v string) {
	t.Helper()
	if err := s.Set(bg, id, []byte(v), time.Hour); err != nil {
		t.Fatalf("Set(%s): %v", id, err)
	}
}

func wantGet(t *testing.T, s *tiered.Store, id, want string) {
	t.Helper()
	got, err := s.Get(bg, id)
	if err != nil || string(got) != want {
		t.Fatalf("Get(%s) = %q, %v; want %q", id, got, err, want)
	}
}

// settled waits, for each id and value pair, until the store serves the
// value as a local hit: the echo of its own write dropped its copy, which
// it reads again at once. A marker written by another client comes after
// every echo on the stream: once it has arrived, so have they.
func settled(t *testing.T, e *env, s *tiered.Store, idValues ...string) {
	t.Helper()
	s.Get(bg, "settled-marker") // per-key tracking: Redis tracks it for s from now on
	before := s.Stats().Invalidations
	if err := e.plain.Set(bg, "session:settled-marker", "m", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker's invalidation", func() bool { return s.Stats().Invalidations > before })
	for i := 0; i+1 < len(idValues); i += 2 {
		cached(t, e, s, idValues[i], idValues[i+1])
	}
}

func wantGone(t *testing.T, s *tiered.Store, id string) {
	t.Helper()
	if got, err := s.Get(bg, id); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get(%s) = %q, %v; want ErrNotFound", id, got, err)
	}
}

func waitReplayed(t *testing.T, s *tiered.Store) {
	t.Helper()
	waitFor(t, "the outage tier to drain", func() bool {
		st := s.Stats()
		return st.Breaker == "closed" && st.PendingWrites == 0 && st.PendingDeletes == 0
	})
}

func openBreaker(t *testing.T, s *tiered.Store) {
	t.Helper()
	waitFor(t, "the breaker to open", func() bool {
		s.Get(bg, "probe-miss") // a miss goes to Redis and fails
		return s.Stats().Breaker == "open"
	})
}

// TestKillDuringTrafficAndRestart: Redis is killed (-9) and comes back
// with its data; writes, updates and deletes made meanwhile are served
// during the outage and are in Redis afterwards.
func TestKillDuringTrafficAndRestart(t *testing.T) {
	srv := redistest.StartDurable(t)
	e := newEnvOn(t, srv)
	log := &alertLog{}
	s := e.store(t, outageOptions(log))
	mustSet(t, s, "kept", "v1")
	mustSet(t, s, "updated", "before")
	mustSet(t, s, "deleted", "doomed")
	settled(t, e, s, "kept", "v1", "updated", "before", "deleted", "doomed")

	srv.Kill()
	mustSet(t, s, "updated", "during")
	mustSet(t, s, "created", "new")
	if err := s.Delete(bg, "deleted"); err != nil {
		t.Fatalf("Delete during the outage: %v", err)
	}
	openBreaker(t, s)
	wantGet(t, s, "kept", "v1") // from the local tier
	wantGet(t, s, "updated", "during")
	wantGet(t, s, "created", "new")
	wantGone(t, s, "deleted")
	wantGone(t, s, "never-existed")
	st := s.Stats()
	if st.PendingWrites != 2 || st.PendingDeletes != 1 || st.Breaker != "open" {
		t.Fatalf("Stats during the outage = %+v; want 2 pending writes, 1 pending delete, open", st)
	}

	srv.Restart() // no user traffic from here: the probe finds Redis
	waitReplayed(t, s)
	for key, want := range map[string]string{"session:kept": "v1", "session:updated": "during", "session:created": "new"} {
		if got, err := e.plain.Get(bg, key).Result(); err != nil || got != want {
			t.Errorf("Redis %s = %q, %v; want %q", key, got, err, want)
		}
	}
	if ttl := e.plain.PTTL(bg, "session:created").Val(); ttl < 59*time.Minute {
		t.Errorf("replayed TTL = %v; want the write's own (about 1h)", ttl)
	}
	if n := e.plain.Exists(bg, "session:deleted").Val(); n != 0 {
		t.Error("a session deleted during the outage is back in Redis")
	}
	wantGone(t, s, "deleted")
	for _, kind := range []telemetry.AlertKind{telemetry.AlertBreakerOpen, telemetry.AlertBreakerClosed, telemetry.AlertReplayDone} {
		if n, _ := log.total(kind); n != 1 {
			t.Errorf("%s fired %d times; want once", kind, n)
		}
	}
	if n, _ := log.total(telemetry.AlertReplayConflict); n != 0 {
		t.Errorf("replay_conflict fired %d times; want none", n)
	}
	if st := s.Stats(); st.ReplayApplied != 3 || st.PendingLost != 0 {
		t.Errorf("Stats after replay = %+v; want 3 applied, nothing lost", st)
	}
}

// TestHungRedis: SIGSTOP, writes accepted; SIGCONT, replayed.
func TestHungRedis(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	s := e.store(t, outageOptions(log))
	mustSet(t, s, "a", "before")
	e.srv.Pause()
	mustSet(t, s, "a", "during")
	mustSet(t, s, "b", "during")
	openBreaker(t, s)
	wantGet(t, s, "a", "during")
	e.srv.Resume()
	waitReplayed(t, s)
	if got := e.plain.Get(bg, "session:a").Val(); got != "during" {
		t.Fatalf("Redis a = %q; want during", got)
	}
	if got := e.plain.Get(bg, "session:b").Val(); got != "during" {
		t.Fatalf("Redis b = %q; want during", got)
	}
}

// TestRestartEmpty: Redis comes back without its data. Sessions that were
// not pending are gone, as they are in Redis; sessions created during the
// outage are written; an update of a session Redis lost is a conflict.
func TestRestartEmpty(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	s := e.store(t, outageOptions(log))
	mustSet(t, s, "old", "v")
	mustSet(t, s, "updated", "v")
	settled(t, e, s, "old", "v", "updated", "v")
	e.srv.Kill()
	mustSet(t, s, "created", "new")
	mustSet(t, s, "updated", "v2")
	openBreaker(t, s)
	wantGet(t, s, "old", "v") // stale, but the best there is
	e.srv.Restart()
	waitReplayed(t, s)
	wantGone(t, s, "old")
	wantGone(t, s, "updated")
	wantGet(t, s, "created", "new")
	if _, count := log.total(telemetry.AlertReplayConflict); count != 1 {
		t.Fatalf("replay_conflict counted %d; want 1", count)
	}
}

// partial is two stores on one Redis: cut reaches it through a proxy that
// the test can cut, direct reaches it directly.
type partial struct {
	*env
	proxy       *redistest.Proxy
	cut, direct *tiered.Store
	cutLog      *alertLog
}

func newPartial(t *testing.T, directOpts tiered.Options) *partial {
	e := newEnv(t)
	p := &partial{env: e, proxy: redistest.NewProxy(t, e.srv.Addr), cutLog: &alertLog{}}
	viaProxy := goredis.NewClient(&goredis.Options{Addr: p.proxy.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { viaProxy.Close() })
	var err error
	if p.cut, err = tiered.New(viaProxy, outageOptions(p.cutLog)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cut.Close() })
	p.direct = e.store(t, directOpts)
	return p
}

// TestPartialOutageConflict: A is cut off and writes X; B writes X after;
// once A is back, Redis and both instances hold B's value, and A raised
// replay_conflict.
func TestPartialOutageConflict(t *testing.T) {
	p := newPartial(t, tiered.Options{})
	mustSet(t, p.direct, "x", "original")
	wantGet(t, p.cut, "x", "original") // A saw the original
	p.proxy.Cut()
	mustSet(t, p.cut, "x", "from A")
	openBreaker(t, p.cut)
	mustSet(t, p.direct, "x", "from B")
	p.proxy.Restore()
	waitReplayed(t, p.cut)
	if got := p.plain.Get(bg, "session:x").Val(); got != "from B" {
		t.Fatalf("Redis x = %q; want B's value", got)
	}
	wantGet(t, p.cut, "x", "from B")
	wantGet(t, p.direct, "x", "from B")
	if _, count := p.cutLog.total(telemetry.AlertReplayConflict); count != 1 {
		t.Fatalf("A's replay_conflict counted %d; want 1", count)
	}
	if st := p.cut.Stats(); st.ReplayConflicts != 1 {
		t.Fatalf("A's ReplayConflicts = %d; want 1", st.ReplayConflicts)
	}
}

// TestLogoutDuringOutage: a session deleted on a cut-off instance stays
// deleted after recovery, on both instances, although Redis held it all
// along. The other instance's local copy lasts at most its Local.TTL.
func TestLogoutDuringOutage(t *testing.T) {
	p := newPartial(t, tiered.Options{Local: lru.Limits{TTL: 100 * time.Millisecond}})
	mustSet(t, p.direct, "s", "logged in")
	wantGet(t, p.cut, "s", "logged in")
	wantGet(t, p.direct, "s", "logged in")
	p.proxy.Cut()
	if err := p.cut.Delete(bg, "s"); err != nil {
		t.Fatalf("Delete while cut off: %v", err)
	}
	wantGone(t, p.cut, "s")
	if err := p.cut.Touch(bg, "s", time.Hour); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Touch of a session deleted during the outage = %v; want ErrNotFound", err)
	}
	mustSet(t, p.cut, "other", "written meanwhile") // a write does not undo the delete
	p.proxy.Restore()
	waitReplayed(t, p.cut)
	wantGone(t, p.cut, "s")
	if n := p.plain.Exists(bg, "session:s").Val(); n != 0 {
		t.Fatal("the session deleted during the outage is still in Redis")
	}
	waitFor(t, "the other instance to see the logout", func() bool {
		_, err := p.direct.Get(bg, "s")
		return errors.Is(err, tiered.ErrNotFound)
	})
}

// TestSetAfterDeleteDuringOutage: a session deleted then created again
// with the same id during the outage ends with the new value, the old one
// deleted first.
func TestSetAfterDeleteDuringOutage(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, outageOptions(&alertLog{}))
	mustSet(t, s, "id", "old")
	e.srv.Pause()
	s.Delete(bg, "id")
	mustSet(t, s, "id", "new")
	wantGet(t, s, "id", "new")
	e.srv.Resume()
	waitReplayed(t, s)
	if got := e.plain.Get(bg, "session:id").Val(); got != "new" {
		t.Fatalf("Redis id = %q; want new", got)
	}
}

func TestTouchDuringOutage(t *testing.T) {
	e := newEnv(t)
	s := e.store(t, outageOptions(&alertLog{}))
	if err := s.Set(bg, "id", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	settled(t, e, s, "id", "v")
	e.srv.Pause()
	if err := s.Touch(bg, "id", 2*time.Hour); err != nil {
		t.Fatalf("Touch during the outage: %v", err)
	}
	if err := s.Touch(bg, "unknown", time.Hour); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Touch of an unknown session during the outage = %v; want ErrNotFound", err)
	}
	e.srv.Resume()
	waitReplayed(t, s)
	if ttl := e.plain.PTTL(bg, "session:id").Val(); ttl < 119*time.Minute {
		t.Fatalf("PTTL after replaying a Touch = %v; want about 2h", ttl)
	}
}

func TestStrictReadsDuringOutage(t *testing.T) {
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.StrictReads = true
	s := e.store(t, opts)
	e.srv.Kill()
	openBreaker(t, s)
	if _, err := s.Get(bg, "unknown"); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Get with StrictReads during an outage = %v; want ErrUnavailable", err)
	}
}

func TestTombstonesFull(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	opts := outageOptions(log)
	opts.MaxTombstones = 2
	s := e.store(t, opts)
	mustSet(t, s, "c", "v")
	e.srv.Kill()
	for _, id := range []string{"a", "b"} {
		if err := s.Delete(bg, id); err != nil {
			t.Fatalf("Delete(%s): %v", id, err)
		}
	}
	if err := s.Delete(bg, "c"); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Delete past MaxTombstones = %v; want ErrUnavailable", err)
	}
	if n, _ := log.total(telemetry.AlertTombstonesFull); n != 1 {
		t.Fatalf("tombstones_full fired %d times; want 1", n)
	}
	if st := s.Stats(); st.PendingDeletes != 2 {
		t.Fatalf("PendingDeletes = %d; want 2", st.PendingDeletes)
	}
}

// TestCloseReplaysOrReports: Close replays what is pending when Redis is
// back, and reports what it cannot replay.
func TestCloseReplaysOrReports(t *testing.T) {
	t.Run("Redis back", func(t *testing.T) {
		e := newEnv(t)
		opts := outageOptions(&alertLog{})
		opts.Breaker.OpenTimeout, opts.Breaker.MaxOpenTimeout = time.Hour, time.Hour // no probe before Close
		s, err := tiered.New(e.client, opts)
		if err != nil {
			t.Fatal(err)
		}
		e.srv.Kill()
		mustSet(t, s, "a", "pending")
		e.srv.Restart()
		if err := s.Close(); err != nil {
			t.Fatalf("Close with Redis back = %v; want nil", err)
		}
		if got := e.plain.Get(bg, "session:a").Val(); got != "pending" {
			t.Fatalf("Redis a = %q; want the write Close replayed", got)
		}
	})
	t.Run("Redis down", func(t *testing.T) {
		e := newEnv(t)
		log := &alertLog{}
		opts := outageOptions(log)
		opts.CloseTimeout = 200 * time.Millisecond
		s, err := tiered.New(e.client, opts)
		if err != nil {
			t.Fatal(err)
		}
		e.srv.Kill()
		mustSet(t, s, "a", "pending")
		s.Delete(bg, "b")
		err = s.Close()
		if !errors.Is(err, tiered.ErrPendingLost) {
			t.Fatalf("Close with Redis down = %v; want ErrPendingLost", err)
		}
		if _, count := log.total(telemetry.AlertPendingLost); count != 2 {
			t.Fatalf("pending_lost counted %d; want 2 (a write and a delete)", count)
		}
	})
}

// TestFlood: with the outage tier capped at 1,000 entries and the local
// tier at 2,000, 400 sessions established before the outage and 100
// created during it stay readable while 20,000 sessions are written once;
// no tier exceeds a bound, and every loss is counted in alerts.
func TestFlood(t *testing.T) {
	e := newEnv(t)
	log := &alertLog{}
	opts := outageOptions(log)
	opts.Local = lru.Limits{MaxEntries: 2_000, MaxBytes: 2_000 * (lru.EntryOverhead + 256)}
	opts.Fallback = lru.Limits{MaxEntries: 1_000, MaxBytes: 1_000 * (lru.EntryOverhead + 256)}
	s := e.store(t, opts)
	value := string(make([]byte, 100))
	var users []string
	for i := range 400 {
		id := fmt.Sprint("established", i)
		mustSet(t, s, id, value)
		settled(t, e, s, id, value) // a second request of the same user
		users = append(users, id)
	}
	e.srv.Kill()
	openBreaker(t, s)
	for i := range 100 { // logins during the outage, each followed by a request
		id := fmt.Sprint("new", i)
		mustSet(t, s, id, value)
		wantGet(t, s, id, value)
		users = append(users, id)
	}
	readable := func() int {
		n := 0
		for _, id := range users {
			if v, err := s.Get(bg, id); err == nil && string(v) == value {
				n++
			}
		}
		return n
	}
	for i := range 20_000 {
		if err := s.Set(bg, fmt.Sprint("bot", i), []byte("x"), time.Hour); err != nil {
			t.Fatalf("flood Set: %v", err)
		}
		st := s.Stats()
		if st.LocalEntries > 2_000 || st.LocalBytes > opts.Local.MaxBytes || st.FallbackEntries > 1_000 || st.FallbackBytes > opts.Fallback.MaxBytes {
			t.Fatalf("a bound was exceeded after %d flood writes: %+v", i, st)
		}
		if i%2_000 == 1_999 {
			if n := readable(); n < 495 {
				t.Fatalf("after %d flood writes only %d of 500 sessions in use are readable; want >= 495", i+1, n)
			}
		}
	}
	st := s.Stats()
	wantLost := uint64(20_000 + 100 - st.PendingWrites)
	if st.PendingLost != wantLost {
		t.Fatalf("PendingLost = %d; want %d (every write that did not fit)", st.PendingLost, wantLost)
	}
	e.srv.Restart()
	waitReplayed(t, s)
	for i := range 100 {
		if got := e.plain.Get(bg, fmt.Sprint("session:new", i)).Val(); got != value {
			t.Fatalf("session new%d created during the outage is not in Redis after replay", i)
		}
	}
	s.Close() // flushes the alerts held back by rate limiting
	if _, count := log.total(telemetry.AlertPendingLost); uint64(count) != wantLost {
		t.Fatalf("pending_lost alerts counted %d; want %d", count, wantLost)
	}
	if n, _ := log.total(telemetry.AlertPendingLost); n > 10 {
		t.Fatalf("pending_lost fired %d times; want a few, rate limited", n)
	}
	if n, _ := log.total(telemetry.AlertFallbackHigh); n != 1 {
		t.Fatalf("fallback_high fired %d times; want once", n)
	}
}

// TestLongOutageMemory: writing 10x the outage tier's byte cap during an
// outage keeps the heap within both tiers' caps plus a small overhead.
func TestLongOutageMemory(t *testing.T) {
	e := newEnv(t)
	const capBytes = 4 << 20
	opts := outageOptions(&alertLog{})
	opts.Local = lru.Limits{MaxBytes: capBytes}
	opts.Fallback = lru.Limits{MaxBytes: capBytes}
	s := e.store(t, opts)
	e.srv.Kill()
	openBreaker(t, s)
	before := tiertest.HeapAfterGC()
	value := make([]byte, 4096)
	for i := range 10 * capBytes / len(value) {
		if err := s.Set(bg, fmt.Sprint("s", i), value, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	grown := int64(tiertest.HeapAfterGC()) - int64(before)
	// The two tiers share the value bytes of sessions held in both; the
	// slack covers maps and lists growing to their bounds.
	const slack = 2 << 20
	if grown > 2*capBytes+slack {
		t.Fatalf("the heap grew by %d MiB writing %d MiB; want at most %d MiB", grown>>20, 10*capBytes>>20, (2*capBytes+slack)>>20)
	}
	t.Logf("heap grew by %.1f MiB writing %d MiB (caps: 2 x %d MiB)", float64(grown)/(1<<20), 10*capBytes>>20, capBytes>>20)
}

// TestDeletedElsewhereIsNotServedStale: a copy past Local.TTL of a session
// deleted in Redis (here with no invalidation) is dropped when Redis says
// so, and not served later while Redis is unreachable.
func TestDeletedElsewhereIsNotServedStale(t *testing.T) {
	e := newEnv(t)
	clock := tiertest.NewClock()
	opts := outageOptions(&alertLog{})
	opts.Invalidation, opts.Clock = tiered.InvalidationOff, clock.Now
	s := e.store(t, opts)
	mustSet(t, s, "revoked", "v")
	clock.Advance(2 * time.Minute) // past Local.TTL: the copy is stale
	e.plain.Del(bg, "session:revoked")
	wantGone(t, s, "revoked")
	e.srv.Kill()
	openBreaker(t, s)
	wantGone(t, s, "revoked")
}

// A Touch during an outage makes the copy held here a pending write. Its
// replay must not bring back a session that another client deleted
// meanwhile: Redis applies a Touch only to a key it holds. In publish
// mode a plain client's DEL is not announced, so the copy stays.
func TestOutageTouchDoesNotReviveASessionDeletedElsewhere(t *testing.T) {
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.Invalidation = tiered.InvalidationPublish
	s := e.store(t, opts)
	mustSet(t, s, "id", "v")
	if v, err := s.Get(bg, "id"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v; want v", v, err)
	}
	if err := e.plain.Del(bg, "session:id").Err(); err != nil {
		t.Fatal(err)
	}
	e.srv.Pause()
	openBreaker(t, s)
	if err := s.Touch(bg, "id", 2*time.Hour); err != nil {
		t.Fatalf("Touch during the outage: %v", err)
	}
	e.srv.Resume()
	waitReplayed(t, s)
	if n := e.plain.Exists(bg, "session:id").Val(); n != 0 {
		t.Fatalf("a Touch replayed after the session was deleted elsewhere brought it back (EXISTS = %d)", n)
	}
	if st := s.Stats(); st.ReplayConflicts != 1 {
		t.Fatalf("ReplayConflicts = %d; want 1 (the Touch, dropped: Redis's absent key wins)", st.ReplayConflicts)
	}
}

// touchRaceStore returns a store holding copies of n sessions ("v"),
// with Redis paused and the breaker open, and their ids.
func touchRaceStore(t *testing.T, n int) (*env, *tiered.Store, []string) {
	t.Helper()
	e := newEnv(t)
	opts := outageOptions(&alertLog{})
	opts.Invalidation = tiered.InvalidationTracking // a Set keeps its copy
	s := e.store(t, opts)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("s", i)
		mustSet(t, s, ids[i], "v")
	}
	e.srv.Pause()
	openBreaker(t, s)
	return e, s, ids
}

// atOnce runs a(id) and b(id) at once for each id.
func atOnce(ids []string, a, b func(id string)) {
	var wg sync.WaitGroup
	for _, id := range ids {
		start := make(chan struct{})
		wg.Go(func() { <-start; a(id) })
		wg.Go(func() { <-start; b(id) })
		close(start)
	}
	wg.Wait()
}

// touch is a Touch of id that must succeed or find nothing.
func touch(t *testing.T, s *tiered.Store) func(string) {
	return func(id string) {
		if err := s.Touch(bg, id, time.Hour); err != nil && !errors.Is(err, tiered.ErrNotFound) {
			t.Errorf("Touch(%s) = %v", id, err)
		}
	}
}

// A Touch and a Delete of a session held here, at once during an outage,
// leave it deleted whichever came first: a Touch never brings a session
// back. The Touch found no pending write, checked for a tombstone, then
// made the copy a pending write; a Delete recorded in between was undone
// (the copy served again, and replayed onto the absent key): the
// randomized fault test's seed 1796604984511015821. Before the fix, 12 to
// 43 of the 2,000 sessions came back, in each of five runs.
func TestConcurrentTouchAndDeleteDuringAnOutageLeaveItDeleted(t *testing.T) {
	e, s, ids := touchRaceStore(t, 2000)
	atOnce(ids, touch(t, s), func(id string) {
		if err := s.Delete(bg, id); err != nil {
			t.Errorf("Delete(%s) = %v", id, err)
		}
	})
	revived := 0
	for _, id := range ids {
		if _, err := s.Get(bg, id); !errors.Is(err, tiered.ErrNotFound) {
			revived++
		}
	}
	if revived > 0 {
		t.Fatalf("%d of %d sessions served after a Delete that ended, touched concurrently", revived, len(ids))
	}
	e.srv.Resume()
	waitReplayed(t, s)
	if keys := e.plain.Keys(bg, "session:s*").Val(); len(keys) != 0 {
		t.Fatalf("%d deleted sessions in Redis after the replay", len(keys))
	}
}

// A Touch and a Set of a session held here, at once during an outage,
// leave the Set's value whichever came first: a Touch never changes a
// value. The same gap let the Touch's copy replace the Set's pending
// write: an acknowledged write lost (187 to 314 of the 2,000 sessions,
// in each of three runs before the fix).
func TestConcurrentTouchAndSetDuringAnOutageKeepTheSet(t *testing.T) {
	e, s, ids := touchRaceStore(t, 2000)
	atOnce(ids, touch(t, s), func(id string) { mustSet(t, s, id, "x") })
	lost := 0
	for _, id := range ids {
		if v, err := s.Get(bg, id); err != nil || string(v) != "x" {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d sessions did not hold the Set's value, touched concurrently", lost, len(ids))
	}
	e.srv.Resume()
	waitReplayed(t, s)
	for _, id := range ids {
		if v := e.plain.Get(bg, "session:"+id).Val(); v != "x" {
			t.Fatalf("Redis holds %q of %s after the replay; want the acknowledged x", v, id)
		}
	}
}
