package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ListenMode selects how a Listener learns that keys under its prefix
// changed.
type ListenMode int

// The listening modes.
const (
	// ListenAuto uses autoTracking where the client is a single-node
	// *redis.Client and Redis accepts CLIENT TRACKING, ListenPublish
	// otherwise.
	ListenAuto ListenMode = iota
	// ListenTracking: server-assisted client tracking in broadcast mode
	// (CLIENT TRACKING ON BCAST PREFIX <prefix> NOLOOP, RESP3) on a
	// connection of the Listener's own, which also carries the Tier's Set
	// and Delete (see tracked.go). It sees every change under the prefix
	// made by anyone else, expiry and eviction included, and none of the
	// writes sent on it.
	ListenTracking
	// ListenPublish: the instances announce their own changes on
	// <prefix>__invalidate__ (see Announce). Changes made by other Redis
	// clients, expiry and eviction are not seen.
	ListenPublish
	// ListenPerKey: server-assisted client tracking in default mode
	// (CLIENT TRACKING ON, RESP3) on the same connection of the
	// Listener's own, which carries the Tier's reads as well as its
	// writes: Redis pushes a change only to the instances that read the
	// key (see perkey.go). Sees the same changes as ListenTracking, for
	// the keys read on it.
	ListenPerKey
)

// autoTracking is the tracking mode ListenAuto chooses (see
// tiered.InvalidationAuto for why).
const autoTracking = ListenPerKey

// tracking reports whether m is one of the tracking modes.
func (m ListenMode) tracking() bool { return m == ListenTracking || m == ListenPerKey }

// Handler receives what a Listener learns. Its methods are called from
// the Listener's goroutine, one at a time, never with a lock of the
// Listener's held; they must not block for long.
type Handler interface {
	// Changed: the keys of these ids changed or vanished.
	Changed(ids []string)
	// Flushed: every key may have changed (FLUSHDB, FLUSHALL, or an
	// instance that could not announce a change).
	Flushed()
	// Lost: the stream broke, or could not be set up; changes made from
	// now until Confirmed may never be reported.
	Lost()
	// Confirmed: the stream is set up; every change from now on is
	// reported, until Lost.
	Confirmed(mode ListenMode)
}

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	Prefix  string        // the key prefix to listen to
	Mode    ListenMode    // default: ListenAuto
	Timeout time.Duration // bound on each call, and the wait between attempts
}

// Listener owns the invalidation stream of one key prefix: the tracking
// connection, or the subscription to the channel the instances publish
// on, and the announcements of publish mode. It starts no goroutine until
// Start and makes no network call before.
type Listener struct {
	client  goredis.UniversalClient // the caller's: publishes, and subscribes for a cluster or ring
	own     *goredis.Client         // a connection of its own for a single node (publish mode, the probe); nil otherwise
	tracked *tracked                // tracking mode's connection, for a single node; nil otherwise
	cfg     ListenerConfig
	h       Handler
	channel string // publish mode's channel
	nonce   string // marks this Listener's own announcements

	mode   atomic.Int32                                                      // ListenMode; ListenAuto until decided
	owed   atomic.Bool                                                       // an announcement failed: a flush is owed to the others
	lateMu sync.Mutex                                                        // guards late
	late   []string                                                          // ids to announce (see AnnounceLater)
	dialed atomic.Bool                                                       // own has dialed: a later dial is a reconnection
	dial   func(ctx context.Context, network, addr string) (net.Conn, error) // own's dialer, unwrapped
	wake   chan struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewListener returns a Listener of client for cfg.Prefix, reporting to h.
func NewListener(client goredis.UniversalClient, cfg ListenerConfig, h Handler) *Listener {
	b := make([]byte, 8)
	rand.Read(b)
	l := &Listener{client: client, cfg: cfg, h: h, channel: cfg.Prefix + "__invalidate__",
		nonce: hex.EncodeToString(b), wake: make(chan struct{}, 1)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	mode := cfg.Mode
	c, single := client.(*goredis.Client)
	if !single {
		mode = ListenPublish // tracking needs one node
	}
	if single {
		opt := copyOptions(c.Options())
		opt.Protocol, opt.ContextTimeoutEnabled, opt.MaxRetries = 2, true, -1
		opt.ClientName, opt.OnConnect, opt.MinIdleConns, opt.PoolSize = "sessiontier-invalidation", nil, 0, 2
		l.dial, opt.Dialer = opt.Dialer, l.redial
		l.own = goredis.NewClient(&opt)
		if mode != ListenPublish {
			perKey := mode == ListenPerKey || mode == ListenAuto && autoTracking == ListenPerKey
			l.tracked = newTracked(copyOptions(c.Options()), cfg.Prefix, cfg.Timeout, h, perKey)
		}
	}
	if mode != ListenAuto {
		l.mode.Store(int32(mode))
	}
	return l
}

// redial dials a connection of own. go-redis's PubSub reconnects inside
// the Receive call that saw its connection die, before the Listener hears
// of it, and the dial and handshake can take long: so every dial but the
// first reports the stream lost before anything can block.
func (l *Listener) redial(ctx context.Context, network, addr string) (net.Conn, error) {
	if l.dialed.Swap(true) {
		l.h.Lost()
	}
	return l.dial(ctx, network, addr)
}

// Mode returns the mode in use: ListenAuto until it is decided.
func (l *Listener) Mode() ListenMode { return ListenMode(l.mode.Load()) }

// Start starts the Listener's goroutines; Close stops them.
func (l *Listener) Start() {
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.run() }()
	go func() { defer l.wg.Done(); l.repay() }()
}

// Close stops the Listener and waits for its goroutines; a flush still
// owed to the other instances gets one last try, bounded by the timeout.
func (l *Listener) Close() {
	l.cancel()
	l.wg.Wait()
	l.lateMu.Lock()
	if len(l.late) > 0 { // a flush is one message
		l.late = nil
		l.owed.Store(true)
	}
	l.lateMu.Unlock()
	if l.owed.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
		if l.client.Publish(ctx, l.channel, l.nonce).Err() == nil {
			l.owed.Store(false)
		}
		cancel()
	}
	if l.own != nil {
		l.own.Close()
	}
}

