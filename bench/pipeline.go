package bench

import (
	"bufio"
	"context"
	"errors"
	"hash/maphash"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// pipelineTarget is the reference of W1..W3's Redis side: a bare client
// written for this suite that queues every caller's command on one of
// pipelineConns connections (by key) and sends whatever is queued in one
// write, with no cache, no timeout but the caller's context, no retry,
// no breaker. It is not a session store: it measures what a client with
// no logic of its own gets from this Redis through the harness, the
// yardstick of W3, where Redis's work per write bounds every target.
type pipelineTarget struct {
	conns [pipelineConns]*pipeConn
	seed  maphash.Seed
	*wire
}

// pipelineConns connections, each with at most pipelineInFlight batches
// written and not answered yet: meanwhile callers queue up, and the next
// write takes them all (one write per caller would cost Redis a read
// each).
const (
	pipelineConns    = 4
	pipelineInFlight = 2
)

// pipeConn is one connection: callers append their command to buf and
// their reply channel to waiting, under mu; the writer sends buf in one
// write and hands its waiters to the reader, which answers them in order.
type pipeConn struct {
	nc       net.Conn
	mu       sync.Mutex // guards buf, waiting and err
	buf      []byte
	waiting  []chan pipeReply
	err      error                 // set once the connection failed: every later call fails with it
	kick     chan struct{}         // capacity 1: something is queued
	stop     chan struct{}         // closed by fail
	inflight chan []chan pipeReply // batches written, in order, for the reader
	slots    chan struct{}         // pipelineInFlight: a batch written takes one, the reader gives it back once answered
	done     chan struct{}         // closed when the writer and the reader have returned
}

type pipeReply struct {
	value []byte
	found bool
	err   error
}

// errPipeClosed fails the calls queued when the target is closed.
var errPipeClosed = errors.New("bench: pipeline closed")

var pipeReplies = sync.Pool{New: func() any { return make(chan pipeReply, 1) }}

func newPipeline(addr string, _ int64, _ int) (Target, error) {
	t := &pipelineTarget{seed: maphash.MakeSeed(), wire: &wire{}}
	for i := range t.conns {
		nc, err := t.dial(context.Background(), "tcp", addr)
		if err != nil {
			t.Close()
			return nil, err
		}
		c := &pipeConn{nc: nc, kick: make(chan struct{}, 1), stop: make(chan struct{}), slots: make(chan struct{}, pipelineInFlight), inflight: make(chan []chan pipeReply, 1024), done: make(chan struct{})}
		t.conns[i] = c
		var wg sync.WaitGroup
		wg.Go(c.write)
		wg.Go(c.read)
		go func() { wg.Wait(); close(c.done) }()
	}
	return t, nil
}

func (t *pipelineTarget) conn(id string) *pipeConn {
	return t.conns[maphash.String(t.seed, id)%pipelineConns]
}

func (t *pipelineTarget) Get(ctx context.Context, id string) ([]byte, error) {
	r, err := t.conn(id).do(ctx, "GET", id, nil, 0)
	if err == nil && !r.found {
		return nil, ErrNotFound
	}
	return r.value, err
}

func (t *pipelineTarget) Set(ctx context.Context, id string, v []byte, ttl time.Duration) error {
	_, err := t.conn(id).do(ctx, "SET", id, v, ttl)
	return err
}

func (t *pipelineTarget) Delete(ctx context.Context, id string) error {
	_, err := t.conn(id).do(ctx, "DEL", id, nil, 0)
	return err
}

// Close closes the connections, fails what is queued and waits for the
// goroutines.
func (t *pipelineTarget) Close() error {
	for _, c := range t.conns {
		if c != nil {
			c.fail(errPipeClosed)
			<-c.done
		}
	}
	return nil
}

// do queues one command of the key of id and waits for its reply or ctx.
func (c *pipeConn) do(ctx context.Context, cmd, id string, v []byte, ttl time.Duration) (pipeReply, error) {
	if err := ctx.Err(); err != nil { // as go-redis: a call already given up is not sent
		return pipeReply{}, err
	}
	ch := pipeReplies.Get().(chan pipeReply)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		pipeReplies.Put(ch)
		return pipeReply{}, err
	}
	b := c.buf
	n := 2
	if cmd == "SET" {
		n = 5
	}
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	b = appendBulk(append(b, "\r\n"...), cmd)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(Prefix)+len(id)), 10)
	b = append(append(append(append(b, "\r\n"...), Prefix...), id...), "\r\n"...)
	if cmd == "SET" {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(append(append(b, "\r\n"...), v...), "\r\n"...)
		b = appendBulk(b, "PX")
		b = appendBulk(b, strconv.FormatInt(ttl.Milliseconds(), 10))
	}
	c.buf = b
	c.waiting = append(c.waiting, ch)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	select {
	case r := <-ch:
		pipeReplies.Put(ch)
		return r, r.err
	case <-ctx.Done():
		return pipeReply{}, ctx.Err() // ch is left to its reply: capacity 1, the reader never waits
	}
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	return append(append(append(b, "\r\n"...), s...), "\r\n"...)
}

