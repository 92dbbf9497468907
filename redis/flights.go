package redis

import "time"

// flight is a command sent: r is nil for a PING.
type flight struct {
	r    *request
	sent time.Time
	last bool // the last command of its batch
	part bool // the first of r's two commands: its reply waits for the second
}

// flights is the queue of the commands sent on a connection and not
// answered yet, oldest first: a ring that grows when full and is reused
// as replies are read, so that sending allocates nothing once it has
// grown to the connection's largest backlog (a slice consumed from its
// front reallocated with nearly every batch: 5% of W3's CPU).
type flights struct {
	ring []flight
	head int // the oldest
	n    int
}

func (q *flights) len() int { return q.n }

// push adds f as the newest.
func (q *flights) push(f flight) {
	if q.n == len(q.ring) {
		grown := make([]flight, max(64, 2*len(q.ring)))
		q.copyTo(grown)
		q.ring, q.head = grown, 0
	}
	q.ring[(q.head+q.n)%len(q.ring)] = f
	q.n++
}

// front returns the oldest; newest the newest. Both need a flight queued.
func (q *flights) front() *flight  { return &q.ring[q.head] }
func (q *flights) newest() *flight { return &q.ring[(q.head+q.n-1)%len(q.ring)] }

// pop removes and returns the oldest, which must exist.
func (q *flights) pop() flight {
	f := q.ring[q.head]
	q.ring[q.head] = flight{} // the request belongs to its caller again
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	return f
}

// drain removes every flight and returns them, oldest first, in a slice
// of their own.
func (q *flights) drain() []flight {
	all := make([]flight, q.n)
	q.copyTo(all)
	clear(q.ring)
	q.head, q.n = 0, 0
	return all
}

// copyTo copies the flights, oldest first, to the front of dst.
func (q *flights) copyTo(dst []flight) {
	k := copy(dst, q.ring[q.head:min(q.head+q.n, len(q.ring))])
	copy(dst[k:], q.ring[:q.n-k])
}
