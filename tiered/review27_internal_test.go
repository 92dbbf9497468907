package tiered

import (
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
)

// TestReview27SupersededSentWriteEvictedKeepsItsIDQueued: a write marked
// sent by sending (a replay in flight) is superseded by a newer write of
// its id, never sent; that newer write is then evicted from the full tier.
// The write in flight may still land, until a Fence, exactly as in
// TestSendingMarksWhatItSendsAndLeavesOutWhatWasDropped: the id must keep
// state here (has) so that its Delete queues until the Fence. outage.write
// carries old.sent into the newer write's bases only, and dropped() sees
// the newer write's sent (false): nothing is recorded, and has("a") is
// false. The same holds for a write whose replay failed (writesUnknown)
// and for a Set that timed out, each superseded before its eviction.
// Public-API version: TestReview27SupersededInFlightWriteEvictedThenDeleteIsNotUndone.
//
// FAILED at 96a8cfc; fixed by the commit that added this test.
func TestReview27SupersededSentWriteEvictedKeepsItsIDQueued(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	none := func() []string { return []string{""} }
	each := writeSize("a", &pending{value: []byte("v1")})
	for name, markSent := range map[string]func(o *outage){
		"in flight (sending)": func(o *outage) {
			batch, seqs, _ := o.writeBatch(time.Now())
			if batch, _ = o.sending(batch, seqs); len(batch) != 1 {
				t.Fatal("a not sent (the test's premise)")
			}
		},
		"replay failed (writesUnknown)": func(o *outage) {
			batch, seqs, _ := o.writeBatch(time.Now())
			batch, seqs = o.sending(batch, seqs)
			o.writesUnknown(batch, seqs)
		},
	} {
		t.Run(name, func(t *testing.T) {
			o := newOutage(lru.Limits{MaxEntries: 3, MaxBytes: 3 * each}, 10, time.Second)
			o.write("a", []byte("v1"), exp, none, false)
			markSent(o)
			o.write("a", []byte("v2"), exp, nil, false) // superseded: never sent
			o.write("b", []byte("v1"), exp, none, false)
			o.write("c", []byte("v1"), exp, none, false)
			o.lookup("b", time.Now()) // b and c in use: a, bumped last by its
			o.lookup("c", time.Now()) // supersession, goes back to probation
			if _, lost := o.write("d", []byte("v1"), exp, none, false); len(lost) != 1 || lost[0].id != "a" {
				t.Fatalf("lost %+v; want a's pending write evicted (the test's premise)", lost)
			}
			if !o.has("a") {
				t.Error("a's write sent to Redis (it may still land) was superseded, then its successor evicted: a has no state left, so a Delete of a goes straight to Redis, before the sent write lands")
			}
		})
	}
}
