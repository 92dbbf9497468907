package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// replayScript writes a value only if the key still holds one of the
// values the writer accepts to replace: ARGV[1] is their hex SHA-1s, each
// followed by a space, "- " standing for an absent key. ARGV[3] is the
// absolute expiry in unix milliseconds. It returns 1 when it wrote, 0 when
// the key had changed.
var replayScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local d = '-'
if cur then d = redis.sha1hex(cur) end
if not string.find(' ' .. ARGV[1], ' ' .. d .. ' ', 1, true) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
`)

// Replay is one write accepted while Redis was unreachable.
type Replay struct {
	ID      string
	Value   []byte
	Expires time.Time // absolute; the key expires then
	Bases   []string  // hex SHA-1s of the values it may replace; "" for an absent key
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

// ReplayWrites applies writes in one pipelined round trip, each only if its
// key is unchanged (see Replay.Bases), and reports the outcome of each. It
// returns an error, and no outcomes, only when the round trip itself failed
// (see IsUnreachable); a reply refusing one write is that write's outcome.
// The call is bounded by the tier's timeout: the caller bounds the bytes
// it sends at once.
func (t *Tier) ReplayWrites(ctx context.Context, writes []Replay) ([]Outcome, error) {
	keys := make([]string, len(writes))
	for i, w := range writes {
		keys[i] = t.key(w.ID)
	}
	// run sends the writes at idx, by script digest or whole, and fills
	// out; it returns the failed infrastructure error, if any.
	run := func(ctx context.Context, idx []int, useSHA bool, out []Outcome) error {
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
			if err != nil && IsUnreachable(err) {
				return err
			}
			out[idx[n]] = Outcome{Applied: err == nil && v == 1, Err: err}
		}
		return nil
	}
	return write(t, ctx, "EVALSHA", func(ctx context.Context) ([]Outcome, error) {
		out := make([]Outcome, len(writes))
		all := make([]int, len(writes))
		for i := range all {
			all[i] = i
		}
		if err := run(ctx, all, true, out); err != nil {
			return nil, err
		}
		var again []int // a restarted or flushed Redis lost the script
		for i, o := range out {
			if isNoScript(o.Err) {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			if err := run(ctx, again, false, out); err != nil {
				return nil, err
			}
		}
		for i, o := range out {
			if o.Err != nil {
				out[i].Err = fmt.Errorf("redis: EVALSHA: %w", o.Err)
			}
		}
		return out, nil
	})
}

func isNoScript(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "NOSCRIPT")
}
