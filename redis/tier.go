// Package redis provides sessiontier's Redis tier: values at Prefix+id
// with a Redis TTL, read with their remaining TTL in one round trip, every
// call bounded in time whatever the go-redis client's own settings; and a
// constructor for a go-redis client fit for a session store.
package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// maxDetached bounds the calls in flight on a client that ignores context
// deadlines (see Tier).
const maxDetached = 4096

// ErrOverloaded is returned, without calling Redis, when maxDetached calls
// are already in flight on a client that ignores context deadlines: most
// likely they hang on an unresponsive Redis.
var ErrOverloaded = errors.New("redis: too many calls in flight on a client without context deadlines")

// ErrTooLarge is returned by Get for a value longer than
// Config.MaxValueBytes, of which no more than MaxValueBytes+1 bytes were
// read. It is an answer about one key, not a failure of Redis:
// IsUnreachable reports false for it.
var ErrTooLarge = errors.New("redis: value too large")

// Tier reads and writes the values of one key prefix. It is safe for
// concurrent use.
//
// Every call is bounded by the timeout given to New. A client whose options
// set ContextTimeoutEnabled gets a context deadline. Any other client
// (go-redis defaults, or a type whose options are not visible) ignores
// context deadlines on its sockets, so each call runs on a goroutine of its
// own and the caller stops waiting at the deadline; the goroutine ends when
// the client's own timeouts end the call, and Close waits for it.
//
// On a *goredis.Client, writes go through a client of the Tier's own, with
// the same options, so that Fence can close their connections; Set, Delete
// and Touch are queued on lanes whose flushers send what is queued as one
// pipeline (see lanes.go). A write whose caller gave up before it was sent
// is not sent.
type Tier struct {
	client     goredis.UniversalClient
	prefix     string
	timeout    time.Duration
	maxValue   int           // > 0: the longest value Get and Scan read; otherwise no limit
	honoursCtx bool          // the client applies context deadlines itself
	replicas   bool          // the client may send read-only commands to replicas (see readsReplicas)
	slots      chan struct{} // calls in flight on a detached goroutine
	detached   sync.WaitGroup
	trace      TraceFunc // nil: no spans
	fence      *fence    // nil: writes on client, not fenced (see Fence)
	tracked    *tracked  // the Listener's tracking connection; nil: none
	listener   *Listener // Config.Listener
}

// TraceFunc starts a span for one round trip to Redis, given the command
// name only, and returns the context to make the call in and the function
// that ends the span with the call's error.
type TraceFunc func(ctx context.Context, command string) (context.Context, func(error))

// Config configures a Tier.
type Config struct {
	// Prefix is put before every id to make its key.
	Prefix string
	// Timeout bounds every call; it must be positive.
	Timeout time.Duration
	// MaxValueBytes is the longest value Get and Scan read: a longer one is
	// not read past MaxValueBytes+1 bytes (Get returns ErrTooLarge, Scan
	// skips it). 0 or less: no limit.
	MaxValueBytes int
	// Trace, if not nil, is called around every round trip.
	Trace TraceFunc
	// Listener, if not nil, is the invalidation stream of the same client
	// and prefix: in tracking mode, Set and Delete go on its connection
	// while it is up, so that they come back as no invalidation (see
	// tracked.go), and Fence closes that connection too.
	Listener *Listener
	// OnAbandoned, if not nil, is told of every Set, Delete and Touch whose
	// caller gave up after it was sent on a single-node client, once
	// Redis answered it (Landed) or its connection was given up: the
	// write may have changed Redis after its caller was told it failed.
	// (On the tracked connection only the latter: an answered write is
	// reported to the Listener's Handler, as a change.) It is called on
	// the goroutine of the connection, before the lane sends anything
	// more, and must not block.
	OnAbandoned func(Abandoned)
}

// WriteKind is what a write does.
type WriteKind uint8

// The kinds of writes.
const (
	WriteSet    WriteKind = iota // SET
	WriteDelete                  // DEL
	WriteTouch                   // PEXPIRE
)

// abandoned is the WriteKind of a write's opKind.
func (k opKind) abandoned() WriteKind {
	switch k {
	case opDel:
		return WriteDelete
	case opPExpire:
		return WriteTouch
	}
	return WriteSet
}

