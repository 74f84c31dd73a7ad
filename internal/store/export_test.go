package store

import (
	"context"

	"github.com/vigil-sec/vigil/internal/event"
)

// WithRebuildGate returns cfg with its dedup rebuild held until gate is
// closed (for the external tests of this package).
func WithRebuildGate(cfg Config, gate <-chan struct{}) Config {
	cfg.rebuildGate = gate
	return cfg
}

// ConsumerScanForBench reads [from, to] through the ordered-consumer path
// alone, to measure it against the batched direct get.
func (l *Log) ConsumerScanForBench(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error {
	_, err := l.consumerScan(ctx, from, to, fn)
	return err
}

// withChainSearchDepth returns ctx making the Open it is passed to search
// back at most depth events for this node's last chain link before it
// reads the chain-head checkpoint (chainSearchDepth), so that a test can
// pass that depth with a few hundred events.
func withChainSearchDepth(ctx context.Context, depth uint64) context.Context {
	return context.WithValue(ctx, chainSearchDepthKey{}, depth)
}
