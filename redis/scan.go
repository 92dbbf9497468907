package redis

import (
	"context"
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

const scanCount = 100

// Scan calls fn with every id under the prefix and its value, walking every
// master node with SCAN (never KEYS). Each round trip is bounded by the
// tier's timeout. A key that vanishes during the walk is skipped. The value
// passed to fn is fn's to keep.
func (t *Tier) Scan(ctx context.Context, fn func(id string, value []byte) error) error {
	match := escapeGlob(t.prefix) + "*"
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
			if err := t.getBatch(ctx, keys, fn); err != nil {
				return err
			}
			if cursor == 0 {
				return nil
			}
		}
	}
	switch c := t.client.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error { return walk(ctx, node) })
	case *goredis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, node *goredis.Client) error { return walk(ctx, node) })
	}
	return walk(ctx, t.client)
}

func (t *Tier) getBatch(ctx context.Context, keys []string, fn func(id string, value []byte) error) error {
	if len(keys) == 0 {
		return nil
	}
	cmds, err := call(t, ctx, "GET", func(ctx context.Context) ([]*goredis.StringCmd, error) {
		cmds := make([]*goredis.StringCmd, len(keys))
		_, err := t.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.Get(ctx, k)
			}
			return nil
		})
		if errors.Is(err, goredis.Nil) {
			err = nil
		}
		return cmds, err
	})
	if err != nil {
		return err
	}
	for i, cmd := range cmds {
		v, err := cmd.Bytes()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(strings.TrimPrefix(keys[i], t.prefix), v); err != nil {
			return err
		}
	}
	return nil
}

// escapeGlob escapes the characters that SCAN's MATCH pattern treats
// specially, so that a prefix matches only itself.
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
