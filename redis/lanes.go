package redis

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// One round trip per write is what a client that waits for each reply can
// do at best. On a single-node client a Tier instead sends its writes
// through lanes: a lane is a queue and a flusher goroutine that sends
// everything queued as one pipeline, on the Tier's own write client (see
// fence), bounded by the Tier's timeout. The caller waits for its reply or
// its context, whichever ends first. A key always takes the same lane, so
// the writes of one key reach Redis in the order they were queued, as long
// as each batch gets its replies: a batch that ended without them may still
// be in the network on its connection and land after the next batch, sent
// on another; only Fence orders what comes after it.

const (
	// numLanes is the number of lanes, each with a connection of its own.
	numLanes = 4
	// maxBatch bounds the commands of one pipeline.
	maxBatch = 256
	// laneQueue is each lane's queue length: past it, callers wait to queue.
	laneQueue = 1024
)

// sharedError is the error of every write of one pipeline that failed
// without replies: its callers share one failure of Redis, which a breaker
// counts once (it satisfies breaker.SharedFailure).
type sharedError struct {
	err error
	key uint64
}

func (e *sharedError) Error() string         { return e.err.Error() }
func (e *sharedError) Unwrap() error         { return e.err }
func (e *sharedError) SharedFailure() uint64 { return e.key }

// failures numbers the failed pipelines.
var failures atomic.Uint64

// shared returns err as the failure of a pipeline, shared by its callers.
func shared(err error) error { return &sharedError{err: err, key: failures.Add(1)} }

// errLaneClosed is returned for a write queued after Close.
var errLaneClosed = errors.New("redis: the tier is closed")

// opKind is what a queued write does.
type opKind uint8

const (
	opSet opKind = iota
	opDel
	opPExpire
	opGet  // GET (or GETRANGE) and PTTL: per-key tracking's reads (see tracked.go)
	opPing // PING: Fence's barrier on the tracked connection (see tracked.barrier)
)

// request is one queued write and its reply.
type request struct {
	ctx   context.Context // the caller's, with the tier's deadline
	kind  opKind
	key   string
	value []byte
	ttl   time.Duration
	done  chan reply // capacity 1: the flusher never waits for the caller

	// applied, if not nil, is called by the tracked connection's reader
	// once Redis has answered OK, in reply order (see Tier.SetOrdered);
	// claimed makes the reader's taking the reply for the caller and the
	// caller's giving up exclusive (see tracked.read).
	applied func() bool
	claimed atomic.Bool

	// Per-key tracking (see tracked.go). verify: a write is followed by a
	// read of its key, whose reply says whether Redis holds value (for a
	// PEXPIRE, the caller's copy). limit: opGet reads at most limit+1
	// bytes (GETRANGE); 0: the whole value. first: the reply to the first
	// of the request's two commands, kept by the reader until the second.
	verify bool
	limit  int
	first  value

	// On the tracked connection (see Tier.viaTracked): id is the session,
	// whose key (the connection's prefix and id) is never built as a
	// string; cmd is the request's commands, encoded by its caller so that
	// nothing of the caller's is read once it may have returned; two says
	// that cmd holds a second command. timer bounds the caller's wait when
	// armed, instead of a context deadline of its own.
	id    string
	cmd   []byte
	two   bool
	timer *time.Timer
	armed bool
}

// maxPooledCmd bounds the encoding buffer a pooled request keeps.
const maxPooledCmd = 64 << 10

// reply is the outcome of a request: found is PEXPIRE's and DEL's answer,
// or whether opGet found a key; applied is what request.applied returned,
// if it was called; verified says that the read following a write returned
// what the request expected. opGet's value and ttl (PTTL's milliseconds)
// are what Redis returned.
type reply struct {
	found, applied, verified bool
	err                      error
	value                    []byte
	ttl                      int64
}

// newRequest returns a request from the pool.
func newRequest(ctx context.Context, kind opKind, key string, value []byte, ttl time.Duration, applied func() bool) *request {
	r := requests.Get().(*request)
	r.ctx, r.kind, r.key, r.value, r.ttl, r.applied = ctx, kind, key, value, ttl, applied
	return r
}

