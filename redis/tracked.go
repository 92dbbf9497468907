package redis

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// In tracking mode the Listener's stream and the store's writes share one
// connection of the Listener's own, in RESP3:
//
//	CLIENT TRACKING ON BCAST PREFIX <prefix> NOLOOP
//
// Redis then pushes, in-band and in order with the replies, every change
// of a key under the prefix made by any other connection (and expiry,
// eviction, FLUSHDB), and none made by this one. A store's own Set and
// Delete, sent here, come back as no invalidation at all, so its local
// copy stays fresh, while another client's change made in the same
// event-loop turn is still pushed when it came last (Redis keeps, per
// key, the last connection that changed it; if this one came last, Redis
// holds this write's outcome). A PEXPIRE sent here could hide another
// client's change made just before it in the same turn while leaving the
// local copy as it was, so Touch does not use this connection. A write
// whose caller gave up, and that Redis then executed, is reported as a
// change of its key when its reply is read: nothing else would tell. The
// reader also lets the store end a write's local copy in reply order (see
// Tier.SetOrdered).
//
// A reader goroutine (the Listener's) reads replies and pushes for as long
// as the connection lives, so a broken or killed connection is seen at
// once; a request not answered within the timeout, or a PING sent after
// pingEvery of silence not answered either, drops the connection. Every
// drop is reported Lost before anything else, and the stream is Confirmed
// again once a new connection has tracking on.

const (
	// pingEvery is the idle time after which the connection is PINGed, so
	// that a silent network failure is seen within pingEvery plus the
	// timeout.
	pingEvery = time.Second
	// trackedQueue bounds the writes waiting for the flusher.
	trackedQueue = 1024
	// maxInFlight bounds the batches sent and not answered yet. Fewer
	// make each batch larger, cheaper for Redis and for this process per
	// command. 32 gave the bench's W3 5-7% more writes a second, but cost
	// W1 about 12% (the reads' misses and the writes share the
	// connection: alternated runs, 808-840k against 934-978k ops/s).
	maxInFlight = 2
)

// errNotSent is the error of a request that was not sent because the
// connection is down, or was lost while the request waited for its turn:
// the caller sends it another way, within what is left of its bound (see
// Tier.change).
var errNotSent = errors.New("redis: the tracked connection is down")

// tracked is the connection of tracking mode: its writer (the flusher) and
// its state; the reader is the Listener's goroutine (serve).
type tracked struct {
	opt     goredis.Options // the caller's, copied
	prefix  string
	name    string // the connection's client name, fenced like the Tier's writes
	timeout time.Duration
	h       Handler
	perKey  bool // default-mode tracking: Redis tracks the keys read here (see perkey.go)
	queue   chan *request
	// abandoned, if not nil, is Config.OnAbandoned, told of a write lost
	// with its connection after its caller gave up. Set before Start.
	abandoned func(Abandoned)

	up      atomic.Bool   // a connection is set up: do may queue
	drained chan struct{} // capacity 1: signalled when the last reply of a batch is read
	mu      sync.Mutex    // guards conn and its inflight
	conn    *trackConn    // nil while down
}

// trackConn is one connection of tracked.
type trackConn struct {
	id       int64 // Redis's id of the connection (HELLO's), or 0 if unknown
	nc       net.Conn
	rd       *bufio.Reader
	inflight flights // sent, not answered yet, in order; guarded by tracked.mu
	batches  int     // batches in inflight; guarded by tracked.mu
}

func newTracked(opt goredis.Options, prefix string, timeout time.Duration, h Handler, perKey bool) *tracked {
	return &tracked{opt: opt, prefix: prefix, name: "sessiontier-invalidation-" + rand.Text(), timeout: timeout, h: h, perKey: perKey,
		queue: make(chan *request, trackedQueue), drained: make(chan struct{}, 1)}
}

