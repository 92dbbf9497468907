package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/sessiontier/sessiontier/redis"
)

// Prefix is where every key of the suite lives. On a Redis the suite did
// not start (--redis) it writes and deletes nothing else, and removes
// everything under it when it ends.
const Prefix = "sessiontier-bench:"

// key is the Redis key of a session, for every target.
func key(id string) string { return Prefix + id }

// State is what Redis held when a target started a workload: every
// target of a workload must start from the same one.
type State struct {
	Keys   int64  // keys under Prefix
	Digest string // SHA-256 of the keys under Prefix and their values, sorted; "" unless Config.CheckState
}

// reset brings Redis to the state every (workload, target) starts from:
// nothing under Prefix but the cfg.Sessions sessions. On a server the
// suite started it flushes everything; on the user's it deletes the keys
// under Prefix only.
func (s *Server) reset(ctx context.Context, cfg Config) (State, error) {
	if err := s.clear(ctx); err != nil {
		return State{}, fmt.Errorf("bench: clearing Redis: %w", err)
	}
	if err := populate(ctx, s, cfg); err != nil {
		return State{}, fmt.Errorf("bench: writing the sessions: %w", err)
	}
	return s.state(ctx, cfg.CheckState)
}

// clear removes what the suite wrote.
func (s *Server) clear(ctx context.Context) error {
	if s.Kind != "external" {
		return s.admin.FlushAll(ctx).Err()
	}
	return s.scan(ctx, func(keys []string) error { return s.admin.Unlink(ctx, keys...).Err() })
}

// scan calls fn with the keys under Prefix, a page at a time.
func (s *Server) scan(ctx context.Context, fn func(keys []string) error) error {
	var cursor uint64
	for {
		keys, next, err := s.admin.Scan(ctx, cursor, redis.MatchPrefix(Prefix), 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// state counts, and with digest hashes, what is under Prefix.
func (s *Server) state(ctx context.Context, digest bool) (State, error) {
	var all []string
	err := s.scan(ctx, func(keys []string) error { all = append(all, keys...); return nil })
	if err != nil {
		return State{}, err
	}
	st := State{Keys: int64(len(all))}
	if !digest {
		return st, nil
	}
	slices.Sort(all)
	all = slices.Compact(all) // SCAN may return a key twice
	st.Keys = int64(len(all))
	h := sha256.New()
	for i := 0; i < len(all); i += 1000 {
		page := all[i:min(i+1000, len(all))]
		vals, err := s.admin.MGet(ctx, page...).Result()
		if err != nil {
			return State{}, err
		}
		for j, k := range page {
			v, _ := vals[j].(string)
			fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(v), v)
		}
	}
	st.Digest = hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// Cleanup removes everything the suite wrote under Prefix on the user's
// Redis; on a server the suite started there is nothing to keep.
func (s *Server) Cleanup(ctx context.Context) error {
	if s.Kind != "external" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return s.clear(ctx)
}
