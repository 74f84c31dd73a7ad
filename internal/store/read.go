package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

// Read returns up to max events with seq >= from, in order. It uses one
// short-lived ordered consumer, which JetStream streams to us in batches:
// far faster than one request per message.
func (l *Log) Read(ctx context.Context, from uint64, max int) ([]*event.Event, error) {
	if from == 0 {
		from = 1
	}
	var out []*event.Event
	err := l.Scan(ctx, from, func(e *event.Event) bool {
		out = append(out, e)
		return len(out) < max
	})
	return out, err
}

// seqForTimeTimeout bounds SeqForTime when ctx has no deadline.
const seqForTimeTimeout = 10 * time.Second

// SeqForTime returns the seq of the first event stored at or after t, or
// head+1 when there is none. It is one direct get by start time (batch of
// one, which steps over deleted messages): no consumer is created on the
// server, so a client asking for from.time many times costs JetStream
// nothing that outlives the request.
func (l *Log) SeqForTime(ctx context.Context, t time.Time) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, seqForTimeTimeout)
		defer cancel()
	}
	req := fmt.Appendf(nil, `{"start_time":%q,"batch":1}`, t.UTC().Format(time.RFC3339Nano))
	// The batch answer is the message, then an end-of-batch status; the
	// request takes the first and drops the second.
	var msg *nats.Msg
	for {
		var err error
		msg, err = l.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+StreamName, req)
		if err == nil {
			break
		}
		// A replicated stream just created (or whose replicas restart)
		// answers direct gets only once a replica has set them up: ask
		// again until ctx ends.
		if !errors.Is(err, nats.ErrNoResponders) {
			return 0, fmt.Errorf("store: seq for time: %w", err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("store: seq for time: %w (%w)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	switch status := msg.Header.Get("Status"); status {
	case "":
	case "404":
		head, err := l.Head(ctx)
		if err != nil {
			return 0, fmt.Errorf("store: seq for time: %w", err)
		}
		return head + 1, nil
	default:
		return 0, fmt.Errorf("store: seq for time: direct get: status %s %s", status, msg.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("store: seq for time: direct get answered without a sequence (%q)", msg.Header.Get(jetstream.SequenceHeader))
	}
	return seq, nil
}

// Scan calls fn for every event from seq `from` up to the head at the time
// of the call, in order, until fn returns false.
func (l *Log) Scan(ctx context.Context, from uint64, fn func(*event.Event) bool) error {
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	if from == 0 {
		from = 1
	}
	if from > head {
		return nil
	}
	return l.ScanRange(ctx, from, head, fn)
}

// ScanRange calls fn for every event with from <= seq <= to stored when it
// starts (it never waits for appends), in order, until fn returns false.
// The part of the range inside the recent-event ring (ring.go) comes from
// memory; the rest is read with JetStream's batched direct get (several
// batches requested ahead, decoded as they arrive while fn runs), with an
// ordered consumer for a batch that has gaps. It ends with ctx's error
// within scanCheckEvery (or ringChunk) events of ctx ending. The events
// fn gets may be shared: fn must not modify them.
func (l *Log) ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error {
	return l.scanRange(ctx, from, to, l.recentRing(), fn)
}

// scanRange is ScanRange with ring (nil: read everything from the log).
func (l *Log) scanRange(ctx context.Context, from, to uint64, ring *recentRing, fn func(*event.Event) bool) error {
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	// A range that retention has emptied would never deliver: check first.
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	if info.State.LastSeq < from || info.State.FirstSeq > to {
		return nil
	}
	from = max(from, info.State.FirstSeq)
	// Only what is stored now: a consumer reading past the last seq
	// waits for appends (consumerScan relies on the cap).
	to = min(to, info.State.LastSeq)
	if ring != nil {
		// Retention removed what is below the first seq: never serve it
		// from memory either.
		ring.dropBelow(info.State.FirstSeq)
		l.spill.dropBelow(info.State.FirstSeq)
		return l.scanWithRing(ctx, ring, from, to, fn)
	}
	_, err = l.scanStored(ctx, from, to, fn)
	return err
}

// scanStored reads [from, to] from the log: batched direct gets; a batch
// they cannot prove gap-free is read with the ordered consumer, which
// skips gaps, and the direct gets go on after it. From the maxGapBatches-th
// such batch on the range is taken as sparse (many deleted messages): the
// consumer reads the rest. stopped reports that fn asked to stop.
//
// Before, the consumer read everything after the first gap: a replay from
// the front of a log whose retention removes events as new ones come (a
// backtest from the first seq, a client resuming from an old cursor) lost
// the race for its first batch and ran to the end on the consumer, ~40 %
// more CPU per event (docs/performance.md).
func (l *Log) scanStored(ctx context.Context, from, to uint64, fn func(*event.Event) bool) (stopped bool, err error) {
	for gaps := 1; ; gaps++ {
		next, done, err := l.directScan(ctx, from, to, fn)
		if err != nil || done || next > to {
			return done, err
		}
		// The batch from next (directBatch seqs at most) had a gap.
		end := to
		if gaps < maxGapBatches {
			end = min(to, next+directBatch-1)
		}
		drained, err := l.consumerScan(ctx, next, end, func(e *event.Event) bool {
			l.gapScanned.Add(1)
			stopped = !fn(e)
			return !stopped
		})
		if err != nil || stopped || drained || end == to {
			return stopped, err
		}
		from = end + 1
	}
}

// maxGapBatches bounds the consumers one scan creates (and deletes): the
// first maxGapBatches-1 batches with gaps get one each, the next one reads
// the rest of the range (creating a consumer costs about what reading
// 2,000 events through it does: worth it once, not for every batch of a
// sparse range).
const maxGapBatches = 4

// consumerScan is ScanRange through one ordered consumer with a deep pull
// window: it skips over deleted messages, which the direct reads leave to
// it. drained reports that the stream held nothing after the last message
// read (nothing more up to to either: seqs only grow).
func (l *Log) consumerScan(ctx context.Context, from, to uint64, fn func(*event.Event) bool) (drained bool, err error) {
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return false, fmt.Errorf("store: scan: consumer: %w", err)
	}
	// Stopping an ordered consumer leaves it on the server (with its
	// goroutines and state) until nats.go's inactivity threshold of five
	// minutes: each replay across a gap would leave one behind. Delete it
	// once the iterator is stopped (this defer runs after it.Stop).
	defer l.deleteScanConsumer(ctx, cons)
	window := int(min(to-from+1, 8192))
	it, err := cons.Messages(jetstream.PullMaxMessages(window))
	if err != nil {
		return false, fmt.Errorf("store: scan: %w", err)
	}
	defer it.Stop()
	// Nothing stored from `from` on (a purge or retention removed the
	// rest while the scan read; deleted last messages): Next would wait
	// for an append, which may never come. The count is the server's,
	// from the consumer's creation (a direct get answering 404 may come
	// from a replica that lags); anything appended since is past to.
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return true, nil
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for i := 0; ; i++ {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, fmt.Errorf("store: scan: %w", err)
		}
		// it.Stop runs on a goroutine of its own once ctx ends, and the
		// messages already pulled keep coming until it has: look at ctx
		// here too, or a cancelled scan may deliver to its end.
		if i%scanCheckEvery == scanCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		meta, err := msg.Metadata()
		if err != nil {
			return false, fmt.Errorf("store: scan: metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > to {
			return false, nil
		}
		e, err := decode(msg.Data(), seq)
		if err != nil {
			l.skipUndecodable(seq, err) // a body that is not an event
		} else if !fn(e) {
			return false, nil
		}
		if seq >= to || meta.NumPending == 0 {
			return meta.NumPending == 0, nil
		}
	}
}

// deleteScanConsumer deletes the server side of a scan's ordered consumer,
// even when the scan's ctx has ended (that is when it matters most).
func (l *Log) deleteScanConsumer(ctx context.Context, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return // never created on the server
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), scanConsumerDeleteTimeout)
	defer cancel()
	if err := l.stream.DeleteConsumer(dctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, nats.ErrConnectionClosed) {
		l.cfg.Logger.Warn("log: scan: could not delete its consumer (the server drops it after 5 min without interest)", "consumer", info.Name, "err", err)
	}
}