// do sends r (a write, or opGet) through the connection and waits for
// its reply, for r.ctx, or for timeout to pass. errNotSent: nothing was
// sent, at once (the connection is down or, for a read, its queue is
// full) or after waiting in the queue for a connection lost meanwhile.
// Nothing r's caller owns is read once do has returned: r is encoded
// before it is queued, and r.value, compared with a verifying read's
// reply when r.verify, must then be immutable. r.applied, if not nil, is
// called on the reader's goroutine once Redis answered OK (and, with
// r.verify, once the read that follows returned the value written),
// unless the caller gave up first; the reply carries what it returned. A
// write whose caller gave up and that Redis then executed is reported to
// the Handler as a change of its key, as another client's would be.
func (t *tracked) do(r *request, timeout time.Duration) (reply, error) {
	if !t.up.Load() {
		r.release()
		return reply{}, errNotSent
	}
	r.encode(t.prefix)
	r.arm(timeout)
	if r.kind == opGet { // a read can go another way at once, if not be cached
		select {
		case t.queue <- r:
		default:
			r.release()
			return reply{}, errNotSent
		}
	} else if err := r.enqueue(t.queue); err != nil {
		return reply{}, err
	}
	return r.await()
}

// flush sends what the queue holds, batch after batch, and a PING after
// pingEvery of silence, until ctx ends; then it answers what is left with
// errNotSent.
func (t *tracked) flush(ctx context.Context) {
	batch := make([]*request, 0, maxBatch)
	var buf []byte
	idle := time.NewTimer(pingEvery)
	defer idle.Stop()
	for {
		// At most maxInFlight batches in flight: meanwhile callers queue
		// up, and the next batch takes them all in one write.
		for t.busy() && ctx.Err() == nil {
			select {
			case <-t.drained:
			case <-ctx.Done():
			}
		}
		ping := false
		select {
		case r := <-t.queue:
			batch = append(batch, r)
		case <-idle.C:
			ping = true
		case <-ctx.Done():
			refuse(t.queue, errNotSent)
			return
		}
		batch = gather(t.queue, batch)
		buf = t.send(buf[:0], batch, ping)
		clear(batch)
		batch = batch[:0]
		idle.Reset(pingEvery)
	}
}

// busy reports whether maxInFlight batches sent on the connection await
// replies.
func (t *tracked) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conn != nil && t.conn.batches >= maxInFlight
}

func (t *tracked) signalDrained() {
	select {
	case t.drained <- struct{}{}:
	default:
	}
}

// send writes batch (and a PING) on the connection; requests whose caller
// has given up are answered with their context's error and not sent.
func (t *tracked) send(buf []byte, batch []*request, ping bool) []byte {
	now := time.Now()
	t.mu.Lock()
	c := t.conn
	if c == nil {
		t.mu.Unlock()
		for _, r := range batch {
			r.done <- reply{err: errNotSent}
		}
		return buf
	}
	idle := c.inflight.len() == 0
	for _, r := range batch {
		if err := r.gaveUp(); err != nil {
			r.done <- reply{err: err}
			continue
		}
		buf = append(buf, r.cmd...)
		if r.two {
			c.inflight.push(flight{r: r, sent: now, part: true})
		}
		c.inflight.push(flight{r: r, sent: now})
	}
	if ping {
		buf = appendCommand(buf, []byte("PING"))
		c.inflight.push(flight{sent: now})
	}
	if c.inflight.len() > 0 && !c.inflight.newest().last && len(buf) > 0 {
		c.inflight.newest().last = true
		c.batches++
	}
	if idle && c.inflight.len() > 0 {
		c.nc.SetReadDeadline(now.Add(t.timeout)) // the reader may be waiting without one
	}
	t.mu.Unlock()
	if len(buf) == 0 {
		return buf
	}
	c.nc.SetWriteDeadline(now.Add(t.timeout))
	if _, err := c.nc.Write(buf); err != nil {
		c.nc.Close() // the reader fails what was in flight
	}
	return buf
}

