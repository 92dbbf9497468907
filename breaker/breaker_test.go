package breaker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

var (
	errDown     = errors.New("connection refused")
	errAnswered = errors.New("WRONGTYPE")
)

func isDown(err error) bool { return errors.Is(err, errDown) }

func newBreaker(t *testing.T, s Settings) *Breaker {
	t.Helper()
	b, err := New(s, isDown)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fail runs n failing calls.
func fail(b *Breaker, n int) {
	for range n {
		b.Do(context.Background(), func() error { return errDown })
	}
}

func TestOpensAfterConsecutiveFailuresAndFailsFast(t *testing.T) {
	b := newBreaker(t, Settings{Failures: 3, OpenTimeout: time.Hour})
	fail(b, 2)
	if got := b.State(); got != Closed {
		t.Fatalf("after 2 failures State = %v; want closed", got)
	}
	fail(b, 1)
	if got := b.State(); got != Open {
		t.Fatalf("after 3 failures State = %v; want open", got)
	}
	ran := false
	err := b.Do(context.Background(), func() error { ran = true; return nil })
	if !errors.Is(err, ErrOpen) || ran {
		t.Fatalf("Do while open = %v, ran=%v; want ErrOpen without running", err, ran)
	}
}

func TestAnswersAndCancellationsDoNotOpen(t *testing.T) {
	b := newBreaker(t, Settings{Failures: 3, OpenTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		fail(b, 2)
		// The backend answered: it is up, the failure run is broken.
		if err := b.Do(context.Background(), func() error { return errAnswered }); !errors.Is(err, errAnswered) {
			t.Fatalf("Do returned %v; want the op's error", err)
		}
		// The caller gave up: says nothing about the backend.
		b.Do(ctx, func() error { return errDown })
	}
	if got := b.State(); got != Closed {
		t.Fatalf("State = %v; want closed: answers and cancellations must not trip it", got)
	}
	fail(b, 3)
	if got := b.State(); got != Open {
		t.Fatalf("State = %v; want open after 3 consecutive failures", got)
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func TestProbeClosesOrReopensWithBackoff(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBreaker(t, Settings{Failures: 1, OpenTimeout: time.Minute, MaxOpenTimeout: time.Hour, Clock: clock.Now})
	fail(b, 1)
	first := b.RetryAt().Sub(clock.Now())
	if first < time.Minute || !b.Rejecting() || b.State() != Open {
		t.Fatalf("after a failure: wait %v, rejecting %v, %v; want open for OpenTimeout", first, b.Rejecting(), b.State())
	}
	clock.Advance(first)
	if b.Rejecting() || b.State() == Open {
		t.Fatal("the wait is over on the clock, yet no probe may go")
	}
	// A failed probe reopens with a longer wait.
	fail(b, 1)
	if got := b.State(); got != Open {
		t.Fatalf("after a failed probe State = %v; want open", got)
	}
	second := b.RetryAt().Sub(clock.Now())
	if second <= first {
		t.Fatalf("wait after a failed probe %v; want more than the first wait %v", second, first)
	}
	clock.Advance(second)
	if err := b.Do(context.Background(), func() error { return nil }); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if got := b.State(); got != Closed {
		t.Fatalf("after a good probe State = %v; want closed", got)
	}
	if b.failedProbes.Load() != 0 {
		t.Fatal("closing did not reset the backoff")
	}
}

func TestBackoffDoublesWithJitterUpToTheCap(t *testing.T) {
	b := newBreaker(t, Settings{OpenTimeout: time.Second, MaxOpenTimeout: 10 * time.Second})
	for n, base := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		for range 50 {
			got := b.backoff(int32(n))
			if got < base || got > base+base/5 {
				t.Fatalf("backoff(%d) = %v; want in [%v, %v]", n, got, base, base+base/5)
			}
		}
	}
}

func TestSettingsDefaultsAndValidation(t *testing.T) {
	s, err := Settings{}.withDefaults()
	if err != nil || s.Clock == nil || s.Failures != 5 || s.OpenTimeout != time.Second || s.MaxOpenTimeout != 30*time.Second {
		t.Fatalf("defaults = %+v, %v", s, err)
	}
	for _, bad := range []Settings{{OpenTimeout: -1}, {MaxOpenTimeout: -1}, {OpenTimeout: time.Minute, MaxOpenTimeout: time.Second}} {
		if _, err := New(bad, nil); !errors.Is(err, ErrInvalidSettings) {
			t.Errorf("New(%+v) = %v; want ErrInvalidSettings", bad, err)
		}
	}
	if got := Open.String() + HalfOpen.String() + Closed.String(); got != "openhalf-openclosed" {
		t.Errorf("State strings = %q", got)
	}
}

func TestChangesAndRetryAt(t *testing.T) {
	b := newBreaker(t, Settings{Failures: 1, OpenTimeout: time.Hour})
	select {
	case <-b.Changes():
		t.Fatal("a change was signalled before any")
	default:
	}
	if !b.RetryAt().IsZero() {
		t.Fatal("RetryAt of a closed breaker is set")
	}
	fail(b, 1)
	select {
	case <-b.Changes():
	default:
		t.Fatal("opening was not signalled")
	}
	if b.Opens() != 1 {
		t.Fatalf("Opens = %d; want 1", b.Opens())
	}
	if until := time.Until(b.RetryAt()); until < 59*time.Minute || until > 73*time.Minute {
		t.Fatalf("RetryAt is %v away; want OpenTimeout plus up to 20%%", until)
	}
}

// Successes skip gobreaker while nothing failed since the last one (Do's
// fast path), and still break a streak of failures; successes and
// failures interleaved from many goroutines leave the count right.
func TestFastPathKeepsCountingConsecutiveFailures(t *testing.T) {
	b := newBreaker(t, Settings{Failures: 3, OpenTimeout: time.Hour})
	ok := func() { b.Do(context.Background(), func() error { return nil }) }
	for range 100 {
		ok()
	}
	fail(b, 2)
	ok() // resets the streak
	fail(b, 2)
	if got := b.State(); got != Closed {
		t.Fatalf("after 2 failures, a success, 2 failures: State = %v; want closed", got)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				ok()
			}
		})
	}
	wg.Wait()
	fail(b, 2)
	if got := b.State(); got != Closed {
		t.Fatalf("after concurrent successes and 2 failures: State = %v; want closed", got)
	}
	fail(b, 1)
	if got := b.State(); got != Open {
		t.Fatalf("after 3 consecutive failures State = %v; want open", got)
	}
}

type sharedErr uint64

func (e sharedErr) Error() string         { return "connection reset" }
func (e sharedErr) SharedFailure() uint64 { return uint64(e) }
func (e sharedErr) Is(target error) bool  { return target == errDown }

// The callers of one broken round trip count as one failure.
func TestSharedFailureCountsOnce(t *testing.T) {
	b := newBreaker(t, Settings{Failures: 3, OpenTimeout: time.Hour})
	failWith := func(err error) { b.Do(context.Background(), func() error { return err }) }
	for range 20 {
		failWith(sharedErr(7))
	}
	if got := b.State(); got != Closed {
		t.Fatalf("after 20 callers of one failed round trip: State = %v; want closed", got)
	}
	failWith(sharedErr(8))
	failWith(sharedErr(8))
	if got := b.State(); got != Closed {
		t.Fatalf("after two failed round trips: State = %v; want closed", got)
	}
	failWith(sharedErr(9))
	if got := b.State(); got != Open {
		t.Fatalf("after three failed round trips: State = %v; want open", got)
	}
}