// scanConsumerDeleteTimeout bounds deleteScanConsumer's request.
const scanConsumerDeleteTimeout = 5 * time.Second

// Direct reads: batches of directBatch messages, directAhead of them
// requested at a time, each at most directMaxBytes (JetStream ends a batch
// early past it; the next one then starts where it ended).
const (
	directBatch    = 2048
	directAhead    = 3
	directMaxBytes = 8 << 20
	directWait     = 30 * time.Second
	// scanCheckEvery: a scan looks at its context at least every so many
	// events it delivers (as the ring does per chunk of ringChunk).
	scanCheckEvery = 256
)

// directReq is one batched direct get: messages from seq start on, without
// their headers, ended by a status message that carries the last seq sent.
type directReq struct {
	token string
	start uint64
	want  int
	evs   []*event.Event // one per message; nil for a body that is not an event
	last  uint64         // from the end-of-batch status
	err   error          // a status other than end-of-batch
	done  chan struct{}
}

// directScan delivers [from, to] as ScanRange does while the log holds
// every seq of it: a batch of n messages whose last seq is start+n-1 has
// no gap, so message i is seq start+i. At the first batch that is not so
// (deleted messages, or an answer other than a batch) it stops and returns
// the first seq not delivered, for the ordered consumer. stopped reports
// that fn asked to stop.
func (l *Log) directScan(ctx context.Context, from, to uint64, fn func(*event.Event) bool) (next uint64, stopped bool, err error) {
	inbox := nats.NewInbox() + "."
	var (
		mu   sync.Mutex
		reqs = map[string]*directReq{}
	)
	sub, err := l.nc.Subscribe(inbox+"*", func(m *nats.Msg) {
		mu.Lock()
		r := reqs[m.Subject[len(inbox):]]
		mu.Unlock()
		if r == nil {
			return // a request given up
		}
		if status := m.Header.Get("Status"); status != "" || len(m.Header) > 0 {
			if status == "204" {
				r.last, _ = strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
			} else {
				r.err = fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
			}
			close(r.done)
			return
		}
		// Decoded here, on the subscription's goroutine, while the
		// caller's goroutine runs fn over the previous batch.
		e, err := event.DecodeStoredOwned(m.Data) // the client allocated m.Data for this message
		if err == nil {
			e.SetStored(m.Data)
		} else {
			e = nil
		}
		r.evs = append(r.evs, e)
	})
	if err != nil {
		return from, false, fmt.Errorf("store: scan: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The reads ahead are bounded (directAhead × directMaxBytes): never
	// drop one as a slow consumer.
	_ = sub.SetPendingLimits(-1, -1)

	subject := "$JS.API.DIRECT.GET." + StreamName
	var (
		queue  []*directReq
		issued = from
		tokens uint64
	)
	issue := func() error {
		n := int(min(uint64(directBatch), to-issued+1))
		tokens++
		r := &directReq{token: strconv.FormatUint(tokens, 10), start: issued, want: n, evs: make([]*event.Event, 0, n), done: make(chan struct{})}
		mu.Lock()
		reqs[r.token] = r
		mu.Unlock()
		req := fmt.Appendf(nil, `{"seq":%d,"batch":%d,"max_bytes":%d,"no_hdr":true}`, issued, n, directMaxBytes)
		if err := l.nc.PublishRequest(subject, inbox+r.token, req); err != nil {
			return err
		}
		queue = append(queue, r)
		issued += uint64(n)
		return nil
	}
	forget := func(rs ...*directReq) {
		mu.Lock()
		for _, r := range rs {
			delete(reqs, r.token)
		}
		mu.Unlock()
	}
	defer func() { forget(queue...) }()
	timer := time.NewTimer(directWait)
	defer timer.Stop()
	next = from
	for next <= to {
		for len(queue) < directAhead && issued <= to {
			if err := issue(); err != nil {
				return next, false, nil // the consumer path reports it
			}
		}
		r := queue[0]
		// A select between a batch already here and a done ctx picks
		// either: look at ctx first, so a cancelled scan stops at once.
		if err := ctx.Err(); err != nil {
			return next, false, err
		}
		timer.Reset(directWait)
		select {
		case <-r.done:
		case <-ctx.Done():
			return next, false, ctx.Err()
		case <-timer.C:
			return next, false, nil
		}
		queue = queue[1:]
		forget(r)
		n := uint64(len(r.evs))
		if r.err != nil || n == 0 || r.last != r.start+n-1 {
			return next, false, nil // gaps or no batch: the consumer takes over
		}
		for i, e := range r.evs {
			if i%scanCheckEvery == scanCheckEvery-1 {
				if err := ctx.Err(); err != nil {
					return r.start + uint64(i), false, err
				}
			}
			if e == nil {
				l.skipUndecodable(r.start+uint64(i), errors.New("not an event"))
				continue
			}
			e.Seq = r.start + uint64(i)
			if !fn(e) {
				return e.Seq + 1, true, nil
			}
		}
		next = r.last + 1
		if int(n) < r.want {
			// Ended early (max_bytes): the batches asked ahead start
			// past next. Ask again from next.
			forget(queue...)
			queue, issued = queue[:0], next
		}
	}
	return next, false, nil
}

// Tail delivers every event from seq `from` on, in order, until ctx ends:
// the one ordered consumer that feeds a node's hub. This node's own
// appends also come straight from their acknowledgements (localfeed.go),
// so the hub need not wait for the stream to deliver them back.
func (l *Log) Tail(ctx context.Context, from uint64, fn func(*event.Event)) error {
	if from == 0 {
		from = 1
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("store: tail: consumer: %w", err)
	}
	// A tail stops when its owner does (the hub, the detection engine,
	// statistics, a restart of any of them): delete its consumer then, or
	// the server keeps it, and its state, for 5 minutes without interest.
	// In the background: while a cluster fails over the request waits
	// seconds, and the owner's restart must not wait with it.
	defer l.deleteTailConsumer(cons)
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("store: tail: %w", err)
	}
	ring := l.recentRing().feeder() // nil unless this tail fills the ring
	defer ring.release()
	spill := l.spill.feeder() // nil unless this tail fills the spill
	defer spill.release()
	local := l.local.attach() // nil unless this tail is the one fed
	defer l.local.detach(local)

	stored := make(chan tailMsg, tailPumpBuffer)
	stopPump := make(chan struct{})
	// Owned by the Log (Close waits): ends once it.Stop ends the iterator.
	if !l.tails.Go(func() { l.pumpTail(it, stored, stopPump) }) {
		it.Stop()
		return errors.New("store: tail: the log is closed")
	}
	// Not waited for here: an ordered consumer in the middle of a reset
	// (its server went away) returns from Next only when the reset ends,
	// seconds later, and the tail's owner must not stop or restart that
	// late.
	defer func() {
		it.Stop()
		close(stopPump)
	}()

	m := tailMerge{next: from, dropped: &l.local.dropped, fromLocal: &l.local.delivered, deliver: func(seq uint64, body []byte) {
		e, err := decode(body, seq)
		if err != nil {
			// A body that is not an event (a NATS producer's mistake) is
			// skipped, not fatal: the log stays readable.
			l.skipUndecodable(seq, err)
			return
		}
		ring.add(e, len(body)) // before fn: a replay bounded by what fn saw finds it
		spill.add(seq, body)
		fn(e)
	}}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-local:
			l.local.taken(b)
			m.local(b.appends)
		case msg := <-stored:
			if msg.err != nil {
				if ctx.Err() != nil || errors.Is(msg.err, jetstream.ErrMsgIteratorClosed) {
					return ctx.Err()
				}
				return fmt.Errorf("store: tail: %w", msg.err)
			}
			m.stored(msg.seq, msg.body)
		}
	}
}

// tailMsg is one message of a tail's consumer, or the error that ended it.
type tailMsg struct {
	seq  uint64
	body []byte
	err  error
}

// tailPumpBuffer bounds the consumer's messages read ahead of the tail.
const tailPumpBuffer = 512

// pumpTail moves the consumer's messages to out until the iterator ends
// (its error is the last message) or stop closes.
func (l *Log) pumpTail(it jetstream.MessagesContext, out chan<- tailMsg, stop <-chan struct{}) {
	for {
		var tm tailMsg
		msg, err := it.Next()
		if err == nil {
			var meta *jetstream.MsgMetadata
			if meta, err = msg.Metadata(); err == nil {
				tm = tailMsg{seq: meta.Sequence.Stream, body: msg.Data()}
			} else {
				err = fmt.Errorf("metadata: %w", err)
			}
		}
		if err != nil {
			tm = tailMsg{err: err}
		}
		select {
		case out <- tm:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// deleteTailConsumer deletes a stopped tail's consumer in the background
// (Close waits for it; closing the connection ends its request).
func (l *Log) deleteTailConsumer(cons jetstream.Consumer) {
	l.tails.Go(func() { l.deleteScanConsumer(context.Background(), cons) }) // after Close: nothing to delete through
}
