package tiered

import (
	"context"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/telemetry"
)

func newTestOutage() *outage {
	return newOutage(lru.Limits{MaxEntries: 100, MaxBytes: 1 << 20}, 10)
}

// TestNewerWriteDuringReplayKeepsOrder: a write that comes while an older
// one is being replayed stays pending, now based on what was applied.
func TestNewerWriteDuringReplayKeepsOrder(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.write("id", []byte("v1"), exp, func() string { return "base0" })
	batch, seqs, _ := o.writeBatch(time.Now())
	if len(batch) != 1 || batch[0].Base != "base0" {
		t.Fatalf("batch = %+v", batch)
	}
	o.write("id", []byte("v2"), exp, func() string { t.Fatal("base asked for an id already pending"); return "" })
	o.writesDone(batch, seqs, []bool{true})
	next, _, _ := o.writeBatch(time.Now())
	if len(next) != 1 || string(next[0].Value) != "v2" || next[0].Base != digest([]byte("v1")) {
		t.Fatalf("after v1 was applied the pending write is %+v; want v2 based on v1", next)
	}
}

func TestTombstoneGoesFirstAndNewWriteNeedsAbsentKey(t *testing.T) {
	o := newTestOutage()
	exp := time.Now().Add(time.Hour)
	o.tombstone("id")
	o.write("id", []byte("new"), exp, func() string { return "stale-base" })
	if batch, _, _ := o.writeBatch(time.Now()); len(batch) != 0 {
		t.Fatalf("a write of a tombstoned id was batched before its delete: %+v", batch)
	}
	ids, seqs := o.tombBatch()
	o.tombsApplied(ids, seqs)
	batch, _, _ := o.writeBatch(time.Now())
	if len(batch) != 1 || batch[0].Base != "" {
		t.Fatalf("batch = %+v; want the write, requiring an absent key", batch)
	}
}

func TestExpiredPendingWritesAreDroppedNotReplayed(t *testing.T) {
	o := newTestOutage()
	o.write("id", []byte("v"), time.Now().Add(time.Millisecond), func() string { return "" })
	batch, _, expired := o.writeBatch(time.Now().Add(time.Second))
	if len(batch) != 0 || expired != 1 || o.active() {
		t.Fatalf("batch %+v, expired %d, active %v; want the expired write dropped", batch, expired, o.active())
	}
}

func TestAlerterLimitsCountsAndFlushesThem(t *testing.T) {
	var got []telemetry.Alert
	a := newAlerter(func(_ context.Context, al telemetry.Alert) { got = append(got, al) })
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
