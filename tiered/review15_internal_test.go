package tiered

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestReview15ManyFailedReplaysKeepTheLastSentValueAsABase: each replay of
// a session fails (its round trip timed out: it may land yet), and the
// session is written again after each failure. Whatever the number of
// failures, the newest write must accept as a base the value of the last
// failed replay: it may be what Redis holds once that replay lands, and
// the newest write, acknowledged, must replace it rather than conflict
// with it and be dropped.
func TestReview15ManyFailedReplaysKeepTheLastSentValueAsABase(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.write("id", []byte("v0"), exp, func() []string { return []string{"base0"} }, false)
	const failures = maxBases
	for i := 1; i <= failures; i++ {
		batch, seqs, _ := o.writeBatch(time.Now())
		o.writesUnknown(batch, seqs) // the replay of v(i-1) timed out
		o.write("id", fmt.Appendf(nil, "v%d", i), exp, nil, false)
	}
	next, _, _ := o.writeBatch(time.Now())
	last := fmt.Appendf(nil, "v%d", failures-1)
	if len(next) != 1 || !slices.Contains(next[0].Bases, digest(last)) {
		t.Fatalf("after %d failed replays the newest write's bases (%d) miss %s, whose replay failed last and may land",
			failures, len(next[0].Bases), last)
	}
}

// TestReview15BasesStayBounded: a session touched while each of its replays
// fails gets the same value added to its bases once per failure, without
// bound ("nothing grows without a bound"; the bases are not counted in the
// outage tier's bytes either).
func TestReview15BasesStayBounded(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.write("id", []byte("v0"), exp, func() []string { return []string{"base0"} }, false)
	for range 200 {
		batch, seqs, _ := o.writeBatch(time.Now())
		o.touch("id", time.Now(), exp, nil, false) // sliding expiry: a request while the replay is in flight
		o.writesUnknown(batch, seqs)
	}
	next, _, _ := o.writeBatch(time.Now())
	if n := len(next[0].Bases); n > maxBases+1 {
		t.Fatalf("after 200 failed replays of one value the pending write has %d bases; want at most %d", n, maxBases+1)
	}
}
