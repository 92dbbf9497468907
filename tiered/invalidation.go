package tiered

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sessiontier/sessiontier/telemetry"
)

// Invalidation selects how instances tell each other that a session
// changed, so that none serves a local copy of a session revoked elsewhere.
type Invalidation int

// The invalidation modes.
const (
	// InvalidationAuto uses Redis's client tracking where the client is a
	// single-node *redis.Client and Redis accepts CLIENT TRACKING, and
	// InvalidationPublish otherwise.
	InvalidationAuto Invalidation = 0
	// InvalidationTracking: server-assisted client tracking in broadcast
	// mode on the prefix (CLIENT TRACKING ON REDIRECT BCAST PREFIX), on a
	// connection of the store's own. Sees every change of a key under the
	// prefix, whoever made it: SET, DEL, EXPIRE, UNLINK, FLUSHDB, expiry,
	// eviction.
	InvalidationTracking Invalidation = 1
	// InvalidationPublish: every instance publishes its own writes and
	// deletes on a channel under the prefix. It cannot see changes made by
	// other Redis clients, expiry or eviction.
	InvalidationPublish Invalidation = 2
	// InvalidationOff: no invalidation; a local copy is served for up to
	// Local.TTL after another instance changed the session.
	InvalidationOff Invalidation = -1
)

// Stream states reported by Stats.Invalidation.
const (
	streamOff        = "off"
	streamConnecting = "connecting" // not confirmed yet: the local tier is bypassed
	streamTracking   = "tracking"
	streamPublish    = "publish"
)

// invalidator listens for changes made elsewhere and drops local copies.
type invalidator struct {
	s       *Store
	mode    atomic.Int32 // Invalidation: tracking or publish once run has decided
	channel string       // publish mode
	nonce   string       // publish mode: this instance's messages
	client  *goredis.Client
	state   atomic.Value  // string: one of the stream states
	up      atomic.Bool   // the stream is confirmed: the local tier may serve fresh hits
	count   atomic.Uint64 // invalidations received
	own     ownWrites
	done    chan struct{}
}

func newNonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startInvalidation starts the listener goroutine; it makes its network
// calls there, never in New.
func (s *Store) startInvalidation(client goredis.UniversalClient) {
	inv := &invalidator{s: s, channel: s.opts.Prefix + "__invalidate__", nonce: newNonce(), done: make(chan struct{})}
	s.inv = inv
	if s.opts.Invalidation == InvalidationOff || s.local == nil {
		inv.state.Store(streamOff)
		inv.up.Store(true)
		close(inv.done)
		return
	}
	inv.state.Store(streamConnecting)
	mode := s.opts.Invalidation
	c, single := client.(*goredis.Client)
	if !single {
		mode = InvalidationPublish // tracking needs one node
	}
	inv.mode.Store(int32(mode))
	if single {
		opt := *c.Options()
		opt.Protocol, opt.ContextTimeoutEnabled, opt.MaxRetries = 2, true, 0
		opt.ClientName, opt.OnConnect = "sessiontier-invalidation", nil
		if mode != InvalidationPublish {
			prefix := s.opts.Prefix
			opt.OnConnect = func(ctx context.Context, cn *goredis.Conn) error {
				id, err := cn.ClientID(ctx).Result()
				if err != nil {
					return err
				}
				return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", prefix).Err()
			}
		}
		inv.client = goredis.NewClient(&opt)
	}
	go inv.run(client)
}

// fresh reports whether local hits may be served: the stream is confirmed.
func (inv *invalidator) fresh() bool { return inv.up.Load() }

func (inv *invalidator) run(client goredis.UniversalClient) {
	defer close(inv.done)
	s := inv.s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()
	if Invalidation(inv.mode.Load()) == InvalidationAuto && !inv.trackingWorks(ctx) {
		inv.mode.Store(int32(InvalidationPublish))
		opt := *inv.client.Options()
		opt.OnConnect = nil
		inv.client.Close()
		inv.client = goredis.NewClient(&opt)
	}
	if inv.client != nil {
		defer inv.client.Close()
	}
	channel := "__redis__:invalidate"
	if Invalidation(inv.mode.Load()) == InvalidationPublish {
		channel = inv.channel
	}
	var subscriber interface {
		Subscribe(ctx context.Context, channels ...string) *goredis.PubSub
	} = client // a cluster or ring: publish mode on the caller's client
	if inv.client != nil {
		subscriber = inv.client
	}
	for ctx.Err() == nil {
		ps := subscriber.Subscribe(ctx, channel)
		inv.consume(ctx, ps)
		ps.Close()
		select {
		case <-ctx.Done():
		case <-time.After(s.opts.OpTimeout): // then subscribe again
		}
	}
}

