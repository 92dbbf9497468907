package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// notFoundTarget answers every read "no such session".
type notFoundTarget struct{}

func (notFoundTarget) Get(context.Context, string) ([]byte, error)              { return nil, ErrNotFound }
func (notFoundTarget) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (notFoundTarget) Delete(context.Context, string) error                     { return nil }
func (notFoundTarget) Close() error                                             { return nil }

// TestLedgerCountsNotFoundOnceRecoveredApart: a read answered not found
// counts in NotFound, and in NotFoundRecovered only if it began once the
// target was seen recovered.
func TestLedgerCountsNotFoundOnceRecoveredApart(t *testing.T) {
	cfg := Config{Sessions: 100, Workers: 1}
	l := newLedger(cfg.Sessions, 16)
	op := l.op(notFoundTarget{}, cfg, 0, func(time.Time) int { return 2 })
	run := func(n int) int64 { // n×10 calls; the not-found count after them
		for range n * 10 { // about one call in twenty is a write
			if err := op(context.Background()); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
		}
		return l.cnt[2][cNotFound].Load()
	}
	before := run(10)
	if before == 0 || l.cnt[2][cNotFoundRecovered].Load() != 0 {
		t.Fatalf("before recovery: %d not found, %d once recovered; want some, and none", before, l.cnt[2][cNotFoundRecovered].Load())
	}
	l.recovered.Store(true)
	after := run(10) - before
	if got := l.cnt[2][cNotFoundRecovered].Load(); after == 0 || got != after {
		t.Fatalf("after recovery: %d not found, %d once recovered; want them equal, and some", after, got)
	}
}
