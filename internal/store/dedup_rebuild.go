package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Rebuild pulls: batches of rebuildBatch messages, two
// requested at a time so the server never waits for the next request, each
// expiring after rebuildExpires (then pulled again). Variables for tests.
var (
	rebuildBatch   = 4096 // with bodies: a few MB per pull
	rebuildExpires = 30 * time.Second
)

// rebuildSilence is the longest time without a pull ending that a rebuild
// attempt tolerates before it fails (and is retried).
const rebuildSilence = time.Minute

// rebuildDedup fills the dedup index with every event stored at or after
// since (issue 8, item 4). The index needs only tenant/id -> seq and the
// time stored: the tenant is in the subject (vigil.events.<tenant>.
// <category>.<severity>), the id is the body's first field, read without
// decoding the body (idOf). The messages are read through a pull consumer
// and handled in the subscription's callback without a hand-off per
// message. It runs in the background after Open (dedupRebuild); appends
// wait for it, so dedup is exact from the first append on. It returns the
// number of ids remembered.
func (l *Log) rebuildDedup(ctx context.Context, from, head uint64, progress *atomic.Uint64) (int, error) {
	l.recent.grow(int(min(head-from+1, 1<<24)))
	cons, err := l.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute, // removed by the server if we die
	})
	if err != nil {
		return 0, fmt.Errorf("store: rebuild dedup index: consumer: %w", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = l.stream.DeleteConsumer(dctx, name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return 0, nil // the window's messages were deleted: nothing would come
	}

	r := &rebuild{log: l, head: head, progress: progress, done: make(chan struct{}), ended: make(chan pullEnd, 4)}
	r.inbox = nats.NewInbox() + "."
	sub, err := l.nc.Subscribe(r.inbox+"*", r.handle)
	if err != nil {
		return 0, fmt.Errorf("store: rebuild dedup index: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// At most two batches are requested at a time: never drop one as a
	// slow consumer.
	_ = sub.SetPendingLimits(-1, -1)

	subject := "$JS.API.CONSUMER.MSG.NEXT." + StreamName + "." + name
	req := []byte(`{"batch":` + strconv.Itoa(rebuildBatch) + `,"expires":` + strconv.FormatInt(int64(rebuildExpires), 10) + `}`)
	tokens := 0
	pullNext := func() error {
		tokens++
		token := strconv.Itoa(tokens)
		r.mu.Lock()
		r.pulls = append(r.pulls, &pull{token: token})
		r.mu.Unlock()
		if err := l.nc.PublishRequest(subject, r.inbox+token, req); err != nil {
			return fmt.Errorf("store: rebuild dedup index: pull: %w", err)
		}
		return nil
	}
	for range 2 {
		if err := pullNext(); err != nil {
			return 0, err
		}
	}
	timer := time.NewTimer(rebuildSilence)
	defer timer.Stop()
	for {
		select {
		case <-r.done:
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.n, r.err
		case e := <-r.ended:
			// A pull ended before the head was reached: full, or expired
			// (the server was slow, or nothing was left to send).
			if e.expired && e.got == 0 {
				info, err := cons.Info(ctx)
				if err != nil {
					return 0, fmt.Errorf("store: rebuild dedup index: %w", err)
				}
				r.mu.Lock()
				last := r.last
				r.mu.Unlock()
				if info.NumPending == 0 && info.Delivered.Stream <= last {
					// Nothing left, and everything sent was handled: the
					// rest of the window was deleted meanwhile (retention).
					// (Messages sent to a later pull may still be on their
					// way: the last of them ends the rebuild.)
					r.mu.Lock()
					defer r.mu.Unlock()
					return r.n, nil
				}
			}
			if err := pullNext(); err != nil {
				return 0, err
			}
			timer.Reset(rebuildSilence)
		case <-timer.C:
			return 0, fmt.Errorf("store: rebuild dedup index: no pull ended in %v", rebuildSilence)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// rebuild is the state of one rebuildDedup, updated by the subscription's
// callback. Each pull request has its own reply subject, <inbox>.<token>,
// on which its end status comes; the messages come with their own subjects,
// and the server fills the pull requests in order, so a message belongs to
// the oldest pull still open.
type rebuild struct {
	log      *Log
	head     uint64
	progress *atomic.Uint64 // the last seq handled, for readiness
	inbox    string
	done     chan struct{} // closed at head, at the end of the stream or on an error
	ended    chan pullEnd  // a pull ended without reaching the head

	mu       sync.Mutex
	pulls    []*pull // open, oldest first
	last     uint64  // stream seq of the last message handled
	n        int
	err      error
	finished bool
}

type pull struct {
	token string
	got   int
}

type pullEnd struct {
	got     int
	expired bool
}

func (r *rebuild) handle(m *nats.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	if !strings.HasPrefix(m.Reply, "$JS.ACK.") {
		token := strings.TrimPrefix(m.Subject, r.inbox)
		i := slices.IndexFunc(r.pulls, func(p *pull) bool { return p.token == token })
		if i < 0 {
			return // not one of ours
		}
		p := r.pulls[i]
		r.pulls = slices.Delete(r.pulls, i, i+1)
		// A status ends a pull: 408 it expired, 404 nothing to send;
		// anything else is an error (the consumer is gone, a leader
		// changed), and this attempt is retried from the start.
		switch st := m.Header.Get("Status"); st {
		case "408", "404":
			r.ended <- pullEnd{got: p.got, expired: true} // room: two pulls at a time
		default:
			r.finish(fmt.Errorf("store: rebuild dedup index: status %s %s", st, m.Header.Get("Description")))
		}
		return
	}
	meta, err := m.Metadata()
	if err != nil {
		r.finish(fmt.Errorf("store: rebuild dedup index: metadata: %w", err))
		return
	}
	seq := meta.Sequence.Stream
	r.last = seq
	r.progress.Store(seq)
	if seq > r.head {
		r.finish(nil)
		return
	}
	// A message of another form was not stored by Append (a NATS
	// producer's mistake): it holds no id to remember.
	if key, ok := dedupKey(m.Subject, m.Data); ok {
		r.log.recent.remember(key, seq, meta.Timestamp)
		r.n++
	}
	if seq >= r.head || meta.NumPending == 0 {
		r.finish(nil)
		return
	}
	if len(r.pulls) == 0 {
		return
	}
	p := r.pulls[0]
	p.got++
	if p.got == rebuildBatch {
		r.pulls = r.pulls[1:]
		r.ended <- pullEnd{got: p.got}
	}
}

func (r *rebuild) finish(err error) {
	r.err, r.finished = err, true
	close(r.done)
}

// embeddedDuplicates is the embedded stream's JetStream dedup window: the
// server's minimum (see Open).
const embeddedDuplicates = 100 * time.Millisecond

// dedupRebuild runs rebuildDedup in the background after a start, so that
// the node serves reads at once, and holds appends until the index is
// complete: a retried event is recognised from the first append on. A
// failed rebuild is retried (the index keeps what it learnt; remember is
// idempotent) until it succeeds or the log closes.
type dedupRebuild struct {
	ready      chan struct{} // closed once the index holds every id of the window
	done       chan struct{} // closed when the rebuild goroutine ends
	writerDone chan struct{} // closed when the snapshot writer ends
	cancel     context.CancelFunc

	// from and head bound the events read from the log; progress is the
	// last seq read (readiness reports it).
	from, head uint64
	progress   atomic.Uint64
	// snapshotHead is the head of the last snapshot written (Close skips
	// writing the same again).
	snapshotHead atomic.Uint64

	mu      sync.Mutex
	lastErr error // of the last failed attempt, for the appends kept waiting
	info    DedupIndexInfo
}

// DedupIndexInfo says how the dedup index was rebuilt after Open.
type DedupIndexInfo struct {
	IDs      int           // ids within the window
	Took     time.Duration // since Open found the window
	Snapshot bool          // started from a snapshot (periodic or of a clean stop)
	// Tail is how many of IDs were read from the log after the snapshot's
	// head (all of them without a snapshot).
	Tail int
}

// startDedupRebuild finds the window at once, from the first event stored
// at or after since to the head now (nothing is appended before the index
// is complete), takes the newest snapshot and reads the rest (the events
// after the snapshot's head, or the whole window without one) in the
// background. Nothing left to read is ready at once. It also starts the
// periodic snapshot writer.
func startDedupRebuild(ctx context.Context, l *Log, since time.Time) (*dedupRebuild, error) {
	from, err := l.SeqForTime(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("store: rebuild dedup index: %w", err)
	}
	head, err := l.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: rebuild dedup index: %w", err)
	}
	from = max(from, 1)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &dedupRebuild{ready: make(chan struct{}), done: make(chan struct{}), writerDone: make(chan struct{}), cancel: cancel}
	if interval := l.cfg.DedupSnapshotInterval; interval > 0 && l.dedupSnapshotPath() != "" {
		go l.snapshotLoop(rctx, r, interval) // owned by r: stopped by stop
	} else {
		close(r.writerDone)
	}
	start := time.Now()
	snapIDs, snapHead, snap := l.loadDedupSnapshot(since, head)
	if snap {
		from = max(from, snapHead+1) // the ids up to its head are in it
	}
	r.from, r.head = from, head
	if from > head {
		l.recent.coverTo(head)
		if snap {
			r.snapshotHead.Store(head) // the file on disk covers it
		}
		r.info = DedupIndexInfo{IDs: snapIDs, Took: time.Since(start), Snapshot: snap}
		close(r.ready)
		close(r.done)
		return r, nil
	}
	go func() { // owned by the Log: stopped by Close through stop
		defer close(r.done)
		if gate := l.cfg.rebuildGate; gate != nil {
			select {
			case <-gate:
			case <-rctx.Done():
				return
			}
		}
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			n, err := l.rebuildDedup(rctx, from, head, &r.progress)
			if err == nil {
				l.recent.coverTo(head)
				r.mu.Lock()
				r.info = DedupIndexInfo{IDs: snapIDs + n, Took: time.Since(start), Snapshot: snap, Tail: n}
				r.mu.Unlock()
				close(r.ready)
				return
			}
			if rctx.Err() != nil {
				return
			}
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
			select {
			case <-time.After(delay):
			case <-rctx.Done():
				return
			}
		}
	}()
	return r, nil
}

// readyErr says why appends are not accepted yet (nil once they are): the
// readiness probe reports it, so that a node is not "ready" while it
// would hold every append.
func (r *dedupRebuild) readyErr() error {
	if r == nil {
		return nil
	}
	select {
	case <-r.ready:
		return nil
	default:
	}
	read := uint64(0)
	if p := r.progress.Load(); p >= r.from {
		read = p - r.from + 1
	}
	return fmt.Errorf("store: dedup index rebuilding: %d of %d events read (appends wait for it)", read, r.head-r.from+1)
}

// wait returns once the index is complete, or an error naming why an
// append cannot be taken yet. A nil r (a Log that was never opened) is
// ready.
func (r *dedupRebuild) wait(ctx context.Context) error {
	if r == nil {
		return nil
	}
	select {
	case <-r.ready:
		return nil
	default:
	}
	select {
	case <-r.ready:
		return nil
	case <-r.done:
		select {
		case <-r.ready:
			return nil
		default:
			return errors.New("store: append: the log closed before its dedup index was rebuilt")
		}
	case <-ctx.Done():
		r.mu.Lock()
		last := r.lastErr
		r.mu.Unlock()
		if last != nil {
			return fmt.Errorf("store: append: dedup index not rebuilt yet since the start (last attempt: %v): %w", last, ctx.Err())
		}
		return fmt.Errorf("store: append: dedup index not rebuilt yet since the start: %w", ctx.Err())
	}
}

// WaitDedupIndex waits until the dedup index rebuilt after Open is
// complete (appends wait for it too) and says how it was rebuilt.
func (l *Log) WaitDedupIndex(ctx context.Context) (DedupIndexInfo, error) {
	r := l.rebuild
	if r == nil {
		return DedupIndexInfo{}, nil
	}
	if err := r.wait(ctx); err != nil {
		return DedupIndexInfo{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info, nil
}

func (r *dedupRebuild) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	<-r.writerDone
}

// lastSnapshotHead is the head of the last periodic snapshot (0: none).
func (r *dedupRebuild) lastSnapshotHead() uint64 {
	if r == nil {
		return 0
	}
	return r.snapshotHead.Load()
}