// release clears r, which its caller owns again, and puts it back in the
// pool.
func (r *request) release() {
	r.ctx, r.key, r.id, r.value, r.applied = nil, "", "", nil, nil
	r.verify, r.limit, r.first = false, 0, value{}
	r.cmd, r.two = r.cmd[:0], false
	if cap(r.cmd) > maxPooledCmd {
		r.cmd = nil
	}
	r.disarm()
	r.claimed.Store(false)
	requests.Put(r)
}

// arm starts r's timer: the caller stops waiting after d (see await).
func (r *request) arm(d time.Duration) {
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d)
	}
	r.armed = true
}

func (r *request) disarm() {
	if r.armed {
		if !r.timer.Stop() {
			// Fired, not received. Go 1.23 timers drop the tick; with
			// GODEBUG=asynctimerchan=1 it would wait in the channel and
			// end r's next use at once.
			select {
			case <-r.timer.C:
			default:
			}
		}
		r.armed = false
	}
}

// expiry is the channel of r's armed timer, or nil: no deadline but
// r.ctx's.
func (r *request) expiry() <-chan time.Time {
	if r.armed {
		return r.timer.C
	}
	return nil
}

// gaveUp reports whether r's caller has stopped waiting, or is about to:
// such a request is not sent.
func (r *request) gaveUp() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.claimed.Load() {
		return context.DeadlineExceeded // by its timer: claimed before sending, only the caller does
	}
	return nil
}

// enqueue puts r on q, or gives up with the context's error when r.ctx
// ends first: then r was never queued and cannot land.
func (r *request) enqueue(q chan<- *request) error {
	select { // room in q, the usual case: no three-way select
	case q <- r:
		return nil
	default:
	}
	select {
	case q <- r:
		return nil
	case <-r.ctx.Done():
		err := r.ctx.Err()
		r.release()
		return err
	case <-r.expiry():
		r.release()
		return context.DeadlineExceeded
	}
}

// await waits for the reply of a queued r, or for r.ctx or its timer. A
// caller that gives up claims r first, so that applied is not called; if
// the reader claimed it already, applied is running and its reply
// follows. r is then left to the flusher or the reader, and may still
// land.
func (r *request) await() (reply, error) {
	var err error
	select {
	case rep := <-r.done:
		r.release()
		return rep, rep.err
	case <-r.ctx.Done():
		err = r.ctx.Err()
	case <-r.expiry():
		err = context.DeadlineExceeded
	}
	if r.claimed.CompareAndSwap(false, true) {
		return reply{}, err
	}
	rep := <-r.done
	r.release()
	return rep, rep.err
}

// gather adds to batch what q holds now, up to maxBatch requests.
func gather(q <-chan *request, batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r := <-q:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// refuse answers with err every request left on q, unsent.
func refuse(q <-chan *request, err error) {
	for {
		select {
		case r := <-q:
			r.done <- reply{err: err}
		default:
			return
		}
	}
}

var requests = sync.Pool{New: func() any { return &request{done: make(chan reply, 1)} }}

// lanes owns the flushers of a Tier's writes.
type lanes struct {
	client  *goredis.Client // the fence's write client: numLanes connections
	timeout time.Duration
	seed    maphash.Seed
	queues  [numLanes]chan *request
	stop    chan struct{} // closed by close: the flushers drain and return
	wg      sync.WaitGroup
	mu      sync.RWMutex // guards closed; held for reading while queuing
	closed  bool
	sending sync.RWMutex // held for reading by each send: pause waits for them

	// abandoned, if not nil, is told of a write sent whose caller
	// gave up before its reply, and whether Redis answered that it
	// executed it (see Config.OnAbandoned). Set before the first write.
	abandoned func(r *request, landed bool)
}

func newLanes(client *goredis.Client, timeout time.Duration) *lanes {
	l := &lanes{client: client, timeout: timeout, seed: maphash.MakeSeed(), stop: make(chan struct{})}
	for i := range l.queues {
		l.queues[i] = make(chan *request, laneQueue)
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.flush(l.queues[i]) }()
	}
	return l
}

