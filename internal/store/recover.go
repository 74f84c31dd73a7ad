package store

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// chainSearchDepth bounds how far back from the stream's head recovery
// looks for this node's last chain link (cheap when the link is near the
// head, the common case). Past it, recovery reads the node's chain-head
// checkpoint (chainhead.go) and scans forward from the checkpoint's seq
// for the newest link, stopping chainHeadWindow (by received_at) past the
// newest link found; without a checkpoint (the first start of a version
// that writes one) or with nothing found, a new chain segment starts and
// verify reports it. An Open's ctx may lower it (tests:
// withChainSearchDepth).
const chainSearchDepth = 100_000

// recover rebuilds in-memory state after a start: this node's last chain
// hash, then, in the background (appends wait for it), the dedup index
// from the events stored within the window (see rebuildDedup). It starts
// the chain-head checkpoint's writer (stopped by Close).
func (l *Log) recover(ctx context.Context) error {
	heads, err := l.openChainHeads(ctx)
	if err != nil {
		return err
	}
	l.heads = heads
	if err := l.recoverChain(ctx); err != nil {
		return err
	}
	l.heads.start()
	l.rebuild, err = startDedupRebuild(ctx, l, time.Now().Add(-l.cfg.DedupWindow))
	return err
}

// recoverChain finds the newest event of this node's chain: backwards from
// the head, at most searchDepth events; past that from the checkpoint
// forwards (recoverFromCheckpoint).
func (l *Log) recoverChain(ctx context.Context) error {
	first, head, err := l.chainBounds(ctx)
	if err != nil {
		return err
	}
	l.lastHash = ""
	if head == 0 {
		return nil
	}
	depth := l.heads.searchDepth()
	lowest := first // of the range searched backwards
	if head-first >= depth {
		lowest = head - depth + 1
	}
	chunk := min(uint64(4096), depth)
	for end := head; ; {
		start := lowest
		if end-lowest >= chunk {
			start = end - chunk + 1
		}
		var found *event.Event
		if err := l.ScanRange(ctx, start, end, func(e *event.Event) bool {
			if e.Chain == l.cfg.NodeID {
				found = e
			}
			return true
		}); err != nil {
			return fmt.Errorf("store: recover chain: %w", err)
		}
		if found != nil {
			l.lastHash = found.Hash
			l.heads.record(&chainHead{Seq: found.Seq, Hash: found.Hash, ReceivedAt: found.ReceivedAt})
			return nil
		}
		if start == lowest {
			break
		}
		end = start - 1
	}
	if lowest == first || l.heads == nil {
		return nil // the whole stream holds no link of this chain
	}
	return l.recoverFromCheckpoint(ctx, first, lowest-1)
}

// recoverFromCheckpoint looks for this node's last link in [first, to],
// which the backward search did not reach: from the checkpoint's seq (or
// the first retained one) forwards, keeping the newest link, until an
// event received more than chainHeadWindow after it (or after the
// checkpoint's received_at while none is found). The node wrote the
// checkpoint at most chainHeadInterval before it stopped, so its later
// links lie within the window. Without a checkpoint, or with no link
// found, lastHash stays empty: a new chain segment starts.
func (l *Log) recoverFromCheckpoint(ctx context.Context, first, to uint64) error {
	cp, ok, err := l.heads.load(ctx)
	if err != nil {
		return fmt.Errorf("store: recover chain: %w", err)
	}
	if !ok {
		l.cfg.Logger.Warn("log: this node's last chain link is not within the search depth and it has no chain-head checkpoint; starting a new chain segment (verify will report it)", "node", l.cfg.NodeID, "depth", l.heads.searchDepth())
		return nil
	}
	var (
		found   *event.Event
		scanned uint64
	)
	until := cp.ReceivedAt.Add(chainHeadWindow)
	if err := l.ScanRange(ctx, max(cp.Seq, first), to, func(e *event.Event) bool {
		scanned++
		if e.Chain == l.cfg.NodeID {
			found = e
			until = e.ReceivedAt.Add(chainHeadWindow)
			return true
		}
		return !e.ReceivedAt.After(until)
	}); err != nil {
		return fmt.Errorf("store: recover chain: from the checkpoint: %w", err)
	}
	if found == nil {
		l.cfg.Logger.Warn("log: no event of this node's chain found from its chain-head checkpoint; starting a new chain segment", "node", l.cfg.NodeID, "checkpoint_seq", cp.Seq, "first", first, "scanned", scanned)
		return nil
	}
	l.lastHash = found.Hash
	l.heads.record(&chainHead{Seq: found.Seq, Hash: found.Hash, ReceivedAt: found.ReceivedAt})
	l.cfg.Logger.Info("log: chain position found from the chain-head checkpoint", "node", l.cfg.NodeID, "checkpoint_seq", cp.Seq, "seq", found.Seq, "scanned", scanned)
	return nil
}
