package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// replayScript writes a value only if the key still holds what the
// writer read of it (see compareAndSet), or the value itself (a replay
// that landed, and whose reply was lost): ARGV[1] is the value read if
// ARGV[4] is given (see expect), else its hex SHA-1, "-" for an absent
// key. ARGV[3] is the absolute expiry in unix milliseconds. It returns 1
// when it wrote, 0 when the key had changed since it was read.
var replayScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[2] then
  if ARGV[4] then
    if cur ~= ARGV[1] then return 0 end
  else
    local d = '-'
    if cur then d = redis.sha1hex(cur) end
    if d ~= ARGV[1] then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
`)

// Replay is one write accepted while Redis was unreachable.
type Replay struct {
	ID      string
	Value   []byte
	Expires time.Time // absolute; the key expires then
	Bases   []string  // the values it may replace besides Value itself, spelled by Base; "" for an absent key
}

// mayAccept reports whether w may replace a value of size bytes: whether
// Value or one of its bases has that length.
func (w Replay) mayAccept(size int64) bool {
	if size == int64(len(w.Value)) {
		return true
	}
	for _, b := range w.Bases {
		if baseLen(b) == size {
			return true
		}
	}
	return false
}

// longest is the length of the longest value w may replace: its value's,
// or one of its bases'.
func (w Replay) longest() int64 {
	n := int64(len(w.Value))
	for _, b := range w.Bases {
		n = max(n, baseLen(b))
	}
	return n
}

// accepts reports whether w may replace what its key holds, read as c.
func (w Replay) accepts(c current) bool {
	switch {
	case c.absent:
		return slices.Contains(w.Bases, "")
	case c.other:
		return false
	}
	return bytes.Equal(c.value, w.Value) || slices.Contains(w.Bases, Base(Sum(c.value)))
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
// failed with Err, a reply about that key alone (a key of another type,
// for example); the key is left as it was.
type Outcome struct {
	Applied bool
	Err     error
}

// casAttempts bounds the times compareAndSet reads a key whose value
// changed between its read and its write: a key written that often
// meanwhile is written by someone else, whose value wins.
const casAttempts = 3

// ReplayWrites applies writes, each only if its key is unchanged (see
// Replay.Bases), and reports the outcome of each. It returns an error, and
// no outcomes, when a round trip itself failed (see IsUnreachable) or
// Redis refuses every write for now (OOM, BUSY, MISCONF, NOREPLICAS, or an
// ACL denying a command the replay sends or its script calls: see
// refusesWrites): the writes wait; a reply refusing one write (a key of
// another type) is that write's outcome. Each round trip is bounded by the
// tier's timeout: the caller bounds the bytes it sends at once. An id appears at most once in
// writes: each write is compared with what Redis held before the batch.
//
// The bases are hashes of this process (see Sum), which
// Redis cannot compute: the values the writes replace are read first and
// compared here. On a single node, the writes go as one checked
// transaction (see checked), which costs Redis half the script's work;
// compareAndSet decides what the transaction could not, and every write
// on a cluster.
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
	for range casAttempts {
		if len(rest) == 0 {
			break
		}
		var err error
		if rest, err = t.compareAndSet(ctx, writes, keys, rest, out); err != nil {
			return nil, err
		}
	}
	for _, i := range rest { // changed again and again: a conflict
		out[i] = Outcome{}
	}
	return out, nil
}

// refusesWrites reports whether err is Redis refusing every write for now,
// whatever the key: maxmemory reached with noeviction (OOM), a script
// running past its time (BUSY), a failed snapshot (MISCONF), too few
// replicas (NOREPLICAS), or an ACL that denies a command the replay needs
// (see deniesPermission), until an operator fixes it.
func refusesWrites(err error) bool {
	code, ok := replyCode(err)
	return ok && slices.Contains([]string{"OOM", "BUSY", "MISCONF", "NOREPLICAS"}, code) || deniesPermission(err)
}

// scriptDenied starts Redis 7.0's reply to a command that a script calls
// and the ACL denies its user, an ERR rather than NOPERM: "ERR The user
// executing the script can't run this command or subcommand" (or "can't
// access at least one of the keys mentioned in the command", "can't
// publish to the channel mentioned in the command", "is lacking the
// permissions for the command"), then " script: <sha1>, on
// @user_script:<line>.".
const scriptDenied = "ERR The user executing the script "

// deniesPermission reports whether err is Redis's ACL denying a command:
// NOPERM for a command sent, or, for one called by a script (replayScript,
// probeScript, rangeScript), the ERR reply scriptDenied starts.
func deniesPermission(err error) bool {
	var reply goredis.Error
	if !errors.As(err, &reply) {
		return false
	}
	code, _ := replyCode(err)
	return code == "NOPERM" || strings.HasPrefix(reply.Error(), scriptDenied)
}

// indexes returns 0, 1, …, n-1.
func indexes(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// compareAndSet replays the writes at idx, on any client: it reads what
// their keys hold (see read), compares it here with each write's value and
// bases, and sends each accepted write as replayScript, which writes it
// only if the key still holds what was read, in one pipelined round trip.
// It fills the outcome of each write it decided, and returns those whose
// key changed between the read and the script, to be read again; or the
// error that stops the batch.
func (t *Tier) compareAndSet(ctx context.Context, writes []Replay, keys []string, idx []int, out []Outcome) (again []int, err error) {
	r := reader{pipelined: t.writes().Pipelined, honours: t.honoursCtx || t.fence != nil, scripts: t.replicas}
	cur, err := t.read(ctx, r, writes, keys, idx, false)
	if err != nil {
		return nil, err
	}
	var send []int
	var seen []expectation  // what each write of send expects its key to hold
	budget := maxReplayRead // of the values sent as they were read
	for n, i := range idx {
		switch c := cur[n]; {
		case c.err != nil:
			out[i] = Outcome{Err: c.err}
		case c.changed:
			again = append(again, i)
		case writes[i].accepts(c):
			send = append(send, i)
			seen = append(seen, c.expect(&budget))
		default:
			out[i] = Outcome{} // a conflict
		}
	}
	if len(send) == 0 {
		return again, nil
	}
	_, err = write(t, ctx, "EVALSHA", func(ctx context.Context) (struct{}, error) {
		if err := t.script(ctx, writes, keys, send, seen, true, out); err != nil {
			return struct{}{}, err
		}
		var lost []int // a restarted or flushed Redis lost the script
		for n, i := range send {
			if isNoScript(out[i].Err) {
				lost = append(lost, n)
			}
		}
		if len(lost) == 0 {
			return struct{}{}, nil
		}
		idx, exp := make([]int, len(lost)), make([]expectation, len(lost))
		for k, n := range lost {
			idx[k], exp[k] = send[n], seen[n]
		}
		return struct{}{}, t.script(ctx, writes, keys, idx, exp, false, out)
	})
	if err != nil {
		return nil, err
	}
	for _, i := range send {
		switch err := out[i].Err; {
		case err == nil:
			if !out[i].Applied {
				again = append(again, i) // changed since read
			}
		case refusesWrites(err): // not about the key: every write waits
			return nil, fmt.Errorf("redis: EVALSHA: %w", err)
		default:
			out[i].Err = fmt.Errorf("redis: EVALSHA: %w", err)
		}
	}
	return again, nil
}

// script sends the writes at idx as replayScript, by its digest or whole,
// each expecting its key to hold what seen says (see current.expect), in
// one pipeline, and fills their outcomes; it returns the failed
// infrastructure error, if any.
func (t *Tier) script(ctx context.Context, writes []Replay, keys []string, idx []int, seen []expectation, useSHA bool, out []Outcome) error {
	cmds := make([]*goredis.Cmd, len(idx))
	pcmds, err := t.writes().Pipelined(ctx, func(p goredis.Pipeliner) error {
		for n, i := range idx {
			args := []any{seen[n].arg, writes[i].Value, writes[i].Expires.UnixMilli()}
			if seen[n].literal {
				args = append(args, "v")
			}
			if useSHA {
				cmds[n] = replayScript.EvalSha(ctx, p, keys[i:i+1], args...)
			} else {
				cmds[n] = replayScript.Eval(ctx, p, keys[i:i+1], args...)
			}
		}
		return nil
	})
	if err := pipelineErr(pcmds, err); err != nil {
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

// checked replays writes as one transaction on one connection of the
// Tier's write client, as compareAndSet would, for half its work in Redis:
// it WATCHes their keys and reads what they hold (see read), compares it
// here with each write's value and bases, then sends MULTI, a SET PXAT of
// each write whose key holds one of them, EXEC, which Redis runs only if
// no watched key changed since WATCH (expiry included); with nothing to
// set, UNWATCH instead, so that no WATCH stays on the connection. It fills
// the outcome of each write it decided (applied, or a conflict), and
// returns the others, for compareAndSet: a key of another type, or every
// write when EXEC did not run (a key changed meanwhile, or Redis refused
// WATCH or the transaction, an ACL's denial included). A limit: an ACL
// that denies MULTI alone, WATCH and SET allowed, makes Redis run the SETs
// as they come, unchecked, so a key changed between the read and the SET
// is overwritten (TestReplayWritesWithoutWatchOrMultiIsApplied); an ACL that
// denies the @transaction category denies WATCH too, and the batch goes
// to compareAndSet before any SET is sent.
func (t *Tier) checked(ctx context.Context, writes []Replay, keys []string, out []Outcome) (rest []int, err error) {
	client := t.writes().(*goredis.Client) // the fence's: a single node
	err = client.Watch(ctx, func(tx *goredis.Tx) error {
		cur, err := t.read(ctx, reader{pipelined: tx.Pipelined, honours: true}, writes, keys, indexes(len(writes)), true)
		if err != nil {
			unwatch(t, ctx, tx)
			return err
		}
		apply := make([]bool, len(writes))
		for i, c := range cur {
			if c.err != nil || c.changed { // changed: EXEC will not run
				rest = append(rest, i)
			} else {
				apply[i] = writes[i].accepts(c)
			}
		}
		for i := range writes {
			out[i] = Outcome{Applied: apply[i]} // or a conflict; compareAndSet overwrites rest's
		}
		if !slices.Contains(apply, true) {
			unwatch(t, ctx, tx)
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
	case errors.Is(err, goredis.TxFailedErr), IsReply(err) && !IsUnreachable(err) && (!refusesWrites(err) || deniesPermission(err)):
		// A denial too (of WATCH, MULTI, SET or a read): compareAndSet
		// needs neither WATCH nor MULTI, and meets the denial again, which
		// then stops the batch, if it needs the command.
		clear(out)
		return indexes(len(writes)), nil // EXEC did not run: compareAndSet decides every write
	}
	return nil, err
}

// unwatch ends a transaction that will send no EXEC: its connection goes
// back to the pool, where a WATCH left on it would abort a later batch's
// EXEC (go-redis's Tx does not know of the WATCH, sent as a command of the
// first pipeline). An UNWATCH that fails closes the connection.
func unwatch(t *Tier, ctx context.Context, tx *goredis.Tx) {
	_, _ = bounded(t, ctx, "UNWATCH", true, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, tx.Unwatch(ctx).Err()
	})
}

func isNoScript(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "NOSCRIPT")
}
