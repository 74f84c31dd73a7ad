package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestStoredScanStopsOnCancel: a replay read from JetStream (below the
// recent-event ring, or with the ring off) ends with its context's error
// within scanCheckEvery events of the cancellation, on the batched direct
// path and on the ordered-consumer path that takes over at a gap, and
// leaves no subscription or goroutine behind. Before, the direct path
// delivered the rest of the 2,048-event batch in hand and then, since a
// select between a finished batch and a done context picks either, often
// whole further batches: a client that went away kept the hub decoding
// and queueing for it (issue 12 item 5, second pass).
func TestStoredScanStopsOnCancel(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), ReplayCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const total = 8000
	for i := 0; i < total; i += 1000 {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("c%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer path is taken from the first batch with a gap: one
	// deleted message in 6,001..8,000 moves a scan from 6,001 onto it.
	if err := l.stream.DeleteMsg(ctx, 6010); err != nil {
		t.Fatal(err)
	}
	full := func(from uint64) {
		t.Helper()
		n := 0
		if err := l.ScanRange(ctx, from, total, func(*event.Event) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
	}
	// Warm both paths up, then take the baseline the cancelled scans must
	// return to.
	full(1)
	full(6001)
	subs0, gor0 := l.nc.NumSubscriptions(), runtime.NumGoroutine()
	for _, c := range []struct {
		name string
		from uint64
	}{{"direct", 1}, {"consumer", 6001}} {
		t.Run(c.name, func(t *testing.T) {
			for round := range 5 {
				sctx, cancel := context.WithCancel(ctx)
				n := 0
				err := l.ScanRange(sctx, c.from, total, func(*event.Event) bool {
					if n++; n == 300 {
						cancel()
					}
					return true
				})
				cancel()
				if !errors.Is(err, context.Canceled) || n > 300+scanCheckEvery {
					t.Fatalf("round %d: canceled after 300 events: %d delivered, err %v (want at most %d and %v)", round, n, err, 300+scanCheckEvery, context.Canceled)
				}
			}
		})
	}
	replayjsWaitFor(t, "the scans' subscriptions and goroutines to end", func() bool {
		return l.nc.NumSubscriptions() <= subs0 && runtime.NumGoroutine() <= gor0
	}, func() string {
		return fmt.Sprintf("subscriptions %d (before %d), goroutines %d (before %d)", l.nc.NumSubscriptions(), subs0, runtime.NumGoroutine(), gor0)
	})
}

// replayjsWaitFor polls cond until it holds or 10 s have passed.
func replayjsWaitFor(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
