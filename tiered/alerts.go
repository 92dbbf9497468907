package tiered

import (
	"context"
	"sync"
	"time"

	"github.com/sessiontier/sessiontier/telemetry"
)

// alertInterval is the shortest time between two alerts of one kind that
// fire on counts (fallback_full, pending_lost, tombstones_full): the counts
// of the alerts held back in between are added to the next one.
const alertInterval = 10 * time.Second

// alerter hands alerts to the OnAlert hook, never under a lock of the
// Store's, and limits the rate of the alerts that fire on counts.
type alerter struct {
	hook func(context.Context, telemetry.Alert)
	now  func() time.Time

	mu   sync.Mutex                              // guards last and held
	last map[telemetry.AlertKind]time.Time       // when each kind last fired
	held map[telemetry.AlertKind]telemetry.Alert // counts held back
}

func newAlerter(hook func(context.Context, telemetry.Alert), now func() time.Time) *alerter {
	return &alerter{hook: hook, now: now, last: make(map[telemetry.AlertKind]time.Time), held: make(map[telemetry.AlertKind]telemetry.Alert)}
}

// raise fires al at once: for transitions, which are rare by nature. ctx
// is the operation's, where there is one.
func (a *alerter) raise(ctx context.Context, al telemetry.Alert) {
	a.hook(ctx, al)
}

// count fires al unless one of its kind fired within alertInterval, in
// which case its counts are held for the next one.
func (a *alerter) count(ctx context.Context, al telemetry.Alert) {
	now := a.now()
	a.mu.Lock()
	if h, ok := a.held[al.Kind]; ok {
		al.Count += h.Count
		al.Bytes += h.Bytes
		delete(a.held, al.Kind)
	}
	if now.Sub(a.last[al.Kind]) < alertInterval {
		a.held[al.Kind] = al
		a.mu.Unlock()
		return
	}
	a.last[al.Kind] = now
	a.mu.Unlock()
	a.raise(ctx, al)
}

// flush fires every alert held back.
func (a *alerter) flush(ctx context.Context) {
	a.mu.Lock()
	held := make([]telemetry.Alert, 0, len(a.held))
	for kind, al := range a.held {
		held = append(held, al)
		delete(a.held, kind)
		a.last[kind] = a.now()
	}
	a.mu.Unlock()
	for _, al := range held {
		a.raise(ctx, al)
	}
}
