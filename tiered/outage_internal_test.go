package tiered

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
)

// has reports whether id has state here that a Set or Delete waits for:
// a pending write, a tombstone, or a dropped write that may still land.
func (o *outage) has(id string) bool {
	queue, wait := o.queue(id, kindSet)
	return queue || wait != nil
}

func newTestOutage() *outage {
	return newOutage(lru.Limits{MaxEntries: 100, MaxBytes: 1 << 20}, 10, time.Second)
}

// TestNewerWriteDuringReplayKeepsOrder: a write that comes while an older
// one is being replayed stays pending, now based on what was applied.
func TestNewerWriteDuringReplayKeepsOrder(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.write("id", []byte("v1"), exp, func() []string { return []string{"base0"} }, false)
	batch, seqs, _ := o.writeBatch(time.Now())
	if len(batch) != 1 || !slices.Equal(batch[0].Bases, []string{"base0"}) { // and v1 itself: see redis.Replay
		t.Fatalf("batch = %+v", batch)
	}
	o.write("id", []byte("v2"), exp, func() []string { return []string{"ignored: the id is pending"} }, false)
	o.writesDone(batch, seqs, []bool{true})
	next, _, _ := o.writeBatch(time.Now())
	if len(next) != 1 || string(next[0].Value) != "v2" || !slices.Contains(next[0].Bases, digest([]byte("v1"))) ||
		slices.Contains(next[0].Bases, "ignored: the id is pending") {
		t.Fatalf("after v1 was applied the pending write is %+v; want v2 based on v1", next)
	}
}

// TestWriteAfterAFailedReplayAcceptsItsValue: a replay whose round trip
// failed may land yet; a write of the id that comes after the failure, or
// came before it, must accept the replayed value as its base.
func TestWriteAfterAFailedReplayAcceptsItsValue(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	for _, newerFirst := range []bool{false, true} {
		o := newTestOutage()
		o.write("id", []byte("v1"), exp, func() []string { return []string{"base0"} }, false)
		batch, seqs, _ := o.writeBatch(time.Now())
		if newerFirst {
			o.write("id", []byte("v2"), exp, nil, false)
			o.writesUnknown(batch, seqs)
		} else {
			o.writesUnknown(batch, seqs)
			o.write("id", []byte("v2"), exp, nil, false)
		}
		next, _, _ := o.writeBatch(time.Now())
		if len(next) != 1 || string(next[0].Value) != "v2" || !slices.Contains(next[0].Bases, digest([]byte("v1"))) ||
			!slices.Contains(next[0].Bases, "base0") {
			t.Fatalf("newer write first %v: the pending write is %+v; want v2 based on base0 or v1", newerFirst, next)
		}
	}
}

func TestTombstoneGoesFirstAndNewWriteNeedsAbsentKey(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.tombstone("id")
	o.write("id", []byte("new"), exp, func() []string { return []string{"stale-base"} }, false)
	if batch, _, _ := o.writeBatch(time.Now()); len(batch) != 0 {
		t.Fatalf("a write of a tombstoned id was batched before its delete: %+v", batch)
	}
	ids, seqs := o.tombBatch()
	o.tombsApplied(ids, seqs)
	batch, _, _ := o.writeBatch(time.Now())
	if len(batch) != 1 || !slices.Equal(batch[0].Bases, []string{""}) {
		t.Fatalf("batch = %q; want the write, requiring an absent key", batch[0].Bases)
	}
}

func TestExpiredPendingWritesAreDroppedNotReplayed(t *testing.T) {
	o := newTestOutage()
	o.write("id", []byte("v"), time.Now().Add(time.Millisecond), func() []string { return []string{""} }, false)
	batch, _, expired := o.writeBatch(time.Now().Add(time.Second))
	if len(batch) != 0 || expired != 1 || o.active() {
		t.Fatalf("batch %+v, expired %d, active %v; want the expired write dropped", batch, expired, o.active())
	}
}

