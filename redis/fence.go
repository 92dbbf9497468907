package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// A write abandoned at its deadline (a timeout, a cancellation, a broken
// connection) may still be in the network and be executed later, after
// commands sent since: the replayed DEL of a logout, then the late SET, and
// the session is back. Closing the connection on the client's side does not
// prevent it (the bytes sent before the FIN are still read and executed);
// Redis executes nothing more from a connection it has closed itself. So,
// on a single-node client, a Tier sends its writes on connections of its
// own, all carrying a client name unique to the Tier, and Fence closes them
// server-side (CLIENT KILL ID) before anything is replayed over what they
// may carry.

// ErrFence wraps the error of a Fence that could not complete: writes
// abandoned earlier may still be executed by Redis.
var ErrFence = errors.New("redis: abandoned writes could not be fenced")

// writeNamePrefix starts the client name of a Tier's write connections.
const writeNamePrefix = "sessiontier-w-"

// fence owns a Tier's write client and counts the writes it abandoned.
type fence struct {
	opt         goredis.Options // the write client's
	once        sync.Once
	client      *goredis.Client // created by the first write, or by close
	lanes       *lanes          // created with client: the flushers of Set, Delete and Touch
	timeout     time.Duration
	prefix      string
	onAbandoned func(Abandoned) // Config.OnAbandoned

	abandoned atomic.Uint64 // writes that ended without a reply from Redis
	mu        sync.Mutex    // one Fence at a time; guards fenced
	fenced    uint64        // abandoned when the last successful Fence began
}

// newFence returns the fence of a Tier over client, or nil for a client
// of several nodes (a cluster, a ring): their abandoned writes are not
// fenced. A Sentinel failover client is a *goredis.Client: its write client
// dials through the same sentinels, and a Fence reaches the current master
// only.
func newFence(client goredis.UniversalClient, timeout time.Duration, prefix string, onAbandoned func(Abandoned)) *fence {
	c, ok := client.(*goredis.Client)
	if !ok {
		return nil
	}
	f := &fence{opt: copyOptions(c.Options()), timeout: timeout, prefix: prefix, onAbandoned: onAbandoned}
	o := &f.opt
	o.PoolSize = numLanes + 2 // a connection per lane, and the replay's
	o.ClientName = writeNamePrefix + rand.Text()
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1 // a write retried after a timeout is one more abandoned write
	o.MinIdleConns = 0
	// What NewClient set up for the caller's client is not shared.
	o.PushNotificationProcessor = nil
	o.ClientSideCache, o.ClientSideCacheConfig = nil, nil
	if onConnect := o.OnConnect; onConnect != nil { // it may rename the connection
		name := o.ClientName
		o.OnConnect = func(ctx context.Context, cn *goredis.Conn) error {
			if err := onConnect(ctx, cn); err != nil {
				return err
			}
			return cn.ClientSetName(ctx, name).Err()
		}
	}
	return f
}

// writes returns the client that carries the Tier's writes: its own on a
// single-node client, the caller's otherwise.
func (t *Tier) writes() goredis.UniversalClient {
	if t.fence == nil {
		return t.client
	}
	t.fence.once.Do(t.fence.open)
	return t.fence.client
}

// open creates the write client and its lanes. They are created on first
// use, not by New: they start goroutines that only close stops.
func (f *fence) open() {
	f.client = goredis.NewClient(&f.opt)
	f.lanes = newLanes(f.client, f.timeout)
	if f.onAbandoned != nil {
		f.lanes.abandoned = func(r *request, landed bool) {
			a := Abandoned{ID: strings.TrimPrefix(r.key, f.prefix), Kind: r.kind.abandoned(), Landed: landed}
			if r.kind == opSet {
				a.Value = r.value // the Tier's copy (see Tier.change)
			}
			f.report(a)
		}
	}
}

// report tells onAbandoned of a: one in doubt is counted first, so that
// a Fence made once it is told closes its connection (the caller, which
// counts it too, may not have returned yet).
func (f *fence) report(a Abandoned) {
	if !a.Landed {
		f.abandoned.Add(1)
	}
	f.onAbandoned(a)
}

// close stops the lanes and closes the write client; a write after it
// fails.
func (f *fence) close() {
	if f != nil {
		f.once.Do(f.open)
		f.lanes.close()
		f.client.Close()
	}
}