// trackingWorks asks Redis, on a connection of its own that it then
// closes, whether it accepts broadcast tracking.
func (inv *invalidator) trackingWorks(ctx context.Context) bool {
	opt := *inv.client.Options()
	opt.OnConnect, opt.PoolSize = nil, 1
	probe := goredis.NewClient(&opt)
	defer probe.Close()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, inv.s.opts.OpTimeout)
		err := probe.Do(pctx, "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", inv.s.opts.Prefix).Err()
		cancel()
		var reply goredis.Error
		switch {
		case err == nil:
			return true
		case errors.As(err, &reply):
			return false // Redis answered no: an in-process Redis, a proxy
		}
		select { // unreachable: ask again later
		case <-ctx.Done():
		case <-time.After(inv.s.opts.Breaker.OpenTimeout):
		}
	}
	return false
}

// consume reads the stream until it breaks or ctx ends.
func (inv *invalidator) consume(ctx context.Context, ps *goredis.PubSub) {
	s := inv.s
	stop := context.AfterFunc(ctx, func() { ps.Close() }) // unblocks Receive on Close
	defer stop()
	for {
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() && ctx.Err() == nil {
				if ps.Ping(ctx) == nil {
					continue // quiet, and alive
				}
			}
			if strings.Contains(err.Error(), "unsupported pubsub message payload") {
				s.local.Invalidate() // FLUSHDB or FLUSHALL: everything changed
				inv.count.Add(1)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			inv.lose(ctx)
			return
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				// From here on nothing is missed; what came before may
				// have been: revalidate everything held.
				s.local.Invalidate()
				state := streamTracking
				if Invalidation(inv.mode.Load()) == InvalidationPublish {
					state = streamPublish
				}
				inv.state.Store(state)
				inv.up.Store(true)
			}
		case *goredis.Message:
			inv.apply(m)
		}
	}
}

// lose marks the stream lost: the local tier is invalidated and bypassed
// until the stream is confirmed again.
func (inv *invalidator) lose(ctx context.Context) {
	wasUp := inv.up.Swap(false)
	inv.state.Store(streamConnecting)
	inv.s.local.Invalidate()
	if wasUp {
		inv.s.alerts.raise(ctx, telemetry.Alert{Kind: telemetry.AlertInvalidationLost, Severity: telemetry.SeverityError,
			Message: "the invalidation stream broke: local copies are revalidated with Redis until it is back"})
	}
}

// apply drops the local copies a message names.
func (inv *invalidator) apply(m *goredis.Message) {
	s := inv.s
	keys := m.PayloadSlice
	if Invalidation(inv.mode.Load()) == InvalidationPublish {
		nonce, id, ok := strings.Cut(m.Payload, " ")
		if !ok || nonce == inv.nonce {
			return // our own write: the local tier is already right
		}
		keys = []string{s.opts.Prefix + id}
	} else if m.Payload != "" {
		keys = append(keys, m.Payload)
	}
	for _, k := range keys {
		id, ok := strings.CutPrefix(k, s.opts.Prefix)
		if !ok || inv.own.mine(id) {
			continue
		}
		inv.count.Add(1)
		s.dropLocal(id) // also rejects fills read before
		s.loads.Forget(id)
	}
}

// announce publishes a change of id in publish mode, for the other
// instances; a failure is theirs to notice as a broken stream.
func (s *Store) announce(ctx context.Context, id string) {
	if Invalidation(s.inv.mode.Load()) == InvalidationPublish && s.inv.state.Load() != streamOff {
		s.remote.Publish(ctx, s.inv.channel, s.inv.nonce+" "+id)
	}
}

// ownWrites remembers this instance's recent writes, so that in tracking
// mode the invalidation Redis sends back for each of them does not drop
// the local copy the write just stored. An entry lasts ownWriteWindow;
// past maxOwnWrites entries nothing more is remembered, and the local copy
// is dropped instead: the safe side.
type ownWrites struct {
	mu sync.Mutex          // guards m
	m  map[string]ownWrite // id → writes whose invalidation has not come back
}

type ownWrite struct {
	n     int
	until time.Time
}

const (
	ownWriteWindow = time.Second
	maxOwnWrites   = 100_000
)

// expect records a write of id about to be sent to Redis.
func (o *ownWrites) expect(id string) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[string]ownWrite)
	}
	w, ok := o.m[id]
	if !ok && len(o.m) >= maxOwnWrites {
		for k, v := range o.m { // drop what has expired, then give up
			if now.After(v.until) {
				delete(o.m, k)
			}
		}
		if len(o.m) >= maxOwnWrites {
			return
		}
	}
	o.m[id] = ownWrite{n: w.n + 1, until: now.Add(ownWriteWindow)}
}

// mine reports whether an invalidation of id is the echo of a write of
// this instance, and consumes it.
func (o *ownWrites) mine(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.m[id]
	if !ok {
		return false
	}
	if time.Now().After(w.until) {
		delete(o.m, id)
		return false
	}
	if w.n--; w.n == 0 {
		delete(o.m, id)
	} else {
		o.m[id] = w
	}
	return true
}

// expectEcho records, in tracking mode, a write of id about to be sent.
func (s *Store) expectEcho(id string) {
	if Invalidation(s.inv.mode.Load()) != InvalidationPublish && s.inv.state.Load() != streamOff {
		s.inv.own.expect(id)
	}
}
