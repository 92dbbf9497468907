package redis

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"

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
	other   bool  // no value the write may replace, by its length alone; not read
	changed bool  // changed between the round trips that read it: read it again
	err     error // a reply about this key alone (a key of another type)
}

// sha1 is what replayScript expects the key to hold, if it still holds c:
// the value's hex SHA-1, or "-" for an absent key.
func (c current) sha1() string {
	if c.absent {
		return "-"
	}
	d := sha1.Sum(c.value)
	return hex.EncodeToString(d[:])
}

// pipelineFunc is Pipelined, of a client or of a transaction.
type pipelineFunc func(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error)

// read reads what the keys at idx hold, through pipelined, honouring the
// context's deadline itself or not (see bounded), and returns it in idx's
// order. Round trip one: EXISTS and STRLEN of each key, after WATCH of
// them all if watch. It may open the connection (a Fence closed the
// others): a dial and a handshake of up to three round trips, and the
// call; bounded by the timeout alone, a link whose round trip is over a
// quarter of it would time out on every retry, so four times the timeout
// bound it. Then their values, no more than STRLEN said and a byte, in
// round trips of at most maxReplayRead bytes each, a longer value alone,
// each bounded by the timeout: only the values of a length the write's
// value or one of its bases has (see Sum) are read, so a replay reads no
// more than it could write, and a huge value of another writer is a
// conflict, decided without reading it; nor is a value longer than
// Config.MaxValueBytes, none this store saw or wrote. It returns an error when a round trip failed, WATCH was
// refused (EXEC would be unconditional), or Redis refuses every write
// for now (see refusesWrites: a BUSY script refuses reads too).
func (t *Tier) read(ctx context.Context, pipelined pipelineFunc, honours bool, writes []Replay, keys []string, idx []int, watch bool) ([]current, error) {
	cur := make([]current, len(idx))
	var watched *goredis.Cmd
	exists := make([]*goredis.IntCmd, len(idx))
	sizes := make([]*goredis.IntCmd, len(idx))
	op := "STRLEN"
	if watch {
		op = "WATCH"
	}
	_, err := boundedBy(t, ctx, op, honours, 4*t.timeout, func(ctx context.Context) (struct{}, error) {
		_, err := pipelined(ctx, func(p goredis.Pipeliner) error {
			if watch {
				args := make([]any, 0, len(idx)+1)
				args = append(args, "WATCH")
				for _, i := range idx {
					args = append(args, keys[i])
				}
				watched = p.Do(ctx, args...)
			}
			for n, i := range idx {
				exists[n], sizes[n] = p.Exists(ctx, keys[i]), p.StrLen(ctx, keys[i]) // STRLEN is 0 for a missing key
			}
			return nil
		})
		return struct{}{}, err
	})
	if IsUnreachable(err) {
		return nil, err
	}
	if watched != nil && watched.Err() != nil { // refused (an ACL, a renamed command)
		return nil, fmt.Errorf("redis: WATCH: %w", watched.Err())
	}
	var toRead []int // positions in idx
	for n := range idx {
		err := exists[n].Err()
		if err == nil {
			err = sizes[n].Err()
		}
		switch size := sizes[n].Val(); {
		case refusesWrites(err):
			return nil, fmt.Errorf("redis: STRLEN: %w", err)
		case err != nil: // a key of another type
			cur[n].err = fmt.Errorf("redis: STRLEN: %w", err)
		case exists[n].Val() == 0:
			cur[n].absent = true
		case t.maxValue > 0 && size > int64(t.maxValue), !writes[idx[n]].mayAccept(size):
			cur[n].other = true // longer than any value this store saw or wrote, or than any the write may replace
		case size == 0:
			cur[n].value = []byte{}
		default:
			toRead = append(toRead, n)
		}
	}
	for len(toRead) > 0 {
		round, budget := 1, int64(maxReplayRead)-sizes[toRead[0]].Val() // a longer value alone
		for round < len(toRead) && sizes[toRead[round]].Val() <= budget {
			budget -= sizes[toRead[round]].Val()
			round++
		}
		if err := t.readValues(ctx, pipelined, honours, keys, idx, toRead[:round], sizes, cur); err != nil {
			return nil, err
		}
		toRead = toRead[round:]
	}
	return cur, nil
}

// maxReplayRead bounds the values read in one round trip, as the caller
// of ReplayWrites bounds those it writes.
const maxReplayRead = 512 << 10

// readValues reads the values of the keys at the positions ns of idx in
// one round trip, each no further than a byte past the size STRLEN gave.
func (t *Tier) readValues(ctx context.Context, pipelined pipelineFunc, honours bool, keys []string, idx, ns []int, sizes []*goredis.IntCmd, cur []current) error {
	vals := make([]*goredis.StringCmd, len(ns))
	_, err := bounded(t, ctx, "GETRANGE", honours, func(ctx context.Context) (struct{}, error) {
		_, err := pipelined(ctx, func(p goredis.Pipeliner) error {
			for k, n := range ns {
				vals[k] = p.GetRange(ctx, keys[idx[n]], 0, sizes[n].Val())
			}
			return nil
		})
		return struct{}{}, err
	})
	if IsUnreachable(err) {
		return err
	}
	for k, n := range ns {
		v, err := vals[k].Bytes()
		switch {
		case refusesWrites(err):
			return fmt.Errorf("redis: GETRANGE: %w", err)
		case err != nil || int64(len(v)) != sizes[n].Val():
			cur[n].changed = true // since STRLEN
		default:
			cur[n].value = v
		}
	}
	return nil
}