// write is call for a command that changes Redis, sent on t.writes(): a
// call that ended without a reply from Redis counts as abandoned, as Redis
// may still execute it.
func write[T any](t *Tier, ctx context.Context, op string, fn func(ctx context.Context) (T, error)) (T, error) {
	// The Tier's own write client honours deadlines: writes need no
	// goroutine of their own.
	v, err := bounded(t, ctx, op, t.honoursCtx || t.fence != nil, func(ctx context.Context) (T, error) {
		v, err := fn(ctx)
		if d, ok := ctx.Deadline(); ok && err != nil && !time.Now().Before(d) {
			// The socket's deadline can fire a moment before the context's
			// timer: let call see the deadline exceeded.
			<-ctx.Done()
		}
		return v, err
	})
	if t.fence != nil && err != nil && !IsReply(err) && !errors.Is(err, errNotSent) {
		t.fence.abandoned.Add(1)
	}
	return v, err
}

// Fence makes sure that Redis will not execute any write of this Tier that
// ended without a reply (a timeout, a cancellation, a broken connection)
// before Fence was called, so that what is written after Fence returns nil
// cannot be overwritten by such a write arriving late. If there is such a
// write since the last successful Fence, it lists Redis's clients on a
// connection of the caller's client and closes, server-side, every write
// connection of this Tier (CLIENT LIST, CLIENT KILL ID); writes in flight on
// them fail, and the next writes open new connections. The tracked
// connection is spared if it answers a PING sent after everything queued
// on it (see tracked.barrier): Redis has then executed every write it
// carried, and the reads in flight on it go on. Otherwise it makes no
// call. It first waits for the lanes' batches being sent, each bounded by
// the Tier's timeout, then is bounded by that timeout itself (half of it
// for the PING); its error wraps ErrFence.
//
// A client other than a *goredis.Client is not fenced: Fence returns nil at
// once. The Redis user needs CLIENT LIST and CLIENT KILL; a server that
// refuses them (an ACL, a proxy, an in-process Redis) fails every Fence
// that has writes to fence.
func (t *Tier) Fence(ctx context.Context) error {
	f := t.fence
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.abandoned.Load()
	if n == f.fenced {
		return nil
	}
	// A batch taken before its callers gave up may still be waiting for a
	// connection that CLIENT LIST cannot see yet: let it end first, and
	// send no other until the kill is done, so that the kill breaks no
	// batch in flight (its writes would be abandoned in turn, and call for
	// another Fence). (The tracked connection's batches are written on a
	// connection that exists: killing it stops them.)
	f.once.Do(f.open)
	unlock := f.lanes.pause()
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	names := []string{f.opt.ClientName}
	var keep string
	if t.tracked != nil {
		names = append(names, t.tracked.name)
		// The tracked connection that answers a barrier carries no write
		// abandoned before it that Redis could still execute: it stays,
		// and so do the reads in flight on it. Half the bound: the other
		// half is CLIENT LIST's and CLIENT KILL's.
		if id := t.tracked.barrier(ctx, t.timeout/2); id != 0 {
			keep = strconv.FormatInt(id, 10)
		}
	}
	_, err := call(t, ctx, "CLIENT", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, killNamed(ctx, t.client, keep, names...)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFence, err)
	}
	f.fenced = n
	return nil
}

// clientIDs returns the ids of the clients in list, CLIENT LIST's reply,
// named one of names.
func clientIDs(list string, names ...string) []string {
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		var id string
		named := false
		for _, field := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(field, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(field, "name="); ok {
				named = named || slices.Contains(names, v)
			}
		}
		if named && id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// killNamed closes, server-side, every normal connection named one of
// names but the one of id keep ("": none kept).
func killNamed(ctx context.Context, c goredis.UniversalClient, keep string, names ...string) error {
	list, err := c.Do(ctx, "CLIENT", "LIST", "TYPE", "normal").Text()
	if err != nil {
		return err
	}
	var ids []string
	for _, id := range clientIDs(list, names...) {
		if id != keep {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	_, err = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, id := range ids {
			p.ClientKillByFilter(ctx, "ID", id) // 0 for a client gone meanwhile
		}
		return nil
	})
	return err
}
