package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

const scanCount = 100

// Scan calls fn with every id under the prefix and its value, walking every
// master node with SCAN (never KEYS). Each round trip is bounded by the
// tier's timeout. A key that vanishes during the walk is passed over; a key
// of another type (WRONGTYPE) or a value longer than Config.MaxValueBytes
// (read no further than one byte past the limit) is skipped and counted in
// skipped, which is valid even when err is not nil. The value passed to fn
// is fn's to keep.
func (t *Tier) Scan(ctx context.Context, fn func(id string, value []byte) error) (skipped int, err error) {
	match := MatchPrefix(t.prefix)
	walk := func(ctx context.Context, node goredis.UniversalClient) error {
		var cursor uint64
		type page struct {
			keys   []string
			cursor uint64
		}
		for {
			from := cursor // the closure may outlive this iteration
			p, err := call(t, ctx, "SCAN", func(ctx context.Context) (page, error) {
				keys, next, err := node.Scan(ctx, from, match, scanCount).Result()
				return page{keys, next}, err
			})
			if err != nil {
				return err
			}
			keys := p.keys
			cursor = p.cursor
			n, err := t.getBatch(ctx, keys, fn)
			skipped += n // ForEachMaster walks the nodes one at a time
			if err != nil {
				return err
			}
			if cursor == 0 {
				return nil
			}
		}
	}
	switch c := t.client.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error { return walk(ctx, node) })
	case *goredis.Ring:
		err = c.ForEachShard(ctx, func(ctx context.Context, node *goredis.Client) error { return walk(ctx, node) })
	default:
		err = walk(ctx, t.client)
	}
	return skipped, err
}

// getBatch reads keys in one pipelined round trip, as Get does, and calls
// fn with each string value found; it returns how many keys it skipped.
func (t *Tier) getBatch(ctx context.Context, keys []string, fn func(id string, value []byte) error) (skipped int, err error) {
	if len(keys) == 0 {
		return 0, nil
	}
	max := t.maxValue
	type read struct {
		get  *goredis.StringCmd
		pttl *goredis.DurationCmd // nil without a limit: GET tells a missing key
	}
	reads, err := call(t, ctx, "GET", func(ctx context.Context) ([]read, error) {
		reads := make([]read, len(keys))
		_, err := t.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range keys {
				if max > 0 {
					reads[i] = read{p.GetRange(ctx, k, 0, int64(max)), p.PTTL(ctx, k)}
				} else {
					reads[i].get = p.Get(ctx, k)
				}
			}
			return nil
		})
		if err != nil && !IsUnreachable(err) {
			err = nil // a reply about one key: looked at below
		}
		return reads, err
	})
	if err != nil {
		return 0, err
	}
	for i, r := range reads {
		v, err := r.get.Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
			continue
		case isWrongType(err):
			skipped++
			continue
		case err != nil:
			return skipped, fmt.Errorf("redis: GET: %w", err)
		case r.pttl != nil && r.pttl.Val() == -2: // vanished: GETRANGE gave ""
			continue
		case max > 0 && len(v) > max:
			skipped++
			continue
		}
		if err := fn(strings.TrimPrefix(keys[i], t.prefix), v); err != nil {
			return skipped, err
		}
	}
	return skipped, nil
}

// isWrongType reports whether err is Redis's WRONGTYPE reply: the key
// holds another type than the command works on.
func isWrongType(err error) bool {
	var reply goredis.Error
	return errors.As(err, &reply) && strings.HasPrefix(reply.Error(), "WRONGTYPE")
}

// MatchPrefix returns the SCAN MATCH pattern of the keys under prefix:
// the prefix, its glob characters escaped so that it matches only itself,
// then "*".
func MatchPrefix(prefix string) string { return escapeGlob(prefix) + "*" }

// escapeGlob escapes the characters that SCAN's MATCH pattern treats
// specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
