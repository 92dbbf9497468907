package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
	"go.uber.org/goleak"
)

// TestPipelineTargetAnswersEachCallerItsOwnReply: the reference pipeline
// is a client like the others: each caller gets the reply to its own
// command, however the commands were batched, and its SET carries the TTL.
func TestPipelineTargetAnswersEachCallerItsOwnReply(t *testing.T) {
	tg, rs := startPipeline(t)
	admin := rs.Client()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Go(func() {
			for i := range 50 {
				id, v := fmt.Sprintf("w%d-%d", w, i), []byte(fmt.Sprintf("value %d of worker %d", i, w))
				if err := tg.Set(ctx, id, v, time.Hour); err != nil {
					errs <- err
					return
				}
				if got, err := tg.Get(ctx, id); err != nil || string(got) != string(v) {
					errs <- fmt.Errorf("Get(%s) = %q, %v; want %q", id, got, err, v)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ttl := admin.PTTL(ctx, Prefix+"w3-7").Val(); ttl <= 59*time.Minute {
		t.Errorf("PTTL = %v; want the hour the SET asked for", ttl)
	}
	if err := tg.Delete(ctx, "w3-7"); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Get(ctx, "w3-7"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
	if admin.Exists(ctx, Prefix+"w3-7").Val() != 0 {
		t.Fatal("the key is still in Redis after Delete")
	}
}

// TestPipelineTargetNeverHangs: a caller whose context ends stops waiting
// on a Redis that does not answer, later callers still get their own
// replies, and a killed connection or Close fails the calls instead of
// leaving them, or the target's goroutines, waiting.
func TestPipelineTargetNeverHangs(t *testing.T) {
	tg, rs := startPipeline(t)
	admin := rs.Client()
	ctx := context.Background()
	if err := tg.Set(ctx, "a", []byte("A"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "PAUSE", "500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := tg.Get(short, "a")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on a paused Redis: %v; want the caller's deadline", err)
	}
	// The abandoned GET's reply comes first once Redis answers: the next
	// caller must get its own.
	if err := tg.Set(ctx, "b", []byte("B"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := tg.Get(ctx, "a"); err != nil || string(got) != "A" {
		t.Fatalf("Get(a) = %q, %v; want A", got, err)
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} { // every connection, by key
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := tg.Get(wait, id); err != nil && !errors.Is(err, ErrNotFound) {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Get(%s) on a killed connection waited for its deadline", id)
			}
			failed++
		}
		cancel()
	}
	if failed == 0 {
		t.Fatal("no call failed after every connection was killed")
	}
	tg.Close()
	if _, err := tg.Get(ctx, "a"); err == nil { // the kill's error: the connection failed before Close
		t.Fatal("Get after Close succeeded; want an error")
	}
}

// startPipeline starts a server and a redis-pipeline target on it, closed
// by the test's cleanup, after which no goroutine may be left.
func startPipeline(t *testing.T) (*pipelineTarget, *redistest.Server) {
	noLeaks(t)
	rs := redistest.Start(t)
	tg, err := newPipeline(rs.Addr, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg.(*pipelineTarget), rs
}

// noLeaks checks, once t and its cleanups (the server's included) are
// done, that no goroutine started since is left.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}
