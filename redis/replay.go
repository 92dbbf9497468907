package redis

import (
	"context"
	"errors"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// replayScript writes a value only if the key still holds what the writer
// last saw: ARGV[1] is the hex SHA-1 of that value, or "" for a key that
// must be absent. ARGV[3] is the absolute expiry in unix milliseconds.
// It returns 1 when it wrote, 0 when the key had changed.
var replayScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur then return 0 end
elseif (not cur) or redis.sha1hex(cur) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
`)

// Replay is one write accepted while Redis was unreachable.
type Replay struct {
	ID      string
	Value   []byte
	Expires time.Time // absolute; the key expires then
	Base    string    // hex SHA-1 of the value it replaces; "" if it creates the key
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

// ReplayWrites applies writes in one pipelined round trip, each only if its
// key is unchanged (see Replay.Base), and reports which were applied.
func (t *Tier) ReplayWrites(ctx context.Context, writes []Replay) (applied []bool, err error) {
	run := func(ctx context.Context, useSHA bool) ([]bool, error) {
		cmds := make([]*goredis.Cmd, len(writes))
		_, err := t.writes().Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, w := range writes {
				keys := []string{t.key(w.ID)}
				args := []any{w.Base, w.Value, w.Expires.UnixMilli()}
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
	return write(t, ctx, "EVALSHA", func(ctx context.Context) ([]bool, error) {
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
