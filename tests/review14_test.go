package tests

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/internal/redistest"
	"github.com/sessiontier/sessiontier/tiered"
)

// TestReview14WriteSentAnotherWayIsBoundedByOpTimeout: on a hung Redis
// (SIGSTOP), two writes fill the tracking connection's batches in flight
// and the next ones queue behind them, until the connection's read
// deadline drops it and the flusher answers them "not sent"; they then go
// through the lanes. Each Set must still return within OpTimeout of its
// start, not wait OpTimeout in the queue and OpTimeout again on a lane.
func TestReview14WriteSentAnotherWayIsBoundedByOpTimeout(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		boundedOnHungRedis(t, m, "Set", func(s *tiered.Store, id string) {
			s.Set(bg, id, []byte("v"), time.Hour) // accepted into the outage tier: the time is what counts
		})
	})
}

// TestReview14TrackedReadSentAnotherWayIsBoundedByOpTimeout: the same for
// the reads that per-key mode sends on the tracking connection, which go
// through the caller's client once the connection is down.
func TestReview14TrackedReadSentAnotherWayIsBoundedByOpTimeout(t *testing.T) {
	boundedOnHungRedis(t, mode{"per-key", tiered.InvalidationPerKey, "per-key"}, "Get", func(s *tiered.Store, id string) {
		s.Get(bg, id)
	})
}

// boundedOnHungRedis pauses Redis, runs op on distinct ids spread over
// the first part of OpTimeout, and checks that each returned within about
// OpTimeout of its start.
func boundedOnHungRedis(t *testing.T, m mode, name string, op func(s *tiered.Store, id string)) {
	const opTimeout = 400 * time.Millisecond
	e := newEnv(t)
	s := e.store(t, tiered.Options{Invalidation: m.opt, OpTimeout: opTimeout,
		Breaker: breaker.Settings{Failures: 1000, OpenTimeout: time.Hour}})
	mustSet(t, s, "warm", "x") // the tracking connection is up and carries writes
	e.srv.Pause()
	defer e.srv.Resume()

	const n = 8
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	// The calls are spread over the first part of OpTimeout, so that the
	// later ones find the connection busy with the first two.
	tick := time.NewTicker(opTimeout / 15)
	defer tick.Stop()
	for i := range n {
		if i > 0 {
			<-tick.C
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			op(s, fmt.Sprint("id", i))
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, d := range took {
		// Generous against scheduling noise; the fault makes it ~2x.
		if d > opTimeout+opTimeout/2 {
			t.Errorf("%s %d on a hung Redis took %v; want at most about OpTimeout (%v)", name, i, d, opTimeout)
		}
	}
}

// TestReview14VerifyingReadOfAnotherValueAfterAnEmptySet: in per-key mode
// a Set of a session this instance holds is followed by a read of the
// key, and the copy is kept only if that read returned the value written.
// Here the value written is empty, and another client's SET lands
// between the two (the two commands reach Redis in two packets). Redis
// sends no invalidation for it (the store's own SET had just made Redis
// forget the key for this connection), so the store must see from the
// read that Redis holds something else, and not serve "" as fresh.
func TestReview14VerifyingReadOfAnotherValueAfterAnEmptySet(t *testing.T) {
	e := newEnv(t)
	verify := []byte("*2\r\n$3\r\nGET\r\n$12\r\nsession:held\r\n")
	p := newSplitProxy(t, e.srv.Addr, verify, func() {
		// The store's SET has run: another client changes the key before
		// the verifying read does.
		waitFor(t, "the empty SET to land", func() bool {
			v, err := e.plain.Get(bg, "session:held").Result()
			return err == nil && v == ""
		})
		e.plain.Set(bg, "session:held", "foreign", time.Hour)
	})
	s := storeAt(t, p.addr, tiered.Options{Invalidation: tiered.InvalidationPerKey, OpTimeout: 5 * time.Second})

	mustSet(t, s, "held", "old")
	wantGet(t, s, "held", "old") // a local copy: the next Set is verified
	mustSet(t, s, "held", "")
	if !p.split() {
		t.Fatal("the verifying read was not seen after the SET")
	}
	if v := e.plain.Get(bg, "session:held").Val(); v != "foreign" {
		t.Fatalf("Redis holds %q; want the other client's \"foreign\"", v)
	}
	wantGet(t, s, "held", "foreign")
}

// splitProxy forwards loopback TCP to a server; the first time a client
// sends a chunk holding match after other bytes, it forwards what comes
// before match, runs between, then forwards the rest: two packets.
type splitProxy struct {
	addr    string
	match   []byte
	between func()
	mu      sync.Mutex // guards done
	done    bool       // the split happened
}

func newSplitProxy(t *testing.T, target string, match []byte, between func()) *splitProxy {
	t.Helper()
	p := &splitProxy{match: match, between: between}
	p.addr = redistest.Relay(t, target, p.forward, nil)
	return p
}

func (p *splitProxy) forward(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		chunk := buf[:n]
		p.mu.Lock()
		i := -1
		if !p.done {
			if i = bytes.Index(chunk, p.match); i > 0 {
				p.done = true
			}
		}
		p.mu.Unlock()
		if i > 0 {
			if _, err := dst.Write(chunk[:i]); err != nil {
				return
			}
			p.between()
			chunk = chunk[i:]
		}
		if _, werr := dst.Write(chunk); werr != nil || err != nil {
			return
		}
	}
}

func (p *splitProxy) split() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}
