package redis

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"slices"

	goredis "github.com/redis/go-redis/v9"
)

// seed keys Sum's hash, drawn once per process.
var seed = maphash.MakeSeed()

// SumSize is the length of a Sum.
const SumSize = 12

// Sum is what Replay.Bases name v by: a 64-bit hash of v under a seed
// drawn once per process (never 0, so that no Sum is all zeros), then v's
// length (a uint32: Redis's strings are shorter), both big-endian. It
// costs a tenth of a SHA-1 (a store notes one per write of a session it
// does not hold), and Redis cannot compute it: a replay reads the values
// it compares (see ReplayWrites), but only those whose length a base has.
// The hash differs from one process to the next, so bases never leave the
// process that computed them, and a value chosen to collide with another
// needs the seed.
func Sum(v []byte) [SumSize]byte {
	var s [SumSize]byte
	h := maphash.Bytes(seed, v)
	if h == 0 {
		h = 1
	}
	binary.BigEndian.PutUint64(s[:8], h)
	binary.BigEndian.PutUint32(s[8:], uint32(len(v)))
	return s
}

// Base spells s as Replay.Bases do: 24 hex digits.
func Base(s [SumSize]byte) string { return hex.EncodeToString(s[:]) }

// baseLen is the length of the value base names (see Base), or -1 if base
// is not one Base spells ("" for an absent key).
func baseLen(base string) int64 {
	if len(base) != 2*SumSize {
		return -1
	}
	var s [SumSize]byte
	if _, err := hex.Decode(s[:], []byte(base)); err != nil {
		return -1
	}
	return int64(binary.BigEndian.Uint32(s[8:]))
}

// current is what a key held when a replay read it.
type current struct {
	absent  bool
	value   []byte
	other   bool  // no value the write may replace, by its length alone; read no further than maxSpeculative
	changed bool  // changed between the round trips that read it: read it again
	err     error // a reply about this key alone (a key of another type)
}

// expectation is what replayScript expects a key to hold: the value read
// itself (literal), or its hex SHA-1, "-" for an absent key.
type expectation struct {
	arg     string
	literal bool
}

// expect is what replayScript expects the key to hold, if it still holds
// c: the value itself if it is at most maxSpeculative bytes and within
// *budget, which it takes from (Redis compares it at no cost, where a
// SHA-1 of 1 KiB costs it more than the rest of the script; the budget
// bounds what a pipeline of scripts carries beside its writes), else its
// hex SHA-1.
func (c current) expect(budget *int) expectation {
	switch {
	case c.absent:
		return expectation{arg: "-"}
	case len(c.value) <= maxSpeculative && len(c.value) <= *budget:
		*budget -= len(c.value)
		return expectation{arg: string(c.value), literal: true}
	}
	d := sha1.Sum(c.value)
	return expectation{arg: hex.EncodeToString(d[:])}
}

// pipelineFunc is Pipelined, of a client or of a transaction.
type pipelineFunc func(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error)

// probeScript and rangeScript are probe's and getRange's commands as
// scripts, which a cluster client sends to the key's primary: it may send
// a pipeline of read-only commands to replicas (ReadOnly, RouteByLatency,
// RouteRandomly), which lag, and a replay compares with the primary,
// where its script writes. Sent whole (EVAL), they cannot meet NOSCRIPT.
const (
	probeScript = `local n = redis.call('STRLEN', KEYS[1])
local e = redis.call('EXISTS', KEYS[1])
if n <= tonumber(ARGV[1]) then return {e, n, redis.call('GETRANGE', KEYS[1], 0, ARGV[1])} end
return {e, n}`
	rangeScript = "return redis.call('GETRANGE', KEYS[1], 0, ARGV[1])"
)

// reader is how read reaches Redis: through pipelined, honouring the
// context's deadline itself or not (see bounded), with plain commands, or
// with probeScript and rangeScript (see them) when a cluster client may
// read from replicas.
type reader struct {
	pipelined pipelineFunc
	honours   bool
	scripts   bool
}

