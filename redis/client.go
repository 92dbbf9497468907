package redis

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Client defaults of NewClient, for settings the URL does not give.
const (
	DefaultDialTimeout  = 500 * time.Millisecond
	DefaultReadTimeout  = 500 * time.Millisecond
	DefaultWriteTimeout = 500 * time.Millisecond
	DefaultPoolTimeout  = 500 * time.Millisecond
	DefaultMaxRetries   = 1
)

// ErrInvalidURL is returned by NewClient for a URL it cannot use. Its
// messages never repeat the URL, which may hold a password.
var ErrInvalidURL = errors.New("redis: invalid URL")

// NewClient returns a go-redis client for a redis:// or rediss:// URL
// (user, password, database number, TLS for rediss, and go-redis's query
// parameters such as ?dial_timeout=1s), set up for a session store:
// context deadlines honoured (ContextTimeoutEnabled), dial, read, write and
// pool timeouts of 500ms and one retry instead of go-redis's 5s, 3s, 3s,
// 4s and three retries, unless the URL sets them. It makes no network
// call. The caller closes the client.
func NewClient(rawURL string) (*goredis.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, ErrInvalidURL
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("%w: want the scheme redis:// or rediss://", ErrInvalidURL)
	}
	opt, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: its host, database or query parameters are not valid", ErrInvalidURL)
	}
	q := u.Query()
	set := func(name string, field *time.Duration, d time.Duration) {
		if !q.Has(name) {
			*field = d
		}
	}
	set("dial_timeout", &opt.DialTimeout, DefaultDialTimeout)
	set("read_timeout", &opt.ReadTimeout, DefaultReadTimeout)
	set("write_timeout", &opt.WriteTimeout, DefaultWriteTimeout)
	set("pool_timeout", &opt.PoolTimeout, DefaultPoolTimeout)
	if !q.Has("max_retries") {
		opt.MaxRetries = DefaultMaxRetries
	}
	if !q.Has("context_timeout_enabled") {
		opt.ContextTimeoutEnabled = true
	}
	return goredis.NewClient(opt), nil
}

// copyOptions returns a copy of a client's options for a client of the
// tier's own. go-redis shares, and writes while connecting, the options'
// maintenance-notification config: the copy gets its own, turned off (a
// feature of RESP3 connections to Redis Enterprise, which the tier's
// connections do not use).
func copyOptions(o *goredis.Options) goredis.Options {
	c := *o
	c.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return c
}
