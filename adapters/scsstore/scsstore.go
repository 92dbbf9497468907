// Package scsstore provides an adapter that makes a tiered.Store the
// session store of github.com/alexedwards/scs/v2.
//
//	sessionManager := scs.New()
//	sessionManager.Store = scsstore.New(store)
//
// The data is scs's encoded session, stored unchanged: with the prefix
// "scs:session:", sessions written by scs's redisstore or goredisstore are
// read as they are, and the other way round.
package scsstore

import (
	"context"
	"errors"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/sessiontier/sessiontier/tiered"
)

// Store adapts a tiered.Store to scs. It implements scs.Store,
// scs.CtxStore, scs.IterableStore and scs.IterableCtxStore.
type Store struct {
	s *tiered.Store
}

var (
	_ scs.Store            = (*Store)(nil)
	_ scs.CtxStore         = (*Store)(nil)
	_ scs.IterableStore    = (*Store)(nil)
	_ scs.IterableCtxStore = (*Store)(nil)
)

// New returns the adapter of s. Closing s is the caller's job.
func New(s *tiered.Store) *Store { return &Store{s: s} }

// FindCtx returns the session of token; found is false, with no error,
// for a session that does not exist. A token that cannot be a session id
// (tiered.ErrInvalidID: too long, whitespace, control characters), which
// anyone can send in a cookie, names no session either: scs then starts a
// new one instead of failing the request, and nothing is sent to Redis.
// b is shared with the Store (tiered.Store.GetShared): scs only decodes it.
func (st *Store) FindCtx(ctx context.Context, token string) (b []byte, found bool, err error) {
	b, err = st.s.GetShared(ctx, token)
	if errors.Is(err, tiered.ErrNotFound) || errors.Is(err, tiered.ErrInvalidID) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// CommitCtx stores the session of token until expiry. An expiry that is
// not in the future deletes the session. scs generates the tokens it
// commits, so an invalid one is an error (tiered.ErrInvalidID).
func (st *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return st.s.Delete(ctx, token)
	}
	return st.s.Set(ctx, token, b, ttl)
}

// DeleteCtx removes the session of token. An invalid token names no
// session, so there is nothing to delete: it returns nil (scs deletes the
// empty token of a session never committed, for one).
func (st *Store) DeleteCtx(ctx context.Context, token string) error {
	if err := st.s.Delete(ctx, token); !errors.Is(err, tiered.ErrInvalidID) {
		return err
	}
	return nil
}

// AllCtx returns every session, read from Redis with SCAN.
func (st *Store) AllCtx(ctx context.Context) (map[string][]byte, error) {
	all := make(map[string][]byte)
	err := st.s.Range(ctx, func(token string, b []byte) error {
		all[token] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return all, nil
}

// Find is FindCtx with context.Background().
func (st *Store) Find(token string) ([]byte, bool, error) {
	return st.FindCtx(context.Background(), token)
}

// Commit is CommitCtx with context.Background().
func (st *Store) Commit(token string, b []byte, expiry time.Time) error {
	return st.CommitCtx(context.Background(), token, b, expiry)
}

// Delete is DeleteCtx with context.Background().
func (st *Store) Delete(token string) error {
	return st.DeleteCtx(context.Background(), token)
}

// All is AllCtx with context.Background().
func (st *Store) All() (map[string][]byte, error) {
	return st.AllCtx(context.Background())
}
