package redis

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

// TestReview14VerifyingReadOfAnotherValue: a verifying read (per-key mode)
// that returns a value other than the one expected does not verify the
// write, also when the value expected is empty (a Set of an empty
// session, or a Touch of one): its read is a GET of the whole value.
func TestReview14VerifyingReadOfAnotherValue(t *testing.T) {
	for _, kind := range []opKind{opSet, opPExpire} {
		for _, want := range []string{"", "abc"} {
			r := &request{kind: kind, verify: true, value: []byte(want)}
			r.first = value{kind: '+', str: "OK"}
			if kind == opPExpire {
				r.first = value{kind: ':', n: 1}
			}
			v, err := readMatching(bufio.NewReader(strings.NewReader("$7\r\nforeign\r\n")), r.value)
			if err != nil {
				t.Fatal(err)
			}
			if rep := replyOf(r, v); rep.verified {
				t.Errorf("kind %d expecting %q: a verifying read of \"foreign\" verified the write", kind, want)
			}
		}
	}
}

// TestReview14PooledTimerCarriesNoStaleTick: a request whose reply came
// as its timer fired goes back to the pool with the timer stopped after
// firing. Under GODEBUG=asynctimerchan=1 (still honoured by Go) the tick
// then stays in the timer's channel, and the next caller to take the
// request from the pool would give up at once, its write never sent and
// counted as a Redis timeout.
func TestReview14PooledTimerCarriesNoStaleTick(t *testing.T) {
	t.Setenv("GODEBUG", "asynctimerchan=1")
	r := &request{}
	r.arm(time.Nanosecond)
	deadline := time.Now().Add(10 * time.Second)
	for len(r.timer.C) == 0 { // fired, not received: the reply won the caller's select
		if time.Now().After(deadline) {
			t.Fatal("the timer did not fire (asynctimerchan=1 not in effect?)")
		}
		time.Sleep(time.Millisecond)
	}
	r.disarm() // as release does
	r.arm(time.Hour)
	select {
	case <-r.expiry():
		t.Fatal("a request armed for an hour expired at once: a stale tick of its last use")
	default:
	}
	r.disarm()
}
