package ingest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// movableHead is the hub's Head as admission sees it: the test moves it
// and counts how often admission looked.
type movableHead struct {
	seq   atomic.Uint64
	looks atomic.Int64
}

func (h *movableHead) Head() uint64 { h.looks.Add(1); return h.seq.Load() }

// heldRecorder is an Observer that keeps what admission reported.
type heldRecorder struct{ held, holds atomic.Int64 }

func (r *heldRecorder) Ingested([]*event.Event, time.Duration) {}
func (r *heldRecorder) SensitiveDropped(int)                   {}
func (r *heldRecorder) Held(d time.Duration)                   { r.held.Add(int64(d)) }

// admissionService is a Service over memLog whose clock the test moves.
func admissionService(maxLag, maxWait time.Duration) (*Service, *memLog, *movableHead, *heldRecorder, *atomic.Int64) {
	l, head, rec := &memLog{}, &movableHead{}, &heldRecorder{}
	s := New(l, event.DefaultLimits(), rec).WithAdmission(&Admission{Head: head, MaxLag: maxLag, MaxWait: maxWait})
	base, offset := time.Now(), &atomic.Int64{}
	s.now = func() time.Time { return base.Add(time.Duration(offset.Load())) }
	return s, l, head, rec, offset
}

// publishAsync publishes one event in a goroutine owned by the test; the
// channel gets the result once.
func publishAsync(ctx context.Context, s *Service) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := s.Publish(ctx, publisher, []*event.Event{newEvent("auth.login")})
		done <- err
	}()
	return done
}

// TestAdmissionHoldsWhileDeliveryLags: once an acknowledged batch has
// waited longer than MaxLag for the hub, the next publish is held until
// the hub passes it, and the time held is reported.
func TestAdmissionHoldsWhileDeliveryLags(t *testing.T) {
	s, l, head, rec, clock := admissionService(50*time.Millisecond, time.Hour)
	ctx := context.Background()
	if _, err := s.Publish(ctx, publisher, []*event.Event{newEvent("auth.login")}); err != nil {
		t.Fatal(err)
	}
	// Young backlog: not held, and nothing reported (the observer counts
	// holds; a publish let straight in is not one).
	clock.Add(int64(time.Millisecond))
	if _, err := s.Publish(ctx, publisher, []*event.Event{newEvent("auth.login")}); err != nil || rec.held.Load() != 0 || rec.holds.Load() != 0 {
		t.Fatalf("publish behind a 1 ms lag: err %v, held %v in %d holds", err, time.Duration(rec.held.Load()), rec.holds.Load())
	}
	clock.Add(-int64(time.Millisecond))
	clock.Add(int64(60 * time.Millisecond)) // seq 1 and 2 now wait 60 ms for the hub
	done := publishAsync(ctx, s)
	testkit.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := head.looks.Load(); n < 10 {
			return errors.New("admission has not looked at the hub ten times yet")
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("publish returned (%v) while delivery lagged 60 ms > 50 ms", err)
	default:
	}
	head.seq.Store(1) // seq 2 still waits (60 ms)
	looks := head.looks.Load()
	testkit.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if head.looks.Load() < looks+5 {
			return errors.New("admission has not looked again")
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("publish returned (%v) while seq 2 still lagged", err)
	default:
	}
	clock.Add(int64(7 * time.Millisecond)) // held for 7 ms on the service's clock
	head.seq.Store(2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(l.got) != 3 {
		t.Fatalf("%d events appended, want 3", len(l.got))
	}
	if got := time.Duration(rec.held.Load()); got != 7*time.Millisecond {
		t.Fatalf("the observer was told of a %v hold, want 7ms", got)
	}
}

// TestAdmissionNeverRefuses: a hub that does not move slows publishers to
// one batch per MaxWait, but every event is appended.
func TestAdmissionNeverRefuses(t *testing.T) {
	s, l, _, _, clock := admissionService(10*time.Millisecond, 30*time.Millisecond)
	ctx := context.Background()
	if _, err := s.Publish(ctx, publisher, []*event.Event{newEvent("auth.login")}); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(time.Second))
	done := publishAsync(ctx, s)
	// The hold ends on the service's clock: move it past MaxWait.
	testkit.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		clock.Add(int64(5 * time.Millisecond))
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return nil
		default:
			return errors.New("still held")
		}
	})
	if len(l.got) != 2 {
		t.Fatalf("%d events appended after the longest hold, want 2", len(l.got))
	}
}

// TestAdmissionHeldPublishCanBeCancelled: a client that gives up while
// held gets an error and nothing of its batch is stored.
func TestAdmissionHeldPublishCanBeCancelled(t *testing.T) {
	s, l, head, _, clock := admissionService(10*time.Millisecond, time.Hour)
	if _, err := s.Publish(context.Background(), publisher, []*event.Event{newEvent("auth.login")}); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	done := publishAsync(ctx, s)
	testkit.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if head.looks.Load() < 3 {
			return errors.New("not held yet")
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while held: %v, want context.Canceled", err)
	}
	if len(l.got) != 1 {
		t.Fatalf("%d events appended, want only the first", len(l.got))
	}
}

// TestAdmissionMarks: duplicates are not delivery work, a batch finishing
// after a later one adds no mark, and the marks stay bounded.
func TestAdmissionMarks(t *testing.T) {
	head := &movableHead{}
	a := &Admission{Head: head, MaxLag: time.Millisecond, MaxWait: time.Second}
	t0 := time.Now()
	a.appended([]domain.Ack{{Seq: 5, Duplicate: true}}, t0)
	if lag := a.lag(t0.Add(time.Minute)); lag != 0 {
		t.Fatalf("a duplicate-only batch made a lag of %v", lag)
	}
	a.appended([]domain.Ack{{Seq: 7}, {Seq: 8}}, t0)
	a.appended([]domain.Ack{{Seq: 6}}, t0.Add(time.Second))
	if len(a.marks) != 1 || a.marks[0].seq != 8 {
		t.Fatalf("marks %+v, want one at seq 8", a.marks)
	}
	if lag := a.lag(t0.Add(2 * time.Second)); lag != 2*time.Second {
		t.Fatalf("lag %v, want 2s", lag)
	}
	head.seq.Store(8)
	if lag := a.lag(t0.Add(2 * time.Second)); lag != 0 || len(a.marks) != 0 {
		t.Fatalf("hub at 8: lag %v, marks %d", lag, len(a.marks))
	}
	head.seq.Store(0)
	for i := 1; i <= maxMarks+10; i++ {
		a.appended([]domain.Ack{{Seq: uint64(100 + i)}}, t0)
	}
	if len(a.marks) != maxMarks {
		t.Fatalf("%d marks kept, want the bound %d", len(a.marks), maxMarks)
	}
}
