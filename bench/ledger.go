package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"
)

// Phase outcomes of W4: what callers saw before, during and after the
// outage.
type PhaseStats struct {
	Calls    int64 // reads and writes begun in the phase
	Errors   int64 // calls that returned an error
	NotFound int64 // reads answered "no such session"
	// NotFoundRecovered counts, of NotFound, the reads begun once the
	// target was seen recovered: Redis back and, for sessiontier, its
	// breaker seen closed again (sampled every 10ms). A sessiontier read of
	// a session it holds no copy of is ErrNotFound while its breaker is
	// open (unless StrictReads): those are in NotFound alone.
	NotFoundRecovered int64
	Stale             int64 // reads answered with a version older than one acknowledged before the read began
	Acked             int64 // writes acknowledged
	Lost              int64 // of Acked: not in Redis at the end, and not superseded by a later acknowledged write
}

// ledger keeps the versions W4 writes, so that a read can tell a stale
// answer and the end of the run a lost write. Each session is written by
// one worker only (its index modulo the workers), so that the order of
// its acknowledgements is the order of its writes.
type ledger struct {
	size  int
	acked []atomic.Int64 // per session: the last version acknowledged
	next  atomic.Int64   // versions handed out

	recovered atomic.Bool // the target was seen recovered (see PhaseStats.NotFoundRecovered)

	mu    sync.Mutex    // guards phase
	phase map[int64]int // version → phase of its acknowledgement
	cnt   [3][6]atomic.Int64
}

func newLedger(sessions, size int) *ledger {
	return &ledger{size: max(size, 8), acked: make([]atomic.Int64, sessions), phase: make(map[int64]int)}
}

// value encodes version v in a session of the configured size.
func (l *ledger) value(v int64) []byte {
	b := make([]byte, l.size)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func version(b []byte) int64 {
	if len(b) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

const (
	cCalls = iota
	cErrors
	cNotFound
	cNotFoundRecovered
	cStale
	cAcked
)

// op returns W4's operation for worker w: W1's mix, versioned.
func (l *ledger) op(t Target, cfg Config, worker int, phaseOf func(time.Time) int) func(ctx context.Context) error {
	pick := picker(int64(worker+1), cfg.Sessions)
	r := rand.New(rand.NewSource(int64(worker + 1000)))
	return func(ctx context.Context) error {
		i := pick()
		ph := phaseOf(time.Now())
		l.cnt[ph][cCalls].Add(1)
		if r.Intn(100) < 5 {
			i = i - i%cfg.Workers + worker // this worker's own sessions only
			if i >= cfg.Sessions {
				i -= cfg.Workers
			}
			if i < 0 {
				return nil
			}
			v := l.next.Add(1)
			err := t.Set(ctx, sessionID(i), l.value(v), time.Hour)
			if err != nil {
				l.cnt[ph][cErrors].Add(1)
				return err
			}
			l.acked[i].Store(v)
			l.cnt[ph][cAcked].Add(1)
			l.mu.Lock()
			l.phase[v] = ph
			l.mu.Unlock()
			return nil
		}
		want, recovered := l.acked[i].Load(), l.recovered.Load()
		b, err := t.Get(ctx, sessionID(i))
		switch {
		case errors.Is(err, ErrNotFound):
			l.cnt[ph][cNotFound].Add(1)
			if recovered {
				l.cnt[ph][cNotFoundRecovered].Add(1)
			}
			return nil
		case err != nil:
			l.cnt[ph][cErrors].Add(1)
			return err
		case version(b) < want:
			l.cnt[ph][cStale].Add(1)
		}
		return nil
	}
}

// storer is a target that keeps values in Redis in a form of its own.
type storer interface{ stored(raw []byte) []byte }

// settle counts, once the run is over, the acknowledged writes Redis does
// not hold: the last acknowledged version of a session, missing or older
// in Redis, is lost (an earlier one was superseded by it). t decodes what
// Redis holds, if it keeps values in a form of its own.
func (l *ledger) settle(ctx context.Context, s *Server, t Target) ([3]PhaseStats, error) {
	decode := func(raw []byte) []byte { return raw }
	if st, ok := t.(storer); ok {
		decode = st.stored
	}
	var out [3]PhaseStats
	for ph := range out {
		c := &l.cnt[ph]
		out[ph] = PhaseStats{Calls: c[cCalls].Load(), Errors: c[cErrors].Load(), NotFound: c[cNotFound].Load(),
			NotFoundRecovered: c[cNotFoundRecovered].Load(),
			Stale:             c[cStale].Load(), Acked: c[cAcked].Load()}
	}
	const page = 1000
	for from := 0; from < len(l.acked); from += page {
		to := min(from+page, len(l.acked))
		keys := make([]string, 0, to-from)
		for i := from; i < to; i++ {
			keys = append(keys, key(sessionID(i)))
		}
		vals, err := s.admin.MGet(ctx, keys...).Result()
		if err != nil {
			return out, err
		}
		for i := from; i < to; i++ {
			v := l.acked[i].Load()
			if v == 0 {
				continue
			}
			got, _ := vals[i-from].(string)
			if got == "" || version(decode([]byte(got))) < v {
				l.mu.Lock()
				ph := l.phase[v]
				l.mu.Unlock()
				out[ph].Lost++
			}
		}
	}
	return out, nil
}