// fail closes the connection and fails every call queued or sent, once.
func (c *pipeConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		c.nc.Close()
		close(c.stop) // the writer hands what is queued to the reader and returns
	}
	c.mu.Unlock()
}

// write sends what is queued, batch after batch, until fail; then it
// fails what was never sent.
func (c *pipeConn) write() {
	var out []byte
	defer close(c.inflight)
	for {
		select {
		case <-c.kick:
		case <-c.stop:
			c.failQueued()
			return
		}
		select { // meanwhile more callers queue: one write takes them all
		case c.slots <- struct{}{}:
		case <-c.stop:
			c.failQueued()
			return
		}
		c.mu.Lock()
		out, c.buf = c.buf, out[:0]
		batch := c.waiting
		c.waiting = nil
		c.mu.Unlock()
		if len(batch) == 0 {
			<-c.slots
			continue
		}
		c.inflight <- batch // the reader gives the slot back
		if _, err := c.nc.Write(out); err != nil {
			c.fail(err)
		}
	}
}

// failQueued answers the calls queued and never written with the
// connection's error.
func (c *pipeConn) failQueued() {
	c.mu.Lock()
	batch, err := c.waiting, c.err
	c.waiting = nil
	c.mu.Unlock()
	for _, ch := range batch {
		ch <- pipeReply{err: err}
	}
}

// read answers each batch's callers in order, from the replies or, once
// the connection failed, with its error.
func (c *pipeConn) read() {
	rd := bufio.NewReaderSize(c.nc, 64<<10)
	var err error
	for batch := range c.inflight {
		for _, ch := range batch {
			var r pipeReply
			if err == nil {
				if r, err = readReply(rd); err != nil {
					c.fail(err)
				}
			}
			if err != nil {
				c.mu.Lock()
				r.err = c.err
				c.mu.Unlock()
			}
			ch <- r
		}
		<-c.slots
	}
}

// readReply reads one RESP2 reply of GET, SET or DEL.
func readReply(rd *bufio.Reader) (pipeReply, error) {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return pipeReply{}, err
	}
	if len(line) < 3 {
		return pipeReply{}, errors.New("bench: pipeline: short reply")
	}
	switch line[0] {
	case '+', ':':
		return pipeReply{found: true}, nil
	case '-':
		return pipeReply{err: errors.New(string(line[1 : len(line)-2]))}, nil
	case '$':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil || n < 0 {
			return pipeReply{}, err // $-1: not found
		}
		v := make([]byte, n+2)
		if _, err := io.ReadFull(rd, v); err != nil {
			return pipeReply{}, err
		}
		return pipeReply{value: v[:n], found: true}, nil
	}
	return pipeReply{}, errors.New("bench: pipeline: unexpected reply")
}