// connect dials and sets up a connection: RESP3, the caller's
// credentials and database, the client name, tracking on.
func (t *tracked) connect(ctx context.Context) (*trackConn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	dial := t.opt.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	network := t.opt.Network
	if network == "" {
		network = "tcp"
	}
	nc, err := dial(ctx, network, t.opt.Addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &trackConn{nc: nc, rd: bufio.NewReaderSize(nc, 64<<10)}
	if err := t.handshake(ctx, c); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func (t *tracked) handshake(ctx context.Context, c *trackConn) error {
	user, pass := t.opt.Username, t.opt.Password
	switch {
	case t.opt.StreamingCredentialsProvider != nil:
		return errors.New("redis: tracking mode does not support a StreamingCredentialsProvider")
	case t.opt.CredentialsProviderContext != nil:
		var err error
		if user, pass, err = t.opt.CredentialsProviderContext(ctx); err != nil {
			return err
		}
	case t.opt.CredentialsProvider != nil:
		user, pass = t.opt.CredentialsProvider()
	}
	hello := [][]byte{[]byte("HELLO"), []byte("3")}
	if pass != "" {
		if user == "" {
			user = "default"
		}
		hello = append(hello, []byte("AUTH"), []byte(user), []byte(pass))
	}
	hello = append(hello, []byte("SETNAME"), []byte(t.name))
	buf := appendCommand(nil, hello...)
	n := 2
	if t.opt.DB != 0 {
		buf = appendCommand(buf, []byte("SELECT"), []byte(strconv.Itoa(t.opt.DB)))
		n++
	}
	if t.perKey { // not NOLOOP: see perkey.go
		buf = appendCommand(buf, []byte("CLIENT"), []byte("TRACKING"), []byte("ON"))
	} else {
		buf = appendCommand(buf, []byte("CLIENT"), []byte("TRACKING"), []byte("ON"), []byte("BCAST"),
			[]byte("PREFIX"), []byte(t.prefix), []byte("NOLOOP"))
	}
	if _, err := c.nc.Write(buf); err != nil {
		return err
	}
	for i := range n {
		v, err := readValue(c.rd)
		if err != nil {
			return err
		}
		if v.err != nil {
			return v.err
		}
		if i == 0 {
			c.id = helloID(v)
		}
	}
	return nil
}

// helloID returns the connection's id in HELLO's reply, a map, or 0.
func helloID(v value) int64 {
	for i := 0; v.kind == '%' && i+1 < len(v.elems); i += 2 {
		if v.elems[i].str == "id" && v.elems[i+1].kind == ':' {
			return v.elems[i+1].n
		}
	}
	return 0
}

// barrier sends a PING through the queue, after every request queued
// before it, and waits at most timeout for its reply. It returns the id
// of the connection that answered, which then carries no write sent
// before the barrier that Redis has not executed (Redis executes a
// connection's commands in order), or 0: no reply, or the connection
// changed meanwhile, or its id is unknown.
func (t *tracked) barrier(ctx context.Context, timeout time.Duration) int64 {
	t.mu.Lock()
	c := t.conn
	t.mu.Unlock()
	if c == nil || c.id == 0 {
		return 0
	}
	if _, err := t.do(newRequest(ctx, opPing, "", nil, 0, nil), timeout); err != nil {
		return 0
	}
	t.mu.Lock()
	same := t.conn == c // a later connection would have replaced c for good
	t.mu.Unlock()
	if !same {
		return 0
	}
	return c.id
}

// serve publishes c and reads it until it breaks or ctx ends; then it
// calls lost, before anything else, and fails what was in flight. Its
// caller reports Confirmed before.
func (t *tracked) serve(ctx context.Context, c *trackConn, lost func()) {
	t.mu.Lock()
	t.conn = c
	t.mu.Unlock()
	t.up.Store(true)
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	err := t.read(c)
	t.up.Store(false)
	lost()
	t.mu.Lock()
	t.conn = nil
	flown := c.inflight.drain()
	t.mu.Unlock()
	t.signalDrained()
	c.nc.Close()
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	err = shared(fmt.Errorf("redis: tracked connection: %w", err)) // one failure for every caller
	for _, f := range flown {
		if f.r == nil || f.part { // a request of two commands is answered once
			continue
		}
		if r := f.r; !r.claimed.CompareAndSwap(false, true) && t.abandoned != nil && r.kind <= opPExpire {
			// A write whose caller gave up, which Redis may still
			// execute. r.value may be its caller's, who has returned:
			// the value sent is in r.cmd, which r owns.
			a := Abandoned{ID: r.id, Kind: r.kind.abandoned()}
			if r.kind == opSet {
				a.Value = commandArg(r.cmd, 2)
			}
			t.abandoned(a)
		}
		f.r.done <- reply{err: err}
	}
}

// read reads replies and pushes until an error.
func (t *tracked) read(c *trackConn) error {
	var echo string        // the id of a verified write answered, and whose read is not (see perkey.go)
	var verifying *request // a write whose verifying read's reply comes next
	for {
		if c.rd.Buffered() == 0 {
			t.mu.Lock()
			var deadline time.Time // none while nothing is in flight: pushes may take their time
			if c.inflight.len() > 0 {
				deadline = c.inflight.front().sent.Add(t.timeout)
			}
			c.nc.SetReadDeadline(deadline)
			t.mu.Unlock()
		}
		var v value
		var err error
		if verifying != nil {
			v, err = readMatching(c.rd, verifying.value)
		} else {
			v, err = readValue(c.rd)
		}
		if err != nil {
			return err
		}
		if v.kind == '>' {
			t.push(v, echo)
			continue
		}
		t.mu.Lock()
		if c.inflight.len() == 0 {
			t.mu.Unlock()
			return errProtocol // a reply to nothing
		}
		f := c.inflight.pop()
		if f.last {
			c.batches--
		}
		t.mu.Unlock()
		if f.last {
			t.signalDrained()
		}
		r := f.r
		if r != nil && f.part {
			r.first = v // answered with the second
			if r.verify && v.err == nil && (v.kind != ':' || v.n > 0) {
				echo = r.id // it changed the key
			}
			if r.verify {
				verifying = r
			}
			continue
		}
		echo, verifying = "", nil
		if r != nil {
			t.answer(r, v)
		}
	}
}

// answer answers r, whose last reply is v.
func (t *tracked) answer(r *request, v value) {
	rep := replyOf(r, v)
	switch {
	case r.claimed.CompareAndSwap(false, true):
		if r.applied != nil && rep.err == nil && (rep.verified || !r.verify) {
			rep.applied = r.applied()
		}
	case rep.err == nil && r.kind != opGet && r.kind != opPing:
		// Its caller gave up and dropped the local copy; a read may have
		// filled it since with what Redis held before. No invalidation
		// of this write is reported (NOLOOP in broadcast mode; per-key
		// mode sends one only for a key tracked here, and drops it
		// before a verifying read): report it here, where the
		// invalidation would have been.
		t.h.Changed([]string{r.id})
	}
	r.done <- rep
}

// push reports an invalidation: a null payload is a flush. The key of id
// echo is the invalidation of this connection's own write, and is not
// reported (see perkey.go).
func (t *tracked) push(v value, echo string) {
	if len(v.elems) < 2 || v.elems[0].str != "invalidate" {
		return
	}
	if v.elems[1].kind == '_' {
		t.h.Flushed()
		return
	}
	ids := make([]string, 0, len(v.elems[1].elems))
	for _, k := range v.elems[1].elems {
		if id, ok := strings.CutPrefix(k.str, t.prefix); ok && (echo == "" || id != echo) {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		t.h.Changed(ids)
	}
}
