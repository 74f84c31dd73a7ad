package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// Appender is the log's append (store.Log), as benchmarks fill it.
type Appender interface {
	Append(ctx context.Context, events []*event.Event) ([]domain.Ack, error)
}

// AppendDemo appends n normalized demo events (seed 5: the same events in
// every benchmark) to log in batches of 1,000, failing tb on any error.
func AppendDemo(tb testing.TB, ctx context.Context, log Appender, n int) {
	tb.Helper()
	gen := demo.New(5)
	for done := 0; done < n; done += 1000 {
		batch := make([]*event.Event, min(1000, n-done))
		for i := range batch {
			batch[i] = gen.Next()
			if _, err := event.Normalize(batch[i], "default", time.Now(), event.DefaultLimits()); err != nil {
				tb.Fatal(err)
			}
		}
		if _, err := log.Append(ctx, batch); err != nil {
			tb.Fatal(err)
		}
	}
}