// Announce tells the other instances, in publish mode, that ids changed
// here: one message per id, all sent in one round trip. It does nothing in
// tracking mode, where Redis tells them. It runs on a context of its own
// bounded by the timeout, whatever ctx's deadline (ctx gives only its
// values): a caller that gives up must not leave the others uninformed.
// If a message cannot be sent, the Listener owes the others a flush,
// which it sends as soon as Redis takes it; Announce reports that with an
// error.
func (l *Listener) Announce(ctx context.Context, ids ...string) error {
	if l.Mode().tracking() || len(ids) == 0 {
		return nil
	}
	if err := l.publish(ctx, l.messages(ids)...); err != nil {
		l.owe()
		return err
	}
	return nil
}

// Doubt records, in publish mode, that id may have changed here without
// an announcement (a write that timed out may still land): the Listener
// owes the others a flush, sent as soon as Redis takes it. It makes no
// network call.
func (l *Listener) Doubt() {
	if !l.Mode().tracking() {
		l.owe()
	}
}

// messages returns the announcements of ids, one message each.
func (l *Listener) messages(ids []string) []string {
	msgs := make([]string, len(ids))
	for i, id := range ids {
		msgs[i] = l.nonce + " " + id
	}
	return msgs
}

// maxLate bounds the ids AnnounceLater keeps: past it, a flush is owed
// instead.
const maxLate = 1024

// AnnounceLater is Announce without waiting, for a caller that must not
// block: the Listener's own goroutine announces ids as soon as Redis takes
// them, in one round trip with whatever else is owed then. Past maxLate
// ids waiting, it owes the others a flush instead. It makes no network
// call.
func (l *Listener) AnnounceLater(ids ...string) {
	if l.Mode().tracking() || len(ids) == 0 {
		return
	}
	l.lateMu.Lock()
	if len(l.late)+len(ids) <= maxLate {
		l.late = append(l.late, ids...)
		ids = nil
	}
	l.lateMu.Unlock()
	if ids != nil {
		l.owed.Store(true)
	}
	l.wakeRepay()
}

// Owed reports whether a flush is owed to the other instances.
func (l *Listener) Owed() bool { return l.owed.Load() }

func (l *Listener) owe() {
	l.owed.Store(true)
	l.wakeRepay()
}

func (l *Listener) wakeRepay() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Listener) publish(ctx context.Context, msgs ...string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	if len(msgs) == 1 {
		return l.client.Publish(ctx, l.channel, msgs[0]).Err()
	}
	_, err := l.client.Pipelined(ctx, func(p goredis.Pipeliner) error { // one round trip
		for _, m := range msgs {
			p.Publish(ctx, l.channel, m)
		}
		return nil
	})
	return err
}

// repay sends the flush owed after a failed announcement, and the
// announcements of AnnounceLater, retrying until Redis takes them. A flush
// message is the nonce alone; it makes the ids waiting needless.
func (l *Listener) repay() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.wake:
		}
		for l.ctx.Err() == nil {
			l.lateMu.Lock()
			ids := l.late
			l.late = nil
			l.lateMu.Unlock()
			msgs := []string{l.nonce}
			if !l.owed.Swap(false) {
				if len(ids) == 0 {
					break
				}
				msgs = l.messages(ids)
			}
			if err := l.publish(l.ctx, msgs...); err != nil {
				l.owed.Store(true) // what was lost: everything
				l.sleep(l.cfg.Timeout)
			}
		}
	}
}

func (l *Listener) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.ctx.Done():
	case <-t.C:
	}
}