// Abandoned is a write whose caller gave up after it was sent (see
// Config.OnAbandoned).
type Abandoned struct {
	ID    string
	Kind  WriteKind
	Value []byte // WriteSet's value, bytes the Tier owns: not to be modified
	// Landed: Redis answered that it executed the write. Otherwise the
	// write ended without a reply and Redis may still execute it, until
	// the next Fence.
	Landed bool
}

// New returns a Tier of the keys under cfg.Prefix. It makes no network
// call.
func New(client goredis.UniversalClient, cfg Config) (*Tier, error) {
	if client == nil {
		return nil, errors.New("redis: nil client")
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("redis: timeout %v must be positive", cfg.Timeout)
	}
	var tr *tracked
	if cfg.Listener != nil {
		tr = cfg.Listener.tracked
	}
	f := newFence(client, cfg.Timeout, cfg.Prefix, cfg.OnAbandoned)
	if tr != nil && f != nil && cfg.OnAbandoned != nil {
		tr.abandoned = f.report // before the Listener starts: see Config.Listener
	}
	return &Tier{
		tracked:    tr,
		listener:   cfg.Listener,
		client:     client,
		prefix:     cfg.Prefix,
		timeout:    cfg.Timeout,
		maxValue:   cfg.MaxValueBytes,
		honoursCtx: honoursContext(client),
		replicas:   readsReplicas(client),
		slots:      make(chan struct{}, maxDetached),
		trace:      cfg.Trace,
		fence:      f,
	}, nil
}

// readsReplicas reports whether client may send a pipeline of read-only
// commands to replicas: a cluster client (a Sentinel one included) with
// ReadOnly, RouteByLatency or RouteRandomly.
func readsReplicas(client goredis.UniversalClient) bool {
	c, ok := client.(*goredis.ClusterClient)
	if !ok {
		return false
	}
	o := c.Options()
	return o.ReadOnly || o.RouteByLatency || o.RouteRandomly
}

