package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/domain"
)

// DeliveryHead is how far live delivery has got: the seq of the last event
// offered to the live subscriptions (the hub's Head).
type DeliveryHead interface {
	Head() uint64
}

// Admission holds publishers back while live delivery falls behind what
// the log has acknowledged (issue 12 item 1).
//
// Why: the log accepts events faster than a saturated node can fan them
// out. Without a bound, every acknowledged event waits behind the whole
// backlog and every client's latency climbs to seconds. Publishers that
// wait for their answer (HTTP, WebSocket, OTLP, syslog over TCP) are slowed
// instead, so what is accepted is delivered young. Nothing is refused: a
// request held for MaxWait is appended anyway, so a stalled hub slows
// producers but never loses their events.
//
// The lag is measured up to the hub's dispatch (events offered to the
// client queues), not up to the socket writes: dispatch never waits for a
// client, so no client can slow ingestion by reading slowly — with a
// measure that included the clients' queues, a few connections reading
// nothing would throttle every producer until their queues overflowed.
// A node saturated by fan-out falls behind in dispatch too (its writers
// and its dispatcher share the CPU), which is what this catches; one slow
// client is lagged by its own queue bound instead.
type Admission struct {
	Head DeliveryHead
	// MaxLag is how old the oldest acknowledged, not yet dispatched batch
	// may be before new publishes wait. Zero disables admission.
	MaxLag time.Duration
	// MaxWait bounds how long one publish is held.
	MaxWait time.Duration

	mu sync.Mutex
	// marks are acknowledged batches not yet known to be dispatched, in
	// seq order: the front's age is the delivery lag.
	marks []appendMark
}

type appendMark struct {
	seq uint64
	at  time.Time
}

// maxMarks bounds the marks kept while the hub does not move. When full,
// new batches are not recorded: the front, the oldest, is what the lag is
// measured from.
const maxMarks = 1 << 16

// admissionPoll is how often a held publish looks at the hub again.
const admissionPoll = 2 * time.Millisecond

// lag is the age of the oldest acknowledged batch the hub has not yet
// offered to its subscriptions (0 when it is caught up).
func (a *Admission) lag(now time.Time) time.Duration {
	head := a.Head.Head()
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	for i < len(a.marks) && a.marks[i].seq <= head {
		i++
	}
	if i > 0 {
		n := copy(a.marks, a.marks[i:])
		a.marks = a.marks[:n]
	}
	if len(a.marks) == 0 {
		return 0
	}
	return now.Sub(a.marks[0].at)
}

// wait holds the caller while delivery lags by more than MaxLag, for at
// most MaxWait, and returns how long it held it.
func (a *Admission) wait(ctx context.Context, now func() time.Time) (time.Duration, error) {
	if a == nil || a.MaxLag <= 0 {
		return 0, nil
	}
	start := now()
	if a.lag(start) <= a.MaxLag {
		return 0, nil
	}
	t := start
	var timer *time.Timer
	for a.lag(t) > a.MaxLag && t.Sub(start) < a.MaxWait {
		if timer == nil {
			timer = time.NewTimer(admissionPoll)
			defer timer.Stop()
		} else {
			timer.Reset(admissionPoll)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return t.Sub(start), ctx.Err()
		}
		t = now()
	}
	return t.Sub(start), nil
}

// appended records an acknowledged batch: its highest new seq and when
// the log acknowledged it.
func (a *Admission) appended(acks []domain.Ack, at time.Time) {
	if a == nil || a.MaxLag <= 0 {
		return
	}
	var top uint64
	for _, k := range acks {
		if !k.Duplicate && k.Seq > top {
			top = k.Seq
		}
	}
	if top == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Concurrent publishers finish out of order. A batch below the newest
	// mark is not recorded: that mark, acknowledged earlier, already makes
	// the lag at least as large until the hub passes it.
	if n := len(a.marks); (n == 0 || a.marks[n-1].seq < top) && n < maxMarks {
		a.marks = append(a.marks, appendMark{seq: top, at: at})
	}
}