// TestOutageWriteReportsOnlyWhatItKeeps: with the byte bound filled by
// pending writes that are read again (protected), a new write is either
// kept or reported not stored, never acknowledged and gone; one that fits
// in probation's share is kept.
func TestOutageWriteReportsOnlyWhatItKeeps(t *testing.T) {
	const each = 2 + 100 + lru.EntryOverhead // id "sN", 100 bytes of data
	for _, n := range []int{10, 200, 600, 1500, 3000} {
		t.Run(fmt.Sprint(n, " bytes"), func(t *testing.T) {
			o := newOutage(lru.Limits{MaxEntries: 100, MaxBytes: 10 * each}, 100, time.Second)
			now, exp := time.Now(), time.Now().Add(time.Hour)
			for i := range 10 {
				id := fmt.Sprint("s", i)
				o.write(id, make([]byte, 100), exp, func() []string { return []string{""} }, false)
				if _, _, ok := o.lookup(id, now); !ok {
					t.Fatalf("%s not kept while filling the tier", id)
				}
			}
			stored, lost := o.write("new", make([]byte, n), exp, func() []string { return []string{""} }, false)
			_, _, found := o.lookup("new", now)
			if stored != found {
				t.Fatalf("write = stored %v, but lookup finds it %v (%d writes evicted)", stored, found, len(lost))
			}
			if fits := int64(len("new")+n+lru.EntryOverhead) <= 10*each/5; fits && !stored {
				t.Fatalf("a write within probation's share was not kept (%d writes evicted)", len(lost))
			}
			if !stored && len(lost) > 0 {
				t.Fatalf("a write that was not kept evicted %d others", len(lost))
			}
		})
	}
}

func TestAlerterLimitsCountsAndFlushesThem(t *testing.T) {
	var got []telemetry.Alert
	a := newAlerter(func(_ context.Context, al telemetry.Alert) { got = append(got, al) }, time.Now)
	ctx := context.Background()
	for range 100 {
		a.count(ctx, telemetry.Alert{Kind: telemetry.AlertPendingLost, Count: 1, Bytes: 10})
	}
	if len(got) != 1 {
		t.Fatalf("%d alerts fired for 100 losses within the interval; want 1", len(got))
	}
	a.flush(ctx)
	if len(got) != 2 || got[1].Count != 99 || got[1].Bytes != 990 {
		t.Fatalf("after flush: %+v; want a second alert carrying the 99 held back", got)
	}
	a.raise(ctx, telemetry.Alert{Kind: telemetry.AlertBreakerOpen})
	if len(got) != 3 {
		t.Fatal("a transition alert was held back")
	}
}

// TestTouchDoesNotReviveAnExpiredPendingWrite (issue 9, item 4).
func TestTouchDoesNotReviveAnExpiredPendingWrite(t *testing.T) {
	o := newTestOutage()
	now := time.Now()
	o.write("id", []byte("v"), now.Add(time.Second), func() []string { return []string{""} }, false)
	r := o.touch("id", now.Add(2*time.Second), now.Add(time.Hour), nil, false)
	found, expired := r.found, r.expired
	if found || !expired {
		t.Fatalf("touch of an expired pending write: found %v, expired %v; want it reported expired", found, expired)
	}
	if v, tomb, ok := o.lookup("id", now.Add(2*time.Second)); ok && !tomb {
		t.Fatalf("the expired write is served again: %q", v)
	}
	if batch, _, _ := o.writeBatch(now.Add(2 * time.Second)); len(batch) != 0 {
		t.Fatalf("the expired write would be replayed: %+v", batch)
	}
}

// TestWriteTooLargeForTheOutageTierKeepsTheEarlierWrite (issue 9, item 7):
// a refused write changes nothing, and the write accepted before it stays.
func TestWriteTooLargeForTheOutageTierKeepsTheEarlierWrite(t *testing.T) {
	o := newOutage(lru.Limits{MaxEntries: 100, MaxBytes: 4096}, 10, time.Second)
	exp := time.Now().Add(time.Hour)
	if stored, _ := o.write("id", []byte("small"), exp, func() []string { return []string{""} }, false); !stored {
		t.Fatal("a small write was refused")
	}
	stored, lost := o.write("id", make([]byte, 8192), exp, func() []string { return []string{""} }, false)
	if stored || len(lost) != 0 {
		t.Fatalf("oversized write: stored %v, lost %v; want refused with nothing lost", stored, lost)
	}
	if v, _, ok := o.lookup("id", time.Now()); !ok || string(v) != "small" {
		t.Fatalf("the earlier accepted write is gone (%q, %v)", v, ok)
	}
}

// TestReplayAcceptsWhatThisInstanceMayHaveWritten (issue 9, item 8): a
// pending write superseded after it was sent to Redis (it timed out and
// may have landed) is among the bases of the newer write.
func TestReplayAcceptsWhatThisInstanceMayHaveWritten(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.write("id", []byte("v1"), exp, func() []string { return []string{"base0"} }, true) // timed out: may be in Redis
	o.write("id", []byte("v2"), exp, func() []string { return []string{""} }, false)
	batch, _, _ := o.writeBatch(time.Now())
	if len(batch) != 1 || !slices.Contains(batch[0].Bases, digest([]byte("v1"))) || !slices.Contains(batch[0].Bases, "base0") {
		t.Fatalf("batch = %+v; want v2 replacing base0 or v1", batch)
	}
}

