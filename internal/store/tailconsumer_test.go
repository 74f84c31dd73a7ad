package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// A tail that stops deletes its ordered consumer from the server, as a
// replay's does: before, every stopped tail (a hub, detection engine or
// statistics restart) left one on the stream for 5 minutes.
func TestTailDeletesItsConsumerWhenItStops(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, manyEvents(t, 10, "tail")); err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := l.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	before := consumers()
	for round := range 3 {
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		var got int
		go func() { // owned by this round: ends when tctx does
			done <- l.Tail(tctx, 1, func(*event.Event) {
				if got++; got == 10 {
					cancel()
				}
			})
		}()
		if err := <-done; err != context.Canceled {
			t.Fatalf("round %d: tail ended with %v after %d events", round, err, got)
		}
		replayjsWaitFor(t, "the tail's consumer to be deleted", func() bool { return consumers() <= before },
			func() string {
				return fmt.Sprintf("round %d: %d consumers on the stream, %d before", round, consumers(), before)
			})
	}
}
