package redis

import (
	"testing"
	"time"
)

// TestFlightsKeepOrderAcrossWrapAndGrowth: replies are matched to commands
// by position, so the ring must hand flights back in the order they were
// pushed whether it wrapped, grew while wrapped, or was drained.
func TestFlightsKeepOrderAcrossWrapAndGrowth(t *testing.T) {
	var q flights
	sent := func(i int) flight { return flight{sent: time.Unix(int64(i), 0)} }
	at := func(f flight) int { return int(f.sent.Unix()) }
	next, want := 0, 0
	push := func(k int) {
		for range k {
			q.push(sent(next))
			next++
		}
		if got := at(*q.newest()); got != next-1 {
			t.Fatalf("newest = %d; want %d", got, next-1)
		}
	}
	pop := func(k int) {
		for range k {
			if got := at(*q.front()); got != want {
				t.Fatalf("front = %d; want %d", got, want)
			}
			if got := at(q.pop()); got != want {
				t.Fatalf("pop = %d; want %d", got, want)
			}
			want++
		}
	}
	push(50)
	pop(40)
	push(50) // wraps: 60 queued in a ring of 64
	pop(10)
	push(100) // grows while wrapped
	if q.len() != 150 {
		t.Fatalf("len = %d; want 150", q.len())
	}
	pop(70)
	push(30)
	all := q.drain()
	if len(all) != 110 || q.len() != 0 {
		t.Fatalf("drained %d, %d left; want 110, 0", len(all), q.len())
	}
	for i, f := range all {
		if at(f) != want+i {
			t.Fatalf("drained[%d] = %d; want %d", i, at(f), want+i)
		}
	}
	for _, f := range q.ring {
		if f != (flight{}) {
			t.Fatal("drain left a flight in the ring: it would keep its request alive")
		}
	}
}

// BenchmarkFlights: a batch of 32 sent, then its replies read, over and
// over, allocates nothing once the ring has grown.
func BenchmarkFlights(b *testing.B) {
	var q flights
	b.ReportAllocs()
	for b.Loop() {
		for range 32 {
			q.push(flight{})
		}
		for q.len() > 0 {
			q.pop()
		}
	}
}
