package tiered

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/telemetry"
	"golang.org/x/sync/singleflight"
)

// Invalidation selects how instances tell each other that a session
// changed, so that none serves a local copy of a session revoked elsewhere.
type Invalidation int

// The invalidation modes.
const (
	// InvalidationAuto uses per-key tracking (InvalidationPerKey) where
	// the client is a single-node *redis.Client and Redis accepts CLIENT
	// TRACKING, and InvalidationPublish otherwise. Per-key rather than
	// broadcast: in the bench's W6 (bench/RESULTS.md), Redis kept 0.74x,
	// 0.70x and 0.78x of its write throughput with 1, 10 and 40 instances
	// attached, against 0.55x, 0.28x and 0.14x in broadcast mode.
	InvalidationAuto Invalidation = 0
	// InvalidationTracking: server-assisted client tracking in broadcast
	// mode on the prefix (CLIENT TRACKING ON BCAST PREFIX NOLOOP, RESP3), on
	// a connection of the store's own that also carries its Set and
	// Delete. Sees every change of a key under the prefix made by anyone
	// else: SET, DEL, EXPIRE, UNLINK, FLUSHDB, expiry, eviction.
	InvalidationTracking Invalidation = 1
	// InvalidationPublish: every instance publishes its own writes and
	// deletes on a channel under the prefix. It cannot see changes made by
	// other Redis clients, expiry or eviction.
	InvalidationPublish Invalidation = 2
	// InvalidationPerKey: server-assisted client tracking in default mode
	// (CLIENT TRACKING ON, RESP3) on a connection of the store's
	// own that carries its reads and writes: Redis remembers which
	// sessions each instance read and tells only those instances of a
	// change, so its work per write does not grow with the number of
	// instances. Sees the same changes as InvalidationTracking, for the
	// sessions this instance holds. A Set keeps the local copy of a
	// session this instance holds (Redis is asked to track it again, in
	// the same round trip); a new session is cached by its first read.
	InvalidationPerKey Invalidation = 3
	// InvalidationOff: no invalidation; a local copy is served for up to
	// Local.TTL after another instance changed the session.
	InvalidationOff Invalidation = -1
)

// Stream states reported by Stats.Invalidation.
const (
	streamOff        = "off"
	streamConnecting = "connecting" // not confirmed yet: the local tier is bypassed
	streamTracking   = "tracking"
	streamPerKey     = "per-key"
	streamPublish    = "publish"
)

// coherence is what the Store does to its local tier when the
// invalidation stream (a redis.Listener) reports: it implements
// redis.Handler. Its methods run on the listener's goroutine.
type coherence struct {
	local  *lru.Cache          // nil: no local tier, nothing to drop
	loads  *singleflight.Group // the Store's shared reads
	alert  func(context.Context, telemetry.Alert)
	now    func() time.Time
	refill chan string // ids to read again at once: see expect

	mu  sync.Mutex           // guards own
	own map[string]time.Time // ids this instance wrote lately, until when

	up      atomic.Bool   // the stream is confirmed: the local tier may serve fresh hits
	state   atomic.Value  // string: one of the stream states
	count   atomic.Uint64 // invalidations received
	alerted atomic.Bool   // invalidation_lost raised since the last confirmation
}

var _ redis.Handler = (*coherence)(nil)

// newCoherence returns the handler of a stream that is not confirmed yet;
// off: no stream, the local tier trusts Local.TTL alone.
func newCoherence(local *lru.Cache, loads *singleflight.Group, alert func(context.Context, telemetry.Alert), now func() time.Time, off bool) *coherence {
	c := &coherence{local: local, loads: loads, alert: alert, now: now,
		refill: make(chan string, refillQueue), own: make(map[string]time.Time)}
	if off {
		c.state.Store(streamOff)
		c.up.Store(true)
	} else {
		c.state.Store(streamConnecting)
	}
	return c
}

// fresh reports whether local hits may be served: the stream is confirmed.
func (c *coherence) fresh() bool { return c.up.Load() }

// Changed drops the local copies of ids. Dropping goes through the local
// tier's write ordering, so a read of Redis that started before cannot
// put the old value back.
//
// In broadcast mode the store's Set and Delete sent on the tracking
// connection do not come back (NOLOOP), and its Touch does; in per-key
// mode a write it verifies (a Set or Touch of a session it holds: see
// redis/perkey.go) does not, and its other writes of a key it read do. In
// both, writes sent while that connection is down come back, and cannot
// be told apart from someone else's change (Redis merges the changes of
// one key made in one event-loop turn into one message). So
// every message drops the copy; for an id this store wrote lately, the
// copy is then read again from Redis at once (see expect), so that hits
// and the outage's stale copies come back without waiting for a request.
func (c *coherence) Changed(ids []string) {
	for _, id := range ids {
		c.count.Add(1)
		revoke(c.local, c.loads, id)
		if c.local != nil && c.wrote(id) {
			select {
			case c.refill <- id:
			default: // the queue is full: the next Get reads it
			}
		}
	}
}

// revoke takes local's copy of id out of service (never served again;
// still the store's last seen value) and forgets loads' read of it in
// flight; local may be nil.
func revoke(local *lru.Cache, loads *singleflight.Group, id string) {
	if local != nil {
		local.EndRevoke(local.Begin(id))
	}
	loads.Forget(id)
}

const (
	// refillQueue bounds the ids waiting to be read again.
	refillQueue = 1024
	// ownWindow is how long a write of this store waits for its echo.
	ownWindow = time.Second
	// maxOwn bounds the writes remembered.
	maxOwn = 100_000
)

// expect records that this store wrote id, in tracking mode, so that its
// echo refills the local copy. It is a hint: a wrong one costs one read.
func (c *coherence) expect(id string) {
	if c.local == nil {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.own) >= maxOwn {
		clear(c.own) // a hint: losing it costs reads, never correctness
	}
	c.own[id] = now.Add(ownWindow)
}

// wrote reports and forgets whether this store wrote id lately.
func (c *coherence) wrote(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.own[id]
	delete(c.own, id)
	return ok && !c.now().After(until)
}

// Flushed drops every local copy: the sessions are gone from Redis, so not
// even an outage may serve them.
func (c *coherence) Flushed() {
	c.count.Add(1)
	if c.local != nil {
		c.local.Purge()
	}
}

// Lost bypasses the local tier until the stream is confirmed again, and
// raises invalidation_lost once per loss.
func (c *coherence) Lost() {
	c.up.Store(false)
	c.state.Store(streamConnecting)
	if c.local != nil {
		c.local.Invalidate()
	}
	if c.alerted.CompareAndSwap(false, true) {
		c.alert(context.Background(), telemetry.Alert{Kind: telemetry.AlertInvalidationLost, Severity: telemetry.SeverityError,
			Message: "the invalidation stream is down: local copies are revalidated with Redis until it is back"})
	}
}

// Confirmed revalidates everything held (changes made before may have been
// missed), then trusts the local tier again.
func (c *coherence) Confirmed(mode redis.ListenMode) {
	if c.local != nil {
		c.local.Invalidate()
	}
	state := streamTracking
	switch mode {
	case redis.ListenPublish:
		state = streamPublish
	case redis.ListenPerKey:
		state = streamPerKey
	}
	c.state.Store(state)
	c.alerted.Store(false)
	c.up.Store(true)
}
