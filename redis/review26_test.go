package redis

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

// review26Abandon makes one write of tr on the tracked connection end
// without a reply (a cancelled context), so that Fence has work to do.
func review26Abandon(t *testing.T, tr *Tier) {
	t.Helper()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Set(cancelled, "abandoned", []byte("x"), time.Minute); err == nil {
		t.Fatal("Set with a cancelled context succeeded")
	}
}

// TestReview26FenceKillsATrackedConnectionWhoseIDIsUnknown: a HELLO reply
// without an id (a Redis-compatible server) leaves the barrier nothing to
// spare: the current tracked connection is closed like the others.
func TestReview26FenceKillsATrackedConnectionWhoseIDIsUnknown(t *testing.T) {
	tr, l, _, srv := barrierTier(t, ListenPerKey, time.Second)
	l.tracked.mu.Lock()
	conn := l.tracked.conn
	current := strconv.FormatInt(conn.id, 10)
	conn.id = 0 // as if HELLO had not told it
	l.tracked.mu.Unlock()
	review26Abandon(t, tr)
	if err := tr.Fence(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := namedIDs(t, srv, l.tracked.name); slices.Contains(ids, current) {
		t.Fatalf("the tracked connection of unknown id (%s) survived the Fence: %v", current, ids)
	}
}

// TestReview26FenceKeepsItsBoundOnAHungRedis: with the barrier added, a
// Fence on a Redis that answers nothing still returns ErrFence within the
// Tier's timeout (the barrier's half included).
func TestReview26FenceKeepsItsBoundOnAHungRedis(t *testing.T) {
	const timeout = 400 * time.Millisecond
	tr, _, _, srv := barrierTier(t, ListenPerKey, timeout)
	review26Abandon(t, tr)
	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	err := tr.Fence(context.Background())
	elapsed := time.Since(start)
	if !errors.Is(err, ErrFence) {
		t.Fatalf("Fence on a hung Redis = %v; want ErrFence", err)
	}
	if elapsed > timeout+300*time.Millisecond { // a second full timeout would take 800ms
		t.Fatalf("Fence on a hung Redis took %v; bound %v", elapsed, timeout)
	}
}

// TestReview26LostReadRetryKeepsItsBoundOnAHungRedis: on a hung Redis, a
// read queued behind an older one is failed with the connection's shared
// error when the older one's deadline drops the connection: it fails with
// it, at once, not coherent, rather than being read again through the
// caller's client, which would hang for the rest of its own bound (a
// connection lost at a deadline is Redis slow or hung; see lostUnder).
func TestReview26LostReadRetryKeepsItsBoundOnAHungRedis(t *testing.T) {
	const timeout = 600 * time.Millisecond
	tr, l, _, srv := barrierTier(t, ListenPerKey, timeout)
	srv.Pause()
	defer srv.Resume()
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, _, _, _, err := tr.GetTracked(ctx, "first"); first <- err }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) { // polling the flights
		l.tracked.mu.Lock()
		n := 0
		if l.tracked.conn != nil {
			n = l.tracked.conn.inflight.len()
		}
		l.tracked.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first read was not sent")
		}
	}
	<-time.After(timeout / 2) // the second read starts half a bound later: the first's deadline drops it
	type result struct {
		coherent bool
		err      error
		elapsed  time.Duration
	}
	second := make(chan result, 1)
	go func() {
		start := time.Now()
		_, _, _, coherent, err := tr.GetTracked(ctx, "second")
		second <- result{coherent, err, time.Since(start)}
	}()
	if err := <-first; err == nil {
		t.Fatal("a read on a hung Redis succeeded")
	}
	r := <-second
	if r.err == nil || r.coherent {
		t.Fatalf("second read on a hung Redis: coherent %v, err %v; want an error", r.coherent, r.err)
	}
	if r.elapsed > timeout*9/10 { // it started half a bound after the first
		t.Fatalf("second read took %v on a hung Redis, its own bound %v: it should fail with the connection, half a bound in", r.elapsed, timeout)
	}
}

// review26ClientID opens a connection to addr, asks its id, and closes it:
