package tiered

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sessiontier/sessiontier/breaker"
	"github.com/sessiontier/sessiontier/lru"
	"github.com/sessiontier/sessiontier/redis"
	"github.com/sessiontier/sessiontier/telemetry"
)

const (
	// replayBatch is the largest number of deletes or writes sent in one
	// pipeline.
	replayBatch = 256
	// replayBatchBytes bounds the values of the writes sent in one
	// pipeline; a longer write goes alone. Each pipeline is bounded by
	// OpTimeout, which is honest because it then carries no more than
	// 512 KiB or one value Set may send (at most MaxValueBytes): a Redis
	// that takes such a Set in time takes each replay batch in time.
	replayBatchBytes = 512 << 10
	// replayInFlight is the number of write batches sent and not answered
	// yet: two, so that Redis runs one while the next is sent (100k
	// pending writes replay in about a fifth less time), each on a
	// connection of its own, each bounded by OpTimeout on its own.
	replayInFlight = 2
	// minProbeGap keeps the recovery loop from spinning on a breaker that
	// refuses a probe.
	minProbeGap = 10 * time.Millisecond
)

// wakeRecovery tells the recovery loop that there is work, unless the
// breaker is within its backoff wait: the loop then waits for the wait's
// end (or a change of the breaker's state) to probe, and replays whatever
// the outage tier holds once Redis answers, so a signal would only wake it
// for nothing. On this 2-core VM that wake-up, on every outage write, put
// the outage p99 at 64 µs (BenchmarkGetWhileRedisHangs); without it 14 µs.
// Nor while Redis refuses the replay (see refused): it is tried again
// every Breaker.OpenTimeout, not on every write queued behind it.
func (s *Store) wakeRecovery() {
	if s.brk.Rejecting() || s.replayRefused.Load() {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// recover is the Store's background goroutine, stopped by Close. It raises
// the breaker alerts, probes Redis while the breaker is open (PING bounded
// by OpTimeout, at the breaker's backoff, with no user traffic needed) and
// replays the outage tier once Redis answers.
func (s *Store) recover() {
	var last watched
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		if wait := s.step(&last); wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-s.life.Done():
			timer.Stop()
			return
		case <-s.brk.Changes():
		case <-s.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// watched is what the recovery loop saw of the breaker at its last step.
type watched struct {
	opens uint64 // breaker.Opens
	open  bool   // an outage was alerted and its end was not
}

// step does what the breaker's state calls for and returns when to step
// again; -1: on the next signal only.
func (s *Store) step(last *watched) time.Duration {
	st := s.brk.State()
	if opens := s.brk.Opens(); opens != last.opens {
		last.opens = opens
		if !last.open {
			last.open = true
			s.alerts.raise(context.Background(), telemetry.Alert{Kind: telemetry.AlertBreakerOpen, Severity: telemetry.SeverityError,
				Message: "Redis is unreachable: the store serves from memory and queues writes for replay"})
		}
	}
	if st == breaker.Closed && last.open {
		last.open = false
		// What this instance holds may have changed while it was cut off.
		if s.local != nil {
			s.local.Invalidate()
		}
		s.alerts.raise(context.Background(), telemetry.Alert{Kind: telemetry.AlertBreakerClosed, Severity: telemetry.SeverityInfo,
			Message: "Redis answers again"})
	}
	if st == breaker.Closed {
		if s.out == nil || !s.out.active() {
			return -1
		}
		if !s.replay(s.life, false) { // Close must not wait for a long replay to end
			return s.opts.Breaker.OpenTimeout // Redis failed again: retry later
		}
		return -1
	}
	if at := s.brk.RetryAt(); !at.IsZero() && at.After(s.now()) {
		return at.Sub(s.now())
	}
	ctx, end := s.tel.Task(context.Background(), "probe")
	err := s.brk.Do(ctx, func() error { return s.remote.Ping(ctx) })
	end(err)
	if err != nil {
		return minProbeGap
	}
	return 0
}

// replay applies the outage tier to Redis: every delete, then every
// write, pipelined in batches of at most replayBatch (writes also of at
// most replayBatchBytes), each write only if Redis still holds what it
// replaces; then again for what came meanwhile. A write that Redis
// refuses alone (a key of another type) is dropped, counted and alerted as
// lost; only a failure of Redis stops the replay. final (from Close)
// bypasses the breaker. It reports whether the tier was drained.
func (s *Store) replay(ctx context.Context, final bool) (drained bool) {
	start := time.Now()
	ctx, end := s.tel.Task(ctx, "replay")
	defer func() {
		if !drained {
			end(errReplayStopped)
		} else {
			s.replayRefused.Store(false)
			end(nil)
		}
	}()
	var applied, conflicts, expired int
	do := func(op func() error) error { // every replayed batch
		if final {
			return op() // Close: nothing is retried, so no replay_refused
		}
		err := s.brk.Do(ctx, op)
		s.refused(ctx, err)
		return err
	}
	defer func() {
		s.watchFallback(context.Background())
		if conflicts > 0 {
			s.alerts.raise(context.Background(), telemetry.Alert{Kind: telemetry.AlertReplayConflict, Severity: telemetry.SeverityWarn,
				Message: "Redis changed sessions written here during the outage: Redis's values won", Count: int64(conflicts)})
		}
		if drained && applied+conflicts+expired > 0 {
			s.alerts.raise(context.Background(), telemetry.Alert{Kind: telemetry.AlertReplayDone, Severity: telemetry.SeverityInfo,
				Message: fmt.Sprintf("replayed the outage tier in %v: %d applied, %d conflicts, %d expired meanwhile",
					time.Since(start).Round(time.Millisecond), applied, conflicts, expired),
				Count: int64(applied)})
		}
	}()
	for ctx.Err() == nil {
		ids, seqs := s.out.tombBatch()
		// A write abandoned before (timed out, perhaps still in the network)
		// must not land after what is replayed now: retry later if it may.
		if !s.fence(ctx) {
			return false
		}
		for i := 0; i < len(ids) && ctx.Err() == nil; i += replayBatch {
			j := min(i+replayBatch, len(ids))
			ws := s.beginLocals(ids[i:j])
			if err := do(func() error { return s.remote.DeleteMany(ctx, ids[i:j]) }); err != nil {
				s.endLocals(ws, nil)
				return false
			}
			s.replayApplied.Add(uint64(j - i)) // counted before the tier shows them gone
			s.endLocals(ws, s.out.tombsApplied(ids[i:j], seqs[i:j]))
			applied += j - i
			s.announce(ctx, ids[i:j]...)
		}
		writes, wseqs, exp := s.out.writeBatch(s.now())
		expired += exp
		if len(ids) == 0 && len(writes) == 0 {
			break
		}
		if !s.fence(ctx) {
			return false
		}
		a, c, ok := s.replayWrites(ctx, writes, wseqs, do)
		applied, conflicts = applied+a, conflicts+c
		if !ok {
			return false
		}
	}
	return !s.out.active()
}

// beginLocals begins a local write of each of ids, whose deletes replay
// sends: a change of one of them that overlaps the DEL then leaves both
// outcomes as bases (see lastSeen); nil without a local tier.
func (s *Store) beginLocals(ids []string) []lru.Write {
	if s.local == nil {
		return nil
	}
	ws := make([]lru.Write, len(ids))
	for i, id := range ids {
		ws[i] = s.local.Begin(id)
	}
	return ws
}

// endLocals ends the writes of beginLocals. An id free of outage state
// once its DEL was applied is absent in Redis, as this instance knows:
// its copy and notes go, so that its next outage write replays onto the
// absent key, not onto what it held before the delete (before, such a
// write conflicted with the store's own delete, and was lost). The copy
// of an id with a pending write queued behind the delete stays: it is
// that write's, replayed next.
func (s *Store) endLocals(ws []lru.Write, free []bool) {
	for i, w := range ws {
		if free != nil && free[i] {
			s.local.EndDelete(w)
		} else {
			s.local.EndKeep(w)
		}
	}
}

// replayWrites replays writes, batch after batch, with up to
// replayInFlight batches in flight so that Redis runs one while the next is
// sent. Each id appears once in writes, so the batches are independent. It
// reports what was applied and what conflicted, and false if Redis failed
// (what was not answered waits for the next try).
func (s *Store) replayWrites(ctx context.Context, writes []redis.Replay, wseqs []uint64, do func(func() error) error) (applied, conflicts int, ok bool) {
	var (
		mu     sync.Mutex // guards applied, conflicts and failed
		failed bool
		wg     sync.WaitGroup
		slots  = make(chan struct{}, replayInFlight)
	)
	for i, j := 0, 0; i < len(writes) && ctx.Err() == nil; i = j {
		j = writeBatchEnd(writes, i)
		slots <- struct{}{}
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop {
			<-slots
			break
		}
		batch, seqs := writes[i:j], wseqs[i:j]
		wg.Go(func() {
			defer func() { <-slots }()
			if batch, seqs = s.out.sending(batch, seqs); len(batch) == 0 {
				return
			}
			var out []redis.Outcome
			if err := do(func() (err error) { out, err = s.remote.ReplayWrites(ctx, batch); return err }); err != nil {
				s.out.writesUnknown(batch, seqs) // it may land yet: what replaces it accepts it
				mu.Lock()
				failed = true // Redis failed: the whole batch waits for the next try
				mu.Unlock()
				return
			}
			a, c := s.replayed(ctx, batch, seqs, out)
			mu.Lock()
			applied, conflicts = applied+a, conflicts+c
			mu.Unlock()
		})
	}
	wg.Wait()
	return applied, conflicts, !failed
}

// replayed records the outcome of one batch of replayed writes.
func (s *Store) replayed(ctx context.Context, batch []redis.Replay, seqs []uint64, out []redis.Outcome) (applied, conflicts int) {
	done := make([]bool, len(out)) // applied; conflicts and failures are dropped alike
	var failed []lostWrite
	var changed []string // announced in one round trip
	for k, w := range batch {
		switch {
		case out[k].Applied:
			done[k] = true
			applied++
			changed = append(changed, w.ID)
			if s.local != nil && s.remote.PerKey() {
				// Written on a connection Redis does not track it for:
				// the copy would never hear of the next change. It stays
				// this store's last seen value.
				s.local.EndRevoke(s.local.Begin(w.ID))
			}
			continue
		case out[k].Err != nil: // Redis refused this write alone (a key of another type)
			failed = append(failed, lostWrite{bytes: int64(len(w.Value))})
		default:
			conflicts++ // Redis's value won
		}
		s.dropLocal(w.ID)
	}
	s.announce(ctx, changed...)
	s.replayApplied.Add(uint64(applied)) // counted before the tier shows them gone (see Stats)
	s.replayConflicts.Add(uint64(conflicts))
	s.lose(ctx, failed, false)
	s.out.writesDone(batch, seqs, done)
	return applied, conflicts
}

// writeBatchEnd returns the end of the replay batch of writes that starts
// at i: at most replayBatch writes and replayBatchBytes of values, or one
// longer write alone.
func writeBatchEnd(writes []redis.Replay, i int) int {
	j, bytes := i+1, len(writes[i].Value)
	for j < len(writes) && j-i < replayBatch && bytes+len(writes[j].Value) <= replayBatchBytes {
		bytes += len(writes[j].Value)
		j++
	}
	return j
}

// refused raises AlertReplayRefused when err, which stopped a replayed
// batch, is Redis's answer rather than its failure: Redis refuses writes for now
// (out of memory with noeviction, a script past its time, a failed
// snapshot, too few replicas, an ACL that denies a command the replay
// needs until an operator fixes it: see redis.Tier.ReplayWrites). The
// breaker stays closed, so nothing else
// would tell: the writes wait and are tried again every
// Breaker.OpenTimeout, and only then (see wakeRecovery). Once per
// episode, until a replay drains the tier. A reply the breaker counts as
// Redis unreachable (READONLY, LOADING…) is told by the breaker's alerts.
// Close's final replay does not call it: it retries nothing, and what it
// leaves is lost, and told so.
func (s *Store) refused(ctx context.Context, err error) {
	if !redis.IsReply(err) || redis.IsUnreachable(err) || !s.replayRefused.CompareAndSwap(false, true) {
		return
	}
	writes, bytes, tombs := s.out.counts()
	s.alerts.raise(ctx, telemetry.Alert{Kind: telemetry.AlertReplayRefused, Severity: telemetry.SeverityError,
		Message: "Redis answers but refuses the replay's writes (out of memory, busy, a failed snapshot, too few replicas, a permission): the writes and deletes accepted during the outage wait and are retried",
		Count:   int64(writes + tombs), Bytes: bytes})
}

// fence makes sure that no write abandoned before it can land after what
// replay writes next (see redis.Tier.Fence), and reports whether replay may
// go on. A Redis that refuses the fence (an ACL without CLIENT LIST or
// CLIENT KILL, a proxy, an in-process Redis) would otherwise stop replay
// for good: replay then goes on unfenced, and says so. A Redis that cannot
// serve it for now (unreachable, loading, or BUSY with a script past its
// time) has refused nothing: replay waits and tries again, a BUSY Redis
// alerted as refusing the replay.
func (s *Store) fence(ctx context.Context) bool {
	mark := s.out.fenceMark()
	err := s.remote.Fence(ctx)
	switch {
	case err == nil:
		s.settle(ctx, mark)
		return true
	case !redis.IsReply(err), redis.IsUnreachable(err):
		return false // Redis failed: try again later
	case redis.IsBusy(err):
		s.refused(ctx, err)
		return false
	}
	s.alerts.count(ctx, telemetry.Alert{Kind: telemetry.AlertUnfenced, Severity: telemetry.SeverityWarn,
		Message: "Redis refused CLIENT LIST or CLIENT KILL: replay went on without fencing writes abandoned at OpTimeout", Count: 1})
	s.settle(ctx, mark) // nothing more to wait for
	return true
}

// settle ends the doubt about writes that may have landed unseen before
// the Fence begun after mark (see outage.unfence): the copies of their
// sessions read here meanwhile are taken out of service and, in publish
// mode, the other instances are told (in tracking mode Redis told them as
// each landed). Past the ids remembered, every copy is revalidated and the
// others are owed a flush.
func (s *Store) settle(ctx context.Context, mark uint64) {
	ids, all := s.out.fenced(mark, s.now())
	if all {
		if s.local != nil {
			s.local.Invalidate()
		}
		if s.listener != nil {
			s.listener.Doubt()
		}
		return
	}
	if len(ids) > 0 {
		s.revoke(ids...)
		s.announce(ctx, ids...)
	}
}

// lose counts and alerts writes dropped before they reached Redis;
// evicted says they were evicted from a full outage tier.
func (s *Store) lose(ctx context.Context, lost []lostWrite, evicted bool) {
	if len(lost) == 0 {
		return
	}
	var bytes int64
	for _, l := range lost {
		bytes += l.bytes
	}
	n := int64(len(lost))
	s.pendingLost.Add(uint64(n))
	if evicted {
		s.alerts.count(ctx, telemetry.Alert{Kind: telemetry.AlertFallbackFull, Severity: telemetry.SeverityError,
			Message: "the outage tier is full and evicting sessions written during the outage", Count: n, Bytes: bytes})
	}
	s.alerts.count(ctx, telemetry.Alert{Kind: telemetry.AlertPendingLost, Severity: telemetry.SeverityError,
		Message: "writes accepted during a Redis outage were dropped before reaching Redis", Count: n, Bytes: bytes})
}

// watchFallback raises AlertFallbackHigh when the outage tier reaches 80%
// of a bound, once until it is back under 70% of both.
func (s *Store) watchFallback(ctx context.Context) {
	if s.out == nil {
		return
	}
	writes, bytes, _ := s.out.counts()
	l := s.opts.Fallback
	switch {
	case int64(writes)*5 >= int64(l.MaxEntries)*4 || bytes*5 >= l.MaxBytes*4:
		if s.fallbackHigh.CompareAndSwap(false, true) {
			s.alerts.raise(ctx, telemetry.Alert{Kind: telemetry.AlertFallbackHigh, Severity: telemetry.SeverityWarn,
				Message: "the outage tier is over 80% of a bound", Count: int64(writes), Bytes: bytes})
		}
	case int64(writes)*10 < int64(l.MaxEntries)*7 && bytes*10 < l.MaxBytes*7:
		s.fallbackHigh.Store(false)
	}
}