// pipelineErr is the error of a pipeline's round trip as a whole, from
// Pipelined's err and cmds: a failure (see IsUnreachable), or a reply that
// none of the commands carries (a new connection's handshake refused:
// BUSY, WRONGPASS), which leaves them all unanswered; nil when each
// command carries its own outcome.
func pipelineErr(cmds []goredis.Cmder, err error) error {
	if err == nil || IsUnreachable(err) {
		return err
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return nil
		}
	}
	return err
}

// read reads what the keys at idx hold and returns it in idx's order.
// Round trip one: its length, whether each key exists, and its first
// bytes, up to the longest value the write may replace (its value's
// length, or one of its bases': see Sum), if that is at most
// maxSpeculative and the values read in this round trip take at most
// maxReplayRead bytes, unless the write is of a new session (its only
// base an absent key, which it most likely is), after WATCH of them all if
// watch. It may open the connection (a Fence closed the others): a dial
// and a handshake of up to three round trips, and the call; bounded by the
// timeout alone, a link whose round trip is over a quarter of it would
// time out on every retry, so four times the timeout bound it. Then the
// values round one did not read, and the write may replace, no more than
// the length said and a byte, in round trips of at most maxReplayRead
// bytes each, a longer value alone, each bounded by the timeout. A value
// of a length neither the write's value nor a base has is a conflict, or
// one longer than Config.MaxValueBytes (none this store saw or wrote):
// it is read no further than maxSpeculative bytes, in round trip one, so
// a replay reads no more than it could write, and a huge value of another
// writer is never read. It returns an error when a round trip failed (see
// pipelineErr), WATCH was refused (EXEC would be unconditional), or Redis
// refuses every write for now (see refusesWrites: a BUSY script refuses
// reads too, and an ACL that denies a read command, STRLEN, EXISTS or
// GETRANGE, or the script that calls it, denies every replay).
func (t *Tier) read(ctx context.Context, r reader, writes []Replay, keys []string, idx []int, watch bool) ([]current, error) {
	cur := make([]current, len(idx))
	var watched *goredis.Cmd
	probes := make([]func() probed, len(idx))
	op := "STRLEN"
	if watch {
		op = "WATCH"
	}
	_, err := boundedBy(t, ctx, op, r.honours, 4*t.timeout, func(ctx context.Context) (struct{}, error) {
		cmds, err := r.pipelined(ctx, func(p goredis.Pipeliner) error {
			if watch {
				args := make([]any, 0, len(idx)+1)
				args = append(args, "WATCH")
				for _, i := range idx {
					args = append(args, keys[i])
				}
				watched = p.Do(ctx, args...)
			}
			budget := int64(maxReplayRead)
			for n, i := range idx {
				upTo := writes[i].longest()
				if t.maxValue > 0 {
					upTo = min(upTo, int64(t.maxValue))
				}
				if upTo > min(budget, maxSpeculative) || !slices.ContainsFunc(writes[i].Bases, func(b string) bool { return b != "" }) {
					upTo = -1 // its length only: too long, or a new session's key, most likely absent
				} else {
					budget -= upTo
				}
				probes[n] = r.probe(ctx, p, keys[i], upTo)
			}
			return nil
		})
		return struct{}{}, pipelineErr(cmds, err)
	})
	if err != nil {
		return nil, err
	}
	if watched != nil && watched.Err() != nil { // refused (an ACL, a renamed command)
		return nil, fmt.Errorf("redis: WATCH: %w", watched.Err())
	}
	var toRead []int // positions in idx
	sizes := make([]int64, len(idx))
	for n := range idx {
		pr := probes[n]()
		sizes[n] = pr.size
		switch {
		case refusesWrites(pr.err):
			return nil, fmt.Errorf("redis: STRLEN: %w", pr.err)
		case pr.err != nil: // a key of another type
			cur[n].err = fmt.Errorf("redis: STRLEN: %w", pr.err)
		case !pr.exists:
			cur[n].absent = true
		case t.maxValue > 0 && pr.size > int64(t.maxValue), !writes[idx[n]].mayAccept(pr.size):
			cur[n].other = true // longer than any value this store saw or wrote, or than any the write may replace
		case pr.size == 0:
			cur[n].value = []byte{}
		case pr.read && int64(len(pr.value)) == pr.size:
			cur[n].value = pr.value
		default: // not read, or changed between STRLEN and GETRANGE
			toRead = append(toRead, n)
		}
	}
	for len(toRead) > 0 {
		round, budget := 1, int64(maxReplayRead)-sizes[toRead[0]] // a longer value alone
		for round < len(toRead) && sizes[toRead[round]] <= budget {
			budget -= sizes[toRead[round]]
			round++
		}
		if err := t.readValues(ctx, r, keys, idx, toRead[:round], sizes, cur); err != nil {
			return nil, err
		}
		toRead = toRead[round:]
	}
	return cur, nil
}

