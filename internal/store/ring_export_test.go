package store

import (
	"context"

	"github.com/vigil-sec/vigil/internal/event"
)

// StoredScanForBench is ScanRange without the recent-event ring: every
// event from JetStream (the path before the ring, and the one below it).
func (l *Log) StoredScanForBench(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error {
	return l.scanRange(ctx, from, to, nil, fn)
}
