package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testkit"
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
	const total = 8000
	l := replayjsLog(t, total, "c")
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
	subs0, gor0 := l.nc.NumSubscriptions(), testkit.OwnGoroutines()
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
	consumers := func() int {
		info, err := l.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	replayjsWaitFor(t, "the scans' subscriptions, consumers and goroutines to end", func() bool {
		return l.nc.NumSubscriptions() <= subs0 && consumers() == 0 && len(testkit.OwnGoroutines()) <= len(gor0)
	}, func() string {
		return fmt.Sprintf("subscriptions %d (before %d), consumers on the stream %d (want 0), goroutines outside the NATS server %d (before %d); new ones:\n%s",
			l.nc.NumSubscriptions(), subs0, consumers(), len(testkit.OwnGoroutines()), len(gor0), testkit.NewGoroutines(gor0, testkit.OwnGoroutines()))
	})
}

// TestStoredScanRetentionDuringScan: retention removing a range while a
// replay reads it from JetStream (a batch requested ahead now starts below
// the stream's first seq: the direct get skips to the first stored message,
// the batch no longer proves itself gap-free and the ordered consumer
// takes over) delivers every event still stored once, in order: a
// contiguous prefix read before the removal, then the stream from its new
// first seq to the end, never an event twice and nothing out of order.
func TestStoredScanRetentionDuringScan(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), ReplayCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const total, keepFrom = 8000, 7000
	for i := 0; i < total; i += 1000 {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	err = l.ScanRange(ctx, 1, total, func(e *event.Event) bool {
		got = append(got, e.Seq)
		if len(got) == 100 {
			// As retention would: everything below keepFrom goes, while
			// the scan holds its first batch and has asked for the
			// next ones.
			if err := l.stream.Purge(ctx, jetstream.WithPurgeSequence(keepFrom)); err != nil {
				t.Errorf("purge: %v", err)
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	jumps := 0
	for i := 1; i < len(got); i++ {
		switch {
		case got[i] == got[i-1]+1:
		case got[i] == keepFrom && jumps == 0:
			jumps++
		default:
			t.Fatalf("seq %d after %d (event %d of the replay)", got[i], got[i-1], i)
		}
	}
	if got[0] != 1 || got[len(got)-1] != total {
		t.Fatalf("replay from %d to %d, want 1 to %d", got[0], got[len(got)-1], total)
	}
	// The batches read before the purge are at most directAhead ahead of
	// the first: the scan must have met the removed range.
	if jumps != 1 {
		t.Fatalf("%d events without a jump to %d: the purge came after every batch was read", len(got), keepFrom)
	}
	t.Logf("delivered 1..%d before the purge reached the scan, then %d..%d", got[len(got)-(total-keepFrom+1)-1], keepFrom, total)
}

// TestStoredScanGapReturnsToDirect: a replay from JetStream that meets a
// gap (deleted messages) reads only the batch holding it through the
// ordered consumer and goes back to batched direct gets after it, instead
// of reading everything after the first gap through the consumer (~40 %
// more CPU per event); every stored seq is still delivered once, in
// order. Deleted here: 3000 and 3001 (batch 2,049–4,096) and 5500 (batch
// 4,097–6,144) of 7,000.
func TestStoredScanGapReturnsToDirect(t *testing.T) {
	ctx := context.Background()
	const total = 7000
	l := replayjsLog(t, total, "g")
	deleted := map[uint64]bool{3000: true, 3001: true, 5500: true}
	for seq := range deleted {
		if err := l.stream.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	before := l.gapScanned.Load()
	want := uint64(1)
	if err := l.ScanRange(ctx, 1, total, func(e *event.Event) bool {
		for deleted[want] {
			want++
		}
		if e.Seq != want {
			t.Fatalf("got seq %d, want %d", e.Seq, want)
		}
		want++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want != total+1 {
		t.Fatalf("replay ended at %d, want %d", want-1, total)
	}
	// The two batches with a gap, 4,093 events, through the consumer;
	// the rest (2,904) through direct gets.
	if n := l.gapScanned.Load() - before; n != uint64(2*directBatch-len(deleted)) {
		t.Fatalf("%d events read through the consumer, want %d (the two batches with gaps)", n, 2*directBatch-len(deleted))
	}
}

// TestStoredScanEndsWhenTheRestIsRemoved: a replay from JetStream whose
// remaining range is removed while it reads (a purge; retention removing
// everything) ends, with what it had read, instead of waiting on a
// consumer positioned past the last message for an append that may never
// come.
func TestStoredScanEndsWhenTheRestIsRemoved(t *testing.T) {
	ctx := context.Background()
	const total = 8000
	l := replayjsLog(t, total, "p")
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := 0
	err := l.ScanRange(sctx, 1, total, func(e *event.Event) bool {
		if n++; n == 100 {
			if err := l.stream.Purge(ctx); err != nil {
				t.Errorf("purge: %v", err)
			}
		}
		if e.Seq != uint64(n) {
			t.Fatalf("event %d has seq %d", n, e.Seq)
		}
		return true
	})
	if err != nil {
		t.Fatalf("after %d events: %v", n, err)
	}
	if n >= total {
		t.Fatalf("all %d events delivered: the purge came after every batch was read", n)
	}
	t.Logf("delivered 1..%d, the batches read before the purge", n)
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

// replayjsLog is a log with the recent-event ring off (every replay reads
// JetStream) holding total events appended in batches of 1,000, ids
// prefix<batch start>-<i>; closed when the test ends.
func replayjsLog(t *testing.T, total int, prefix string) *Log {
	t.Helper()
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir(), ReplayCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	for i := 0; i < total; i += 1000 {
		if _, err := l.Append(ctx, manyEvents(t, 1000, fmt.Sprintf("%s%d", prefix, i))); err != nil {
			t.Fatal(err)
		}
	}
	return l
}
