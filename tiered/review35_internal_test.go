package tiered

import (
	"slices"
	"testing"
	"time"

	"github.com/sessiontier/sessiontier/internal/redistest"
)

// TestReview35SetAfterASentTouchKeepsTheSessionsBases: a Set that
// supersedes a Touch's pending write takes the bases any outage Set of the
// session has (base(), lastSeen widened by landed) plus the Touch's base
// (86b6bd3). add's had case does so for old.touched, then, for old.sent,
// overwrites p.bases with withBase(old.bases, …): the widening is lost
// whenever the Touch's pending write is sent, which happens when the
// Touch's EXPIRE itself was sent and failed (sent(cause)), when a replay of
// it is in flight (sending marks it sent), and when that replay timed out
// (writesUnknown). The Set is then replayed only onto the value touched,
// and conflicts with a value this instance wrote there (review 33's
// late-landed Set): an acknowledged write lost as a conflict.
func TestReview35SetAfterASentTouchKeepsTheSessionsBases(t *testing.T) {
	for _, how := range []string{"not sent", "touch sent", "replay in flight", "replay unknown"} {
		t.Run(how, func(t *testing.T) {
			o := newTestOutage()
			now := time.Now()
			exp := now.Add(time.Hour)
			held := func() ([]byte, bool) { return []byte("v0"), true }
			if r := o.touch("id", now, exp, held, how == "touch sent"); !r.adopted || !r.stored {
				t.Fatalf("touch: %+v; want the copy adopted", r)
			}
			switch how {
			case "replay in flight", "replay unknown":
				batch, seqs, _ := o.writeBatch(now)
				batch, seqs = o.sending(batch, seqs)
				if how == "replay unknown" {
					o.writesUnknown(batch, seqs)
				}
			}
			late := digest([]byte("v1-late")) // lastSeen: a write of this instance in doubt
			o.write("id", []byte("x"), exp, func() []string { return []string{digest([]byte("v0")), late} }, false)
			p, _ := o.writes.Peek("id")
			if !slices.Contains(p.bases, late) {
				t.Fatalf("the Set superseding a Touch's pending write (%s) has bases %q: not the session's bases (%q missing); its replay conflicts with this instance's own write", how, p.bases, late)
			}
		})
	}
}

// TestReview35RequeuedDeleteKeepsARacingFill: 56cd043 voids a read's fill
// token when the id has outage state, on the claim that state recorded
// after the token began a local write, which voids it anyway. requeue
// records state after the change's local write ended (write: endLocal,
// announce, a round trip in publish mode, then requeue), with no local
// write of its own. Here a Delete of x is sent; meanwhile a Set of x whose
// caller gave up lands after the DEL and a Fence settles it; the DEL is
// answered: endLocal drops the copy. A Get of x in the window before
// requeue misses, reads the late value and fills it (the id has no state
// yet); requeue then records the Delete as a tombstone (the write in doubt
// came after its mark). The tombstone's replay deletes x in Redis, but
// nothing drops the filled copy (publish mode: this instance's own
// announcement does not come back; the settle that revoked x's copy was
// before the fill), so once the tier drains x, deleted and acknowledged,
// is served again here. The steps of Delete are driven by hand, in
// write's order, to place the Get in that window.
func TestReview35RequeuedDeleteKeepsARacingFill(t *testing.T) {
	srv := redistest.Start(t)
	s := review31Store(t, srv.Addr, Options{OpTimeout: 2 * time.Second, Invalidation: InvalidationPublish})
	plain := srv.Client()
	if err := s.Set(bg31, "x", []byte("v0"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// Delete(x), as write runs it.
	c := change{kind: kindDelete, id: "x"}
	queue, _, mark, err := s.queues(bg31, c)
	if queue || err != nil {
		t.Fatalf("queues: %v, %v", queue, err)
	}
	w := s.beginLocal("x")
	if err := s.remote.Delete(bg31, "x"); err != nil {
		t.Fatal(err)
	}
	// Before its reply: a Set of x in doubt, which lands after the DEL,
	// and the Fence that settles it.
	doubt31(s, "x", "late")
	if err := plain.Set(bg31, "session:x", "late", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	s.settle(bg31, s.out.fenceMark())
	s.endLocal(w, c, true)
	// A Get before requeue: the Delete has not returned, so "late" is a
	// fair answer; keeping it is not.
	if v, err := s.Get(bg31, "x"); err != nil || string(v) != "late" {
		t.Fatalf("Get during the Delete: %q, %v", v, err)
	}
	if err := s.requeue(bg31, c, mark); err != nil {
		t.Fatalf("requeue: %v", err)
	}
	if st := s.Stats(); st.PendingDeletes != 1 {
		t.Fatalf("the Delete was not requeued (%+v): the scenario did not happen", st)
	}
	if !s.replay(bg31, false) {
		t.Fatal("the replay did not drain the outage tier")
	}
	if n, _ := plain.Exists(bg31, "session:x").Result(); n != 0 {
		t.Fatal("the tombstone's replay did not delete x in Redis")
	}
	if v, err := s.Get(bg31, "x"); err == nil {
		t.Fatalf("x, deleted and acknowledged here, is served again once the outage tier drained: %q (the fill of a read that took its token before requeue recorded the tombstone)", v)
	}
}