// TestDroppedSentWriteQueuesLaterChangesUntilAFence: a pending write that
// was sent (it may land) and is then dropped, here by its expiry, keeps
// its id queued here until a Fence begun after the drop succeeds; a write
// of the id meanwhile accepts the dropped value as a base.
func TestDroppedSentWriteQueuesLaterChangesUntilAFence(t *testing.T) {
	o := newTestOutage()
	o.write("id", []byte("v1"), time.Now().Add(time.Millisecond), func() []string { return []string{"base0"} }, true)
	before := o.fenceMark()
	if _, _, expired := o.writeBatch(time.Now().Add(time.Second)); expired != 1 {
		t.Fatalf("%d expired; want the write dropped by its expiry", expired)
	}
	if !o.has("id") || !o.active() {
		t.Fatal("a dropped write that may land left no state: a Delete of its id would go straight to Redis")
	}
	o.fenced(before, time.Now()) // a Fence begun before the drop proves nothing
	if !o.has("id") {
		t.Fatal("a Fence begun before the drop cleared it")
	}
	o.write("id", []byte("v2"), time.Now().Add(time.Hour), func() []string { return []string{"base0"} }, false)
	batch, seqs, _ := o.writeBatch(time.Now())
	if len(batch) != 1 || !slices.Contains(batch[0].Bases, digest([]byte("v1"))) {
		t.Fatalf("batch = %+v; want v2 accepting v1, which may land", batch)
	}
	o.writesDone(batch, seqs, []bool{true})
	o.fenced(o.fenceMark(), time.Now())
	if o.has("id") || o.active() {
		t.Fatal("state left after the replay and a Fence")
	}
}

// TestSendingMarksWhatItSendsAndLeavesOutWhatWasDropped: sending keeps the
// writes still pending as writeBatch took them, marked sent (evicted from
// then on, each keeps its id queued until a Fence), and leaves out those
// dropped or superseded since: they are not sent at all.
func TestSendingMarksWhatItSendsAndLeavesOutWhatWasDropped(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	each := writeSize("a", &pending{value: []byte("v1")})
	o := newOutage(lru.Limits{MaxEntries: 3, MaxBytes: 3 * each}, 10, time.Second)
	for _, id := range []string{"a", "b", "c"} {
		o.write(id, []byte("v1"), exp, func() []string { return []string{""} }, false)
	}
	batch, seqs, _ := o.writeBatch(time.Now())
	o.write("b", []byte("v2"), exp, nil, false) // superseded
	o.tombstone("c")                            // dropped
	batch, seqs = o.sending(batch, seqs)
	if len(batch) != 1 || batch[0].ID != "a" || len(seqs) != 1 {
		t.Fatalf("sending kept %+v; want a alone", batch)
	}
	o.write("d", []byte("v1"), exp, func() []string { return []string{""} }, false)
	o.write("e", []byte("v1"), exp, func() []string { return []string{""} }, false) // evicts a, in flight
	if _, ok := o.writes.Peek("a"); ok {
		t.Fatal("a was not evicted (the test's premise)")
	}
	if !o.has("a") {
		t.Fatal("a write evicted while in flight left no state: a Delete of its id would go straight to Redis, before the write lands")
	}
	o.writesDone(batch, seqs, []bool{true})
	if !o.has("a") {
		t.Fatal("the write's reply cleared its id before a Fence")
	}
	o.fenced(o.fenceMark(), time.Now())
	if o.has("a") {
		t.Fatal("a is still queued after a Fence")
	}
}

// TestDroppedSentWritesPastTheBoundQueueEveryIDUntilAFence: past
// maxTombs dropped writes that may land, which one is not remembered:
// every id queues here until a Fence begun after the drop.
func TestDroppedSentWritesPastTheBoundQueueEveryIDUntilAFence(t *testing.T) {
	o := newOutage(lru.Limits{MaxEntries: 100, MaxBytes: 1 << 20}, 1, time.Second)
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		o.write(id, []byte("v1"), now.Add(time.Millisecond), func() []string { return []string{""} }, true)
	}
	before := o.fenceMark()
	if _, _, expired := o.writeBatch(now.Add(time.Second)); expired != 2 {
		t.Fatalf("%d expired; want both writes dropped", expired)
	}
	if !o.has("a") || !o.has("b") || !o.has("never-written") {
		t.Fatal("with more dropped writes than remembered, an id goes straight to Redis")
	}
	o.fenced(before, time.Now())
	if !o.has("never-written") {
		t.Fatal("a Fence begun before the drops cleared them")
	}
	o.fenced(o.fenceMark(), time.Now())
	if o.has("a") || o.has("b") || o.has("never-written") || o.active() {
		t.Fatal("state left after a Fence")
	}
}
