package store

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// chainSearchDepth bounds how far back recovery looks for this node's last
// chain link; past it, a new chain segment starts (verify reports it).
const chainSearchDepth = 100_000

// recover rebuilds in-memory state after a start: this node's last chain
// hash, then, in the background (appends wait for it), the dedup index
// from the events stored within the window (see rebuildDedup).
func (l *Log) recover(ctx context.Context) error {
	if err := l.recoverChain(ctx); err != nil {
		return err
	}
	var err error
	l.rebuild, err = startDedupRebuild(ctx, l, time.Now().Add(-l.cfg.DedupWindow))
	return err
}

// recoverChain finds the newest event of this node's chain.
func (l *Log) recoverChain(ctx context.Context) error {
	first, head, err := l.chainBounds(ctx)
	if err != nil {
		return err
	}
	l.lastHash = ""
	if head == 0 {
		return nil
	}
	for end := head; end >= first && head-end < chainSearchDepth; {
		start := first
		if end >= first+4096 {
			start = end - 4095
		}
		found := ""
		if err := l.ScanRange(ctx, start, end, func(e *event.Event) bool {
			if e.Chain == l.cfg.NodeID {
				found = e.Hash
			}
			return true
		}); err != nil {
			return fmt.Errorf("store: recover chain: %w", err)
		}
		if found != "" {
			l.lastHash = found
			return nil
		}
		if start == first {
			break
		}
		end = start - 1
	}
	return nil
}