// probed is what read's first round trip learnt of a key.
type probed struct {
	exists bool
	size   int64  // 0 for a missing key
	read   bool   // value was asked for
	value  []byte // up to a byte past what was asked
	err    error
}

// probe queues the reading of whether key exists, its length, and, if
// upTo >= 0, its first upTo+1 bytes, read once the pipeline ran.
func (r reader) probe(ctx context.Context, p goredis.Pipeliner, key string, upTo int64) func() probed {
	if r.scripts {
		c := p.Eval(ctx, probeScript, []string{key}, upTo)
		return func() probed {
			v, err := c.Slice()
			if err != nil {
				return probed{err: err}
			}
			if len(v) < 2 {
				return probed{err: fmt.Errorf("redis: %d replies to STRLEN and EXISTS", len(v))}
			}
			e, _ := v[0].(int64)
			n, _ := v[1].(int64)
			pr := probed{exists: e == 1, size: n}
			if len(v) == 3 {
				s, _ := v[2].(string)
				pr.read, pr.value = true, []byte(s)
			}
			return pr
		}
	}
	// STRLEN first: a key deleted between the two is then absent, as it
	// is, rather than an empty value.
	size, exists := p.StrLen(ctx, key), p.Exists(ctx, key)
	var value *goredis.StringCmd
	if upTo >= 0 {
		value = p.GetRange(ctx, key, 0, upTo)
	}
	return func() probed {
		if err := cmp.Or(exists.Err(), size.Err()); err != nil {
			return probed{err: err}
		}
		pr := probed{exists: exists.Val() == 1, size: size.Val()}
		if value != nil && value.Err() == nil {
			pr.read, pr.value = true, []byte(value.Val())
		}
		return pr
	}
}

// getRange queues the reading of key's first size+1 bytes.
func (r reader) getRange(ctx context.Context, p goredis.Pipeliner, key string, size int64) func() ([]byte, error) {
	if r.scripts {
		c := p.Eval(ctx, rangeScript, []string{key}, size)
		return func() ([]byte, error) {
			v, err := c.Text()
			return []byte(v), err
		}
	}
	return p.GetRange(ctx, key, 0, size).Bytes
}

const (
	// maxReplayRead bounds the values read in one round trip, as the
	// caller of ReplayWrites bounds those it writes.
	maxReplayRead = 512 << 10
	// maxSpeculative bounds a value read in the first round trip, before
	// its length is known: a session's, or the first bytes of a value of
	// another length, a conflict (see read).
	maxSpeculative = 16 << 10
)

// readValues reads the values of the keys at the positions ns of idx in
// one round trip, each no further than a byte past its size.
func (t *Tier) readValues(ctx context.Context, r reader, keys []string, idx, ns []int, sizes []int64, cur []current) error {
	vals := make([]func() ([]byte, error), len(ns))
	_, err := bounded(t, ctx, "GETRANGE", r.honours, func(ctx context.Context) (struct{}, error) {
		cmds, err := r.pipelined(ctx, func(p goredis.Pipeliner) error {
			for k, n := range ns {
				vals[k] = r.getRange(ctx, p, keys[idx[n]], sizes[n])
			}
			return nil
		})
		return struct{}{}, pipelineErr(cmds, err)
	})
	if err != nil {
		return err
	}
	for k, n := range ns {
		v, err := vals[k]()
		code, _ := replyCode(err)
		switch {
		case refusesWrites(err):
			return fmt.Errorf("redis: GETRANGE: %w", err)
		case code == "WRONGTYPE", err == nil && int64(len(v)) != sizes[n]:
			cur[n].changed = true // since its length was read
		case err != nil: // refused about this key alone
			cur[n].err = fmt.Errorf("redis: GETRANGE: %w", err)
		default:
			cur[n].value = v
		}
	}
	return nil
}