func honoursContext(client goredis.UniversalClient) bool {
	switch c := client.(type) {
	case *goredis.Client:
		return c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// call runs fn bounded by the tier's timeout and returns what fn returned.
// The error for a call cut at the deadline wraps context.DeadlineExceeded
// (or the caller's own context error). fn must not write to variables it
// shares with its caller: on a detached call it may still run after call
// returned.
func call[T any](t *Tier, ctx context.Context, op string, fn func(ctx context.Context) (T, error)) (v T, err error) {
	return bounded(t, ctx, op, t.honoursCtx, fn)
}

// bounded is call, told whether fn honours its context's deadline itself.
func bounded[T any](t *Tier, ctx context.Context, op string, honours bool, fn func(ctx context.Context) (T, error)) (v T, err error) {
	return boundedBy(t, ctx, op, honours, t.timeout, fn)
}

// boundedBy is bounded with a timeout of its own.
func boundedBy[T any](t *Tier, ctx context.Context, op string, honours bool, timeout time.Duration, fn func(ctx context.Context) (T, error)) (v T, err error) {
	if t.trace != nil {
		var end func(error)
		ctx, end = t.trace(ctx, op)
		defer func() { end(err) }()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if honours {
		v, err = fn(ctx)
	} else {
		v, err = detach(t, ctx, fn)
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		err = fmt.Errorf("redis: %s: %w", op, err)
	}
	return v, err
}

type result[T any] struct {
	v   T
	err error
}

func detach[T any](t *Tier, ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	select {
	case t.slots <- struct{}{}:
	default:
		var zero T
		return zero, ErrOverloaded
	}
	done := make(chan result[T], 1)
	t.detached.Add(1)
	go func() {
		defer t.detached.Done()
		v, err := fn(ctx)
		<-t.slots
		done <- result[T]{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

func (t *Tier) key(id string) string { return t.prefix + id }

// NoTTL is the TTL Get reports for a key that has none (PTTL -1).
const NoTTL time.Duration = -1

// Get returns the value of id and its remaining TTL (NoTTL for a key
// without one; 0 for a key in its last millisecond) in one round trip. A
// missing key gives found false and no error. A value longer than
// Config.MaxValueBytes is ErrTooLarge, read no further than one byte past
// the limit (GETRANGE), so that it costs no more than a value at the
// limit; a key of another type is an error carrying Redis's WRONGTYPE
// reply. Neither is an unreachable error.
//
// Get reads through the caller's client: a caller that keeps a copy of
// what it reads uses GetTracked.
func (t *Tier) Get(ctx context.Context, id string) (value []byte, ttl time.Duration, found bool, err error) {
	return t.get(ctx, id)
}

// GetTracked is Get for a caller that keeps a copy of what it reads:
// coherent reports whether the Listener will report a later change of the
// key (false in per-key mode for a read that could not go on the tracked
// connection: the copy must not be kept).
func (t *Tier) GetTracked(ctx context.Context, id string) (value []byte, ttl time.Duration, found, coherent bool, err error) {
	if t.perKey() && t.tracked.up.Load() {
		start := time.Now()
		r := newRequest(ctx, opGet, "", nil, 0, nil)
		r.id, r.limit = id, t.maxValue
		rep, err := t.viaTracked(ctx, "GET", r, false)
		switch {
		case err == nil:
			value, ttl, found, err = t.answer(rep)
			return value, ttl, found, err == nil, err
		case !errors.Is(err, errNotSent) && !lostUnder(err):
			return nil, 0, false, false, err
		}
		// Down, or lost while the read was in flight (killed, by a Fence
		// that could not spare it or by someone else): read through the
		// caller's client, for this caller only, within what is left of
		// the bound.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(t.timeout))
		defer cancel()
	}
	value, ttl, found, err = t.get(ctx, id)
	return value, ttl, found, !t.perKey(), err
}

// lostUnder reports whether err is the tracked connection's loss, shared
// by the requests in flight on it (see tracked.serve), rather than a reply
// or the request's own deadline; not a loss at a request's deadline
// either: Redis is slow or hung, and the reads in flight fail together,
// at once, as the breaker expects of an unreachable Redis.
func lostUnder(err error) bool {
	var lost *sharedError
	return errors.As(err, &lost) && !errors.Is(err, context.DeadlineExceeded)
}

// answer turns a tracked read's reply into Get's results.
func (t *Tier) answer(rep reply) ([]byte, time.Duration, bool, error) {
	switch {
	case !rep.found:
		return nil, 0, false, nil
	case t.maxValue > 0 && len(rep.value) > t.maxValue:
		return nil, 0, false, fmt.Errorf("%w: over %d bytes", ErrTooLarge, t.maxValue)
	case rep.ttl < 0:
		return rep.value, NoTTL, true, nil
	}
	return rep.value, time.Duration(rep.ttl) * time.Millisecond, true, nil
}

// PerKey reports whether a copy of what the Tier reads or writes is kept
// coherent only when GetTracked or Written says so: per-key tracking is in
// use, or may be once the Listener has decided its mode.
func (t *Tier) PerKey() bool { return t.perKey() }

// perKey reports whether the Tier's reads and writes must go on the
// tracked connection for a copy of them to be kept: per-key tracking is
// in use, or may be once the Listener has decided.
func (t *Tier) perKey() bool {
	if t.tracked == nil || !t.tracked.perKey {
		return false
	}
	m := t.listener.Mode()
	return m == ListenPerKey || m == ListenAuto
}

// get is Get through the caller's client: one pipeline of GET (or
// GETRANGE) and PTTL.
func (t *Tier) get(ctx context.Context, id string) (value []byte, ttl time.Duration, found bool, err error) {
	key := t.key(id)
	max := t.maxValue
	type reply struct {
		value []byte
		ttl   time.Duration
	}
	r, err := call(t, ctx, "GET", func(ctx context.Context) (reply, error) {
		var get *goredis.StringCmd
		var pttl *goredis.DurationCmd
		_, err := t.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			if max > 0 {
				// At most max+1 bytes; "" for a missing key, which
				// PTTL -2 tells from an empty value.
				get = p.GetRange(ctx, key, 0, int64(max))
			} else {
				get = p.Get(ctx, key)
			}
			pttl = p.PTTL(ctx, key)
			return nil
		})
		if err != nil && !errors.Is(err, goredis.Nil) {
			return reply{}, err
		}
		v, err := get.Bytes()
		return reply{v, pttl.Val()}, err
	})
	switch {
	case errors.Is(err, goredis.Nil):
		return nil, 0, false, nil
	case err != nil:
		return nil, 0, false, err
	case r.ttl == -2: // missing, or expired or deleted between GET and PTTL
		return nil, 0, false, nil
	case max > 0 && len(r.value) > max:
		return nil, 0, false, fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)
	case r.ttl < 0:
		r.ttl = NoTTL
	}
	return r.value, r.ttl, true, nil
}

// Set stores value at id for ttl (SET PX). value is not kept, nor read,
// once Set has returned: the caller may reuse it.
func (t *Tier) Set(ctx context.Context, id string, value []byte, ttl time.Duration) error {
	_, err := t.change(ctx, "SET", opSet, id, value, ttl, false, nil)
	return err
}

// Written is what a write means for the copy its caller keeps.
type Written struct {
	// Ordered: applied was called and returned true (see SetOrdered).
	Ordered bool
	// Keep: the Listener will report a later change of the key, so the
	// caller may keep its copy. In per-key mode that takes a read of the
	// key after the write, on the tracked connection, that returned the
	// value copied; otherwise the copy must be dropped.
	Keep bool
	// Found: Touch found the key.
	Found bool
}

// SetOrdered is Set for a caller that keeps a copy of what it writes,
// when keep is true, and says in Written.Keep whether it may. If the
// write goes on the Listener's tracking connection, applied is called on
// that connection's reader as soon as Redis answered OK (in per-key mode,
// only if the copy may be kept), before the reply of any later write on it
// and before any invalidation Redis sent after it: a copy updated in
// applied follows the order in which Redis executed this Tier's writes and
// other clients' changes. It is not called if the write went another way,
// failed, or if ctx ended first. applied must be quick and must not call
// the Tier. With keep, value is compared with what Redis returns, which
// may happen after a caller that gave up has returned: it must then not
// be modified (the caller's own copy); without keep it is not kept past
// the call, as for Set.
func (t *Tier) SetOrdered(ctx context.Context, id string, value []byte, ttl time.Duration, keep bool, applied func() bool) (Written, error) {
	if !keep {
		applied = nil
	}
	rep, err := t.change(ctx, "SET", opSet, id, value, ttl, keep, applied)
	return t.outcome(rep, keep), err
}

// Delete removes id (DEL). Deleting a missing key is not an error.
func (t *Tier) Delete(ctx context.Context, id string) error {
	_, err := t.change(ctx, "DEL", opDel, id, nil, 0, false, nil)
	return err
}

// Touch sets the TTL of id (PEXPIRE) and reports whether it exists.
func (t *Tier) Touch(ctx context.Context, id string, ttl time.Duration) (found bool, err error) {
	o, err := t.TouchKept(ctx, id, ttl, nil)
	return o.Found, err
}

// TouchKept is Touch for a caller that keeps copy, the value it last read
// of id (nil: none), and says in Written.Keep whether it may keep it.
func (t *Tier) TouchKept(ctx context.Context, id string, ttl time.Duration, copy []byte) (Written, error) {
	keep := copy != nil
	rep, err := t.change(ctx, "PEXPIRE", opPExpire, id, copy, ttl, keep, nil)
	o := t.outcome(rep, keep)
	o.Found = rep.found
	return o, err
}

func (t *Tier) outcome(rep reply, keep bool) Written {
	return Written{Ordered: rep.applied, Keep: keep && (rep.verified || !t.perKey())}
}

// change sends one write: on the tracked connection while it is up (in
// broadcast mode not a PEXPIRE: see tracked.go), else through the lanes on
// a single-node client, with one call of the caller's client otherwise.
// verify: in per-key mode, follow the write with a read of the key (see
// perkey.go); value is then also the value expected.
func (t *Tier) change(ctx context.Context, op string, kind opKind, id string, value []byte, ttl time.Duration, verify bool, applied func() bool) (reply, error) {
	if perKey := t.perKey(); t.tracked != nil && (kind != opPExpire || perKey) && t.tracked.up.Load() {
		start := time.Now()
		r := newRequest(ctx, kind, "", value, ttl, applied)
		r.id, r.verify = id, verify && perKey
		rep, err := t.viaTracked(ctx, op, r, true)
		if !errors.Is(err, errNotSent) {
			return rep, err
		}
		// Not sent: through the lanes, within what is left of the bound.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(t.timeout))
		defer cancel()
	}
	key := t.key(id)
	switch kind {
	case opPExpire:
		value = nil // a copy to verify, not an argument
	case opSet:
		value = bytes.Clone(value) // the caller's: a write left to the lanes, or detached, may outlive the call
	}
	return write(t, ctx, op, func(ctx context.Context) (reply, error) {
		var found bool
		var err error
		switch {
		case t.fence != nil:
			t.fence.once.Do(t.fence.open)
			found, err = t.fence.lanes.do(ctx, kind, key, value, ttl)
		case kind == opSet:
			found, err = true, t.client.Set(ctx, key, value, ttl).Err()
		case kind == opDel:
			found, err = true, t.client.Del(ctx, key).Err()
		default:
			found, err = t.client.PExpire(ctx, key, ttl).Result()
		}
		return reply{found: found}, err
	})
}

// viaTracked sends r on the tracked connection, bounded by the Tier's
// timeout as call is, with a timer of r's own rather than a context of
// its own: the fast path of writes and per-key reads. errNotSent: r was
// not sent, and the caller sends it another way, within what is left of
// its bound. write: r changes Redis, and one that
// ended without a reply counts as abandoned (see write).
func (t *Tier) viaTracked(ctx context.Context, op string, r *request, write bool) (rep reply, err error) {
	if t.trace != nil {
		var end func(error)
		ctx, end = t.trace(ctx, op)
		defer func() { end(err) }()
	}
	r.ctx = ctx
	rep, err = t.tracked.do(r, t.timeout)
	if err == nil || errors.Is(err, errNotSent) {
		return rep, err
	}
	if write && t.fence != nil && !IsReply(err) {
		t.fence.abandoned.Add(1)
	}
	return rep, fmt.Errorf("redis: %s: %w", op, err)
}

// Close waits for calls that outlived their deadline on a client that
// ignores context deadlines, then closes the Tier's own write client. It
// does not close the client given to New.
func (t *Tier) Close() {
	t.detached.Wait()
	t.fence.close()
}

// CloseWrites stops the lanes once the writes queued have been answered
// (those whose caller gave up are reported to Config.OnAbandoned): a Set,
// Delete or Touch after it fails. A Fence may follow it; Close does it
// too.
func (t *Tier) CloseWrites() {
	if t.fence != nil {
		t.fence.once.Do(t.fence.open)
		t.fence.lanes.close()
	}
}

// IsReply reports whether err is an answer of Redis (goredis.Nil
// included): the command was executed or refused, as opposed to a failure
// whose outcome is unknown (a timeout, a cancellation, a broken
// connection).
func IsReply(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply)
}

// IsUnreachable reports whether err means that Redis could not serve the
// call: a timeout, a refused, reset or closed connection, a pool timeout,
// or a LOADING, READONLY, MASTERDOWN, CLUSTERDOWN or TRYAGAIN reply. A
// missing key, ErrTooLarge, a WRONGTYPE reply or any other reply means
// Redis is up.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) || errors.Is(err, ErrTooLarge) {
		return false
	}
	code, ok := replyCode(err)
	if !ok {
		return true // not a reply: the network, the pool or a deadline failed
	}
	return slices.Contains([]string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"}, code)
}

// IsBusy reports whether err is Redis's BUSY reply: a script or function
// running past busy-reply-threshold, which makes Redis refuse every command
// but SCRIPT KILL and FUNCTION KILL until it ends. It says nothing of what
// Redis will allow once it does.
func IsBusy(err error) bool {
	code, _ := replyCode(err)
	return code == "BUSY"
}

// replyCode returns the error code of a Redis reply in err, the word its
// message starts with ("ERR", "WRONGTYPE", "OOM"…), and false for an error
// that is not a reply.
func replyCode(err error) (string, bool) {
	var reply goredis.Error
	if !errors.As(err, &reply) {
		return "", false
	}
	code, _, _ := strings.Cut(reply.Error(), " ")
	return code, true
}