func (l *Listener) run() {
	if l.Mode() == ListenAuto {
		mode := ListenPublish
		if l.trackingWorks() {
			mode = ListenTracking
			if l.tracked.perKey {
				mode = ListenPerKey
			}
		}
		if l.ctx.Err() != nil {
			return
		}
		l.mode.Store(int32(mode))
	}
	mode := l.Mode()
	if mode.tracking() {
		l.runTracked(mode)
		return
	}
	channel := l.channel
	var sub interface {
		Subscribe(ctx context.Context, channels ...string) *goredis.PubSub
	} = l.client // a cluster or ring: publish mode on the caller's client
	if l.own != nil {
		sub = l.own
	}
	for l.ctx.Err() == nil {
		ps := sub.Subscribe(l.ctx, channel)
		l.consume(ps, mode)
		ps.Close()
		if l.ctx.Err() == nil {
			l.h.Lost()
			l.sleep(l.cfg.Timeout)
		}
	}
}

// runTracked keeps tracking mode's connection up until Close: it
// connects, reports Confirmed, serves the connection until it breaks (which
// reports Lost), and connects again.
func (l *Listener) runTracked(mode ListenMode) {
	t := l.tracked
	l.wg.Add(1)
	go func() { defer l.wg.Done(); t.flush(l.ctx) }()
	for l.ctx.Err() == nil {
		c, err := t.connect(l.ctx)
		if err != nil {
			if l.ctx.Err() == nil {
				l.h.Lost() // not set up: nothing is reported yet
				l.sleep(l.cfg.Timeout)
			}
			continue
		}
		l.h.Confirmed(mode)
		t.serve(l.ctx, c, func() {
			if l.ctx.Err() == nil {
				l.h.Lost()
			}
		})
		l.sleep(l.cfg.Timeout) // as after any failure: a Redis that drops connections is not hammered
	}
}

// Echoes reports whether a write of this process made now may come back as
// an invalidation: in a tracking mode, while the tracked connection is down
// (writes then go another way), or before the mode is decided.
func (l *Listener) Echoes() bool {
	return l.Mode() != ListenPublish && (l.tracked == nil || !l.tracked.up.Load())
}

// PerKey reports whether the Listener uses, or in ListenAuto may use,
// per-key tracking: then a local copy is kept coherent only if the Tier
// says so (see Tier.GetTracked and Kept).
func (l *Listener) PerKey() bool { return l.tracked != nil && l.tracked.perKey }

// trackingWorks asks Redis, on a connection of its own that it then
// closes, whether it accepts broadcast tracking; it asks again while Redis
// does not answer.
func (l *Listener) trackingWorks() bool {
	if l.own == nil {
		return false
	}
	opt := copyOptions(l.own.Options())
	opt.OnConnect, opt.PoolSize, opt.Dialer = nil, 1, l.dial
	probe := goredis.NewClient(&opt)
	defer probe.Close()
	for l.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.Timeout)
		err := probe.Do(ctx, "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", l.cfg.Prefix).Err()
		cancel()
		switch {
		case err == nil:
			return true
		case refused(err):
			return false // Redis answered no: an in-process Redis, a proxy, an ACL
		}
		l.h.Lost() // not set up: nothing is reported yet
		l.sleep(l.cfg.Timeout)
	}
	return false
}

// refused reports whether err is Redis refusing a command for good (an
// unknown command, a syntax error, no permission), as opposed to a
// failure or a passing state (BUSY, LOADING, MASTERDOWN…) worth a retry.
func refused(err error) bool {
	code, ok := replyCode(err)
	return ok && slices.Contains([]string{"ERR", "NOPERM", "WRONGPASS"}, code)
}

// consume reads the stream until it breaks or the Listener closes.
func (l *Listener) consume(ps *goredis.PubSub, mode ListenMode) {
	stop := context.AfterFunc(l.ctx, func() { ps.Close() }) // unblocks Receive on Close
	defer stop()
	for {
		msg, err := ps.ReceiveTimeout(l.ctx, 5*time.Second)
		if err != nil {
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() && l.ctx.Err() == nil && ps.Ping(l.ctx) == nil {
				continue // quiet, and alive
			}
			if strings.Contains(err.Error(), "unsupported pubsub message payload") {
				l.h.Flushed() // FLUSHDB or FLUSHALL: a nil payload
				continue
			}
			return
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				l.h.Confirmed(mode)
			}
		case *goredis.Message:
			l.apply(m, mode)
		}
	}
}

// apply reports the ids a message names.
func (l *Listener) apply(m *goredis.Message, mode ListenMode) {
	if mode == ListenPublish {
		nonce, id, ok := strings.Cut(m.Payload, " ")
		switch {
		case nonce == l.nonce:
			// our own: the local tier is already right
		case !ok:
			l.h.Flushed() // an instance that could not announce everything
		default:
			l.h.Changed([]string{id})
		}
		return
	}
	keys := m.PayloadSlice
	if m.Payload != "" {
		keys = append(keys, m.Payload)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		if id, ok := strings.CutPrefix(k, l.cfg.Prefix); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		l.h.Changed(ids)
	}
}
