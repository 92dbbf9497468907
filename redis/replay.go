package redis

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// replayScript writes a value only if the key still holds one of the
// values the writer accepts to replace, or the value itself (a replay that
// landed, and whose reply was lost): ARGV[1] is their hex SHA-1s, each
// followed by a space, "- " standing for an absent key. ARGV[3] is the
// absolute expiry in unix milliseconds. It returns 1 when it wrote, 0 when
// the key had changed.
var replayScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[2] then
  local d = '-'
  if cur then d = redis.sha1hex(cur) end
  if not string.find(' ' .. ARGV[1], ' ' .. d .. ' ', 1, true) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
`)

// Replay is one write accepted while Redis was unreachable.
type Replay struct {
	ID      string
	Value   []byte
	Expires time.Time // absolute; the key expires then
	Bases   []string  // hex SHA-1s of the values it may replace besides Value itself; "" for an absent key
}

// bases encodes w.Bases for replayScript.
func (w Replay) bases() string {
	var b strings.Builder
	for _, d := range w.Bases {
		if d == "" {
			d = "-"
		}
		b.WriteString(d)
		b.WriteByte(' ')
	}
	return b.String()
}

// Ping checks that Redis answers.
func (t *Tier) Ping(ctx context.Context) error {
	_, err := call(t, ctx, "PING", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, t.client.Ping(ctx).Err()
	})
	return err
}

// Publish sends message on channel.
func (t *Tier) Publish(ctx context.Context, channel, message string) error {
	_, err := call(t, ctx, "PUBLISH", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, t.client.Publish(ctx, channel, message).Err()
	})
	return err
}

// DeleteMany removes ids in one pipelined round trip.
func (t *Tier) DeleteMany(ctx context.Context, ids []string) error {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = t.key(id)
	}
	_, err := write(t, ctx, "DEL", func(ctx context.Context) (struct{}, error) {
		_, err := t.writes().Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, k)
			}
			return nil
		})
		return struct{}{}, err
	})
	return err
}

// Outcome is what ReplayWrites did with one write: applied, a conflict
// (neither Applied nor Err: the key had changed, Redis's value stays), or
// failed with Err, a reply about that key alone (a WRONGTYPE key, for
// example); the key is left as it was.
type Outcome struct {
	Applied bool
	Err     error
}

// ReplayWrites applies writes, each only if its key is unchanged (see
// Replay.Bases), and reports the outcome of each. It returns an error, and
// no outcomes, when a round trip itself failed (see IsUnreachable) or
// Redis refuses every write for now (OOM, BUSY, MISCONF, NOREPLICAS): the
// writes wait; a reply refusing one write (a key of another type) is that
// write's outcome. Each round trip is bounded by the tier's timeout: the
// caller bounds the bytes it sends at once. An id appears at most once in
// writes: each write is compared with what Redis held before the batch.
//
// On a single node, the writes go as one checked transaction (see
// checked), which costs Redis half the script's work; the script decides,
// in one pipelined round trip, what the transaction could not, and every
// write on a cluster.
func (t *Tier) ReplayWrites(ctx context.Context, writes []Replay) ([]Outcome, error) {
	keys := make([]string, len(writes))
	for i, w := range writes {
		keys[i] = t.key(w.ID)
	}
	out := make([]Outcome, len(writes))
	rest := indexes(len(writes))
	if t.fence != nil {
		var err error
		if rest, err = t.checked(ctx, writes, keys, out); err != nil {
			return nil, err
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	_, err := write(t, ctx, "EVALSHA", func(ctx context.Context) (struct{}, error) {
		if err := t.script(ctx, writes, keys, rest, true, out); err != nil {
			return struct{}{}, err
		}
		var again []int // a restarted or flushed Redis lost the script
		for _, i := range rest {
			if isNoScript(out[i].Err) {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			return struct{}{}, t.script(ctx, writes, keys, again, false, out)
		}
		return struct{}{}, nil
	})
	if err != nil {
		return nil, err
	}
	for _, i := range rest {
		switch err := out[i].Err; {
		case err == nil:
		case refusesWrites(err): // not about the key: every write waits
			return nil, fmt.Errorf("redis: EVALSHA: %w", err)
		default:
			out[i].Err = fmt.Errorf("redis: EVALSHA: %w", err)
		}
	}
	return out, nil
}

// refusesWrites reports whether err is Redis refusing every write for now,
// whatever the key: maxmemory reached with noeviction (OOM), a script
// running past its time (BUSY), a failed snapshot (MISCONF), too few
// replicas (NOREPLICAS).
func refusesWrites(err error) bool {
	code, ok := replyCode(err)
	return ok && slices.Contains([]string{"OOM", "BUSY", "MISCONF", "NOREPLICAS"}, code)
}

// indexes returns 0, 1, …, n-1.
func indexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// script sends the writes at idx as replayScript, by its digest or whole,
// in one pipeline, and fills their outcomes; it returns the failed
// infrastructure error, if any.
func (t *Tier) script(ctx context.Context, writes []Replay, keys []string, idx []int, useSHA bool, out []Outcome) error {
	cmds := make([]*goredis.Cmd, len(idx))
	_, err := t.writes().Pipelined(ctx, func(p goredis.Pipeliner) error {
		for n, i := range idx {
			w := writes[i]
			args := []any{w.bases(), w.Value, w.Expires.UnixMilli()}
			if useSHA {
				cmds[n] = replayScript.EvalSha(ctx, p, keys[i:i+1], args...)
			} else {
				cmds[n] = replayScript.Eval(ctx, p, keys[i:i+1], args...)
			}
		}
		return nil
	})
	if IsUnreachable(err) {
		return err
	}
	for n, c := range cmds {
		v, err := c.Int()
		if IsUnreachable(err) {
			return err
		}
		out[idx[n]] = Outcome{Applied: err == nil && v == 1, Err: err}
	}
	return nil
}

// maxReplayRead bounds the values a checked transaction reads in one round
// trip, as the caller bounds those it writes (see ReplayWrites): a write
// whose key holds more than is left of it goes by the script, which reads
// nothing back.
const maxReplayRead = 512 << 10

// checked replays writes as one transaction on one connection of the
// Tier's write client, as the script would, for half its work in Redis.
// Round trip one: WATCH their keys, and the length of each (bounded by
// four times the timeout: it may open the connection). Two: read the
// values to compare (within maxReplayRead; a value longer than maxValue
// is none this store saw or wrote, so a conflict). Each is compared here
// with the write's value and bases. Three: MULTI, a SET PXAT of each write
// whose key holds one of them, EXEC, which Redis runs only if no watched
// key changed since WATCH (expiry included); with nothing to set, UNWATCH
// instead, so that no WATCH stays on the connection. The others are each
// bounded by the timeout on their own, so that a replay fits wherever a
// single call does. It fills the outcome of each write it decided
// (applied, or a conflict), and returns the others, for the script: a key
// of another type, a value past the read budget, or every write when EXEC
// did not run (a key changed meanwhile, or Redis refused WATCH or the
// transaction).
func (t *Tier) checked(ctx context.Context, writes []Replay, keys []string, out []Outcome) (rest []int, err error) {
	client := t.writes().(*goredis.Client) // the fence's: a single node
	err = client.Watch(ctx, func(tx *goredis.Tx) error {
		var watch *goredis.Cmd
		exists := make([]*goredis.IntCmd, len(writes))
		sizes := make([]*goredis.IntCmd, len(writes))
		// It reads only, and may open the connection (a Fence closed the
		// others): a dial and a handshake of up to three round trips, and
		// the call. Bounded by the timeout alone, a link whose round trip
		// is over a quarter of it would time out on every retry.
		_, err := boundedBy(t, ctx, "WATCH", true, 4*t.timeout, func(ctx context.Context) (struct{}, error) {
			_, err := tx.Pipelined(ctx, func(p goredis.Pipeliner) error {
				args := append(make([]any, 0, len(keys)+1), "WATCH")
				for _, k := range keys {
					args = append(args, k)
				}
				watch = p.Do(ctx, args...)
				for i, k := range keys {
					exists[i], sizes[i] = p.Exists(ctx, k), p.StrLen(ctx, k) // STRLEN is 0 for a missing key
				}
				return nil
			})
			return struct{}{}, err
		})
		if IsUnreachable(err) {
			return err
		}
		if err := watch.Err(); err != nil { // refused (an ACL, a renamed command): EXEC would be unconditional
			return err
		}
		apply := make([]bool, len(writes))
		var read []int // keys whose value is compared
		budget := int64(maxReplayRead)
		for i, w := range writes {
			switch size := sizes[i].Val(); {
			case exists[i].Err() != nil || sizes[i].Err() != nil: // a key of another type
				rest = append(rest, i)
			case exists[i].Val() == 0:
				apply[i] = slices.Contains(w.Bases, "")
			case t.maxValue > 0 && size > int64(t.maxValue): // a conflict
			case size == 0:
				apply[i] = len(w.Value) == 0 || slices.Contains(w.Bases, digestHex(nil))
			case size > budget:
				rest = append(rest, i)
			default:
				budget -= size
				read = append(read, i)
			}
		}
		if len(read) > 0 {
			vals := make([]*goredis.StringCmd, len(read))
			_, err := bounded(t, ctx, "GETRANGE", true, func(ctx context.Context) (struct{}, error) {
				_, err := tx.Pipelined(ctx, func(p goredis.Pipeliner) error {
					for n, i := range read {
						vals[n] = p.GetRange(ctx, keys[i], 0, sizes[i].Val()) // no more than STRLEN said, and a byte
					}
					return nil
				})
				return struct{}{}, err
			})
			if IsUnreachable(err) {
				return err
			}
			for n, i := range read {
				cur, err := vals[n].Bytes()
				if err != nil { // changed since STRLEN: EXEC will not run
					rest = append(rest, i)
					continue
				}
				apply[i] = bytes.Equal(cur, writes[i].Value) || slices.Contains(writes[i].Bases, digestHex(cur))
			}
		}
		for i := range writes {
			out[i] = Outcome{Applied: apply[i]} // or a conflict; the script overwrites rest's
		}
		if !slices.Contains(apply, true) {
			// The connection goes back to the pool: a WATCH left on it
			// would abort a later batch's EXEC. An UNWATCH that fails
			// closes the connection.
			_, _ = bounded(t, ctx, "UNWATCH", true, func(ctx context.Context) (struct{}, error) {
				return struct{}{}, tx.Unwatch(ctx).Err()
			})
			return nil
		}
		_, err = write(t, ctx, "EXEC", func(ctx context.Context) (struct{}, error) {
			_, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
				for i, w := range writes {
					if apply[i] {
						p.Do(ctx, "SET", keys[i], w.Value, "PXAT", w.Expires.UnixMilli())
					}
				}
				return nil
			})
			return struct{}{}, err
		})
		return err
	})
	switch {
	case err == nil:
		return rest, nil
	case errors.Is(err, goredis.TxFailedErr), IsReply(err) && !IsUnreachable(err):
		clear(out)
		return indexes(len(writes)), nil // EXEC did not run: the script decides every write
	}
	return nil, err
}

// digestHex is v's SHA-1 in hex, as Replay.Bases spell it.
func digestHex(v []byte) string {
	d := sha1.Sum(v)
	return hex.EncodeToString(d[:])
}

func isNoScript(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "NOSCRIPT")
}
