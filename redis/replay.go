package redis

import (
	"context"
	"errors"
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
	_, err := call(t, ctx, "DEL", func(ctx context.Context) (struct{}, error) {
		_, err := t.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, k)
			}
			return nil
		})
		return struct{}{}, err
	})
	return err
}

// ReplayWrites applies writes in one pipelined round trip, each only if its
// key is unchanged (see Replay.Base), and reports which were applied.
func (t *Tier) ReplayWrites(ctx context.Context, writes []Replay) (applied []bool, err error) {
	run := func(ctx context.Context, useSHA bool) ([]bool, error) {
		cmds := make([]*goredis.Cmd, len(writes))
		_, err := t.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, w := range writes {
				keys := []string{t.key(w.ID)}
				args := []any{w.bases(), w.Value, w.Expires.UnixMilli()}
				if useSHA {
					cmds[i] = replayScript.EvalSha(ctx, p, keys, args...)
				} else {
					cmds[i] = replayScript.Eval(ctx, p, keys, args...)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out := make([]bool, len(cmds))
		for i, c := range cmds {
			n, err := c.Int()
			if err != nil {
				return nil, err
			}
			out[i] = n == 1
		}
		return out, nil
	}
	return call(t, ctx, "EVALSHA", func(ctx context.Context) ([]bool, error) {
		applied, err := run(ctx, true)
		if err != nil && isNoScript(err) { // a restarted or flushed Redis
			return run(ctx, false)
		}
		return applied, err
	})
}

func isNoScript(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "NOSCRIPT")
}