// do queues a write of key on its lane and waits for its reply or for
// ctx, which carries the tier's deadline.
func (l *lanes) do(ctx context.Context, kind opKind, key string, value []byte, ttl time.Duration) (bool, error) {
	r := newRequest(ctx, kind, key, value, ttl, nil)
	q := l.queues[maphash.String(l.seed, key)%numLanes]
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		r.release()
		return false, errLaneClosed
	}
	err := r.enqueue(q)
	l.mu.RUnlock()
	if err != nil {
		return false, err
	}
	rep, err := r.await()
	return rep.found, err
}

// flush sends what q holds, batch after batch, until close.
func (l *lanes) flush(q chan *request) {
	batch := make([]*request, 0, maxBatch)
	cmds := make([]goredis.Cmder, 0, maxBatch)
	for {
		select {
		case r := <-q:
			batch = append(batch, r)
		case <-l.stop:
			refuse(q, errLaneClosed) // close queues nothing more once stop is closed
			return
		}
		batch = gather(q, batch)
		l.send(batch, cmds)
		clear(batch)
		batch = batch[:0]
	}
}

// send sends batch as one pipeline and answers each request. A request
// whose caller has already given up is not sent: it is answered with its
// context's error, which its caller no longer reads.
func (l *lanes) send(batch []*request, cmds []goredis.Cmder) {
	l.sending.RLock()
	defer l.sending.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	p := l.client.Pipeline()
	cmds = cmds[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			cmds = append(cmds, nil)
			continue
		}
		var c goredis.Cmder
		switch r.kind {
		case opSet:
			c = p.Set(ctx, r.key, r.value, r.ttl)
		case opDel:
			c = p.Del(ctx, r.key)
		default:
			c = p.PExpire(ctx, r.key, r.ttl)
		}
		cmds = append(cmds, c)
	}
	var failed error // the pipeline's own failure, shared by its commands
	if p.Len() > 0 {
		if _, err := p.Exec(ctx); err != nil && !IsReply(err) {
			failed = shared(err)
		}
	}
	for i, r := range batch {
		c := cmds[i]
		if c == nil {
			r.done <- reply{err: r.ctx.Err()}
			continue
		}
		rep := reply{err: c.Err()}
		if b, ok := c.(*goredis.BoolCmd); ok && rep.err == nil {
			rep.found = b.Val()
		}
		if rep.err != nil && failed != nil && !IsReply(rep.err) {
			rep.err = failed
		}
		if rep.err != nil && ctx.Err() != nil && !errors.Is(rep.err, context.DeadlineExceeded) {
			rep.err = fmt.Errorf("%w (%w)", ctx.Err(), rep.err)
		}
		// The reply goes to the caller, unless it gave up first (see
		// await): then whether the write changed Redis after its caller
		// was told it failed is told to abandoned.
		if !r.claimed.CompareAndSwap(false, true) && l.abandoned != nil && (rep.err == nil || !IsReply(rep.err)) {
			l.abandoned(r, rep.err == nil)
		}
		r.done <- rep
	}
	clear(cmds) // the commands hold the values: keep none past their batch
}

// pause returns once the batches being sent have ended (each is bounded
// by the timeout), and holds every other until resume is called. A request
// whose caller had given up before pause was called is then either
// answered or, once taken, not sent: its context is done.
func (l *lanes) pause() (resume func()) {
	l.sending.Lock()
	return l.sending.Unlock
}

// close stops the flushers once the writes queued before have been
// answered; a write queued after fails. Closing again does nothing.
func (l *lanes) close() {
	l.mu.Lock()
	was := l.closed
	l.closed = true
	l.mu.Unlock()
	if !was {
		close(l.stop)
	}
	l.wg.Wait()
}
