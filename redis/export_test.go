package redis

// QueuedWrites returns the writes waiting in t's lanes, for tests.
func QueuedWrites(t *Tier) int {
	if t.fence == nil || t.fence.lanes == nil {
		return 0
	}
	n := 0
	for _, q := range t.fence.lanes.queues {
		n += len(q)
	}
	return n
}
