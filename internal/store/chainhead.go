package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/internal/event"
)

// ChainHeadBucket is the KV bucket holding each node's chain-head
// checkpoint: the newest stored link of its chain, written at most once a
// second while it appends and once at Close. Recovery reads it when this
// node's last link is further from the stream's head than
// chainSearchDepth (recoverChain).
const ChainHeadBucket = "VIGIL_CHAIN_HEADS"

const (
	// chainHeadInterval is how often the checkpoint is written when it
	// changed.
	chainHeadInterval = time.Second
	// chainHeadWriteTimeout bounds one write of the checkpoint (the one at
	// Close included).
	chainHeadWriteTimeout = 2 * time.Second
	// chainHeadWindow is how far past the newest link found (by
	// received_at) the forward scan of a recovery reads before it stops:
	// the checkpoint is at most chainHeadInterval older than the node's
	// last link, and received_at is stamped by whichever node ingested an
	// event, so the rest absorbs clock skew between nodes.
	chainHeadWindow = 30 * time.Second
)

// chainHead is the checkpoint's value.
type chainHead struct {
	Seq        uint64    `json:"seq"`
	Hash       string    `json:"hash"`
	ReceivedAt time.Time `json:"received_at"`
}

// chainHeads keeps this node's chain-head checkpoint: appends record the
// newest stored link in memory (record), and one goroutine owned by the
// Log writes it to the KV bucket when it changed (run), never more than
// once per chainHeadInterval; Close stops it and writes the final value
// (close).
type chainHeads struct {
	kv     jetstream.KeyValue
	key    string
	depth  uint64 // how far back recovery searches before it reads the checkpoint
	logger *slog.Logger

	head    atomic.Pointer[chainHead] // newest stored link appended (or recovered)
	written *chainHead                // what the bucket holds; owned by run, then by close

	ctx      context.Context // cancelled by close: ends run and its write in flight
	cancel   context.CancelFunc
	done     chan struct{} // closed when run returns; nil until started
	once     sync.Once
	failures int
	failLog  rate.Sometimes
}

// chainSearchDepthKey is the context key of an Open's search depth
// override (tests: withChainSearchDepth in export_test.go).
type chainSearchDepthKey struct{}

// openChainHeads opens the checkpoint bucket (the log's replicas; one
// value per key) for this node. ctx is Open's.
func (l *Log) openChainHeads(ctx context.Context) (*chainHeads, error) {
	kv, err := OpenKeyValue(ctx, l.js, jetstream.KeyValueConfig{
		Bucket:      ChainHeadBucket,
		Description: "Vigil: the newest stored link of each node's integrity chain",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.replicas,
	})
	if err != nil {
		return nil, err
	}
	h := &chainHeads{kv: kv, key: KeyToken(l.cfg.NodeID), depth: chainSearchDepth, logger: l.cfg.Logger,
		failLog: rate.Sometimes{First: 1, Interval: 10 * time.Second}}
	if d, ok := ctx.Value(chainSearchDepthKey{}).(uint64); ok && d > 0 {
		h.depth = d
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// KeyToken is s as one token of a KV key: s itself when it is made of
// letters, digits, '-' and '_' (at most 128 bytes), else "sha256-" and a
// hex prefix of its SHA-256. Node ids, detection ids and the like name KV
// entries through it.
func KeyToken(s string) string {
	ok := s != "" && len(s) <= 128
	for i := 0; i < len(s) && ok; i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if ok {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + hex.EncodeToString(sum[:16])
}

// searchDepth is how many events back from the head recovery looks for
// this node's last link before it reads the checkpoint.
func (h *chainHeads) searchDepth() uint64 {
	if h == nil {
		return chainSearchDepth
	}
	return h.depth
}

// record makes c the newest link unless a newer one (a greater seq) is
// recorded already: batches settle in any order.
func (h *chainHeads) record(c *chainHead) {
	if h == nil || c == nil {
		return
	}
	for {
		old := h.head.Load()
		if old != nil && old.Seq >= c.Seq {
			return
		}
		if h.head.CompareAndSwap(old, c) {
			return
		}
	}
}

// noteBatch records the newest event of a settled batch that this append
// stored (not a duplicate, not failed): Append calls it once fl is done.
func (h *chainHeads) noteBatch(events []*event.Event, fl *inflight) {
	if h == nil {
		return
	}
	var newest *event.Event
	var seq uint64
	for i, e := range events {
		if a := fl.acks[i]; fl.keys[i] != "" && a.err == nil && !a.duplicate && a.seq > seq {
			newest, seq = e, a.seq
		}
	}
	if newest != nil {
		h.record(&chainHead{Seq: seq, Hash: newest.Hash, ReceivedAt: newest.ReceivedAt})
	}
}

// start runs the writer until close.
func (h *chainHeads) start() {
	h.done = make(chan struct{})
	go h.run() // owned by the Log: stopped and joined by close
}

func (h *chainHeads) run() {
	defer close(h.done)
	t := time.NewTicker(chainHeadInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			h.write(h.ctx)
		}
	}
}

// write puts the newest link into the bucket if it changed since the last
// successful write. A failure is logged and left for the next call.
func (h *chainHeads) write(ctx context.Context) {
	cur := h.head.Load()
	if cur == nil || cur == h.written {
		return
	}
	b, err := json.Marshal(cur)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, chainHeadWriteTimeout)
		_, err = h.kv.Put(wctx, h.key, b)
		cancel()
	}
	if err != nil {
		if ctx.Err() != nil {
			return // Close interrupted it: its final write follows
		}
		h.failures++
		h.failLog.Do(func() {
			h.logger.Warn("log: writing the chain-head checkpoint failed; retrying every second", "bucket", ChainHeadBucket, "key", h.key, "seq", cur.Seq, "failures", h.failures, "err", err)
		})
		return
	}
	if h.failures > 0 {
		h.logger.Info("log: chain-head checkpoint written again", "bucket", ChainHeadBucket, "key", h.key, "seq", cur.Seq, "failures", h.failures)
		h.failures = 0
	}
	h.written = cur
}

// close stops the writer and, if final, writes the newest link once more
// (within chainHeadWriteTimeout). Idempotent; nil-safe.
func (h *chainHeads) close(final bool) {
	if h == nil {
		return
	}
	h.once.Do(func() {
		h.cancel()
		if h.done != nil {
			<-h.done
		}
		if final {
			h.write(context.Background())
		}
	})
}

// load reads this node's checkpoint (ok false without one).
func (h *chainHeads) load(ctx context.Context) (c chainHead, ok bool, err error) {
	entry, err := h.kv.Get(ctx, h.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("store: chain-head checkpoint %s/%s: %w", ChainHeadBucket, h.key, err)
	}
	if err := json.Unmarshal(entry.Value(), &c); err != nil {
		return c, false, fmt.Errorf("store: chain-head checkpoint %s/%s: %w", ChainHeadBucket, h.key, err)
	}
	return c, true, nil
}
