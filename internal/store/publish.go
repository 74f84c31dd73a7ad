package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ackTimeout bounds how long a batch waits for JetStream's acknowledgements
// before its missing ones are looked up in the stream (embedded log) or
// count as failed (external NATS: they are forgotten by the dedup index,
// and JetStream's Nats-Msg-Id window catches a retry of one that was in
// fact stored).
var ackTimeout = 30 * time.Second // a variable for tests

// clusterAckTimeout is ackTimeout for an external NATS. A replicated
// stream that lost its leader drops what it is sent without an answer
// until a new leader is elected (seconds): its producers should hear so
// and retry within seconds, not half a minute later. The missing
// acknowledgements are looked up in the stream first (found means stored).
const clusterAckTimeout = 5 * time.Second

// lookupTimeout bounds all the lookups of one abandoned batch.
const lookupTimeout = 10 * time.Second

// lookupPasses and lookupPause: an event of an abandoned batch that is not
// found is looked up again, up to lookupPasses times lookupPause apart.
const (
	lookupPasses = 5
	lookupPause  = 200 * time.Millisecond
)

// batchPublisher publishes a batch of messages to JetStream without waiting
// between them and collects one acknowledgement per message: the same
// protocol as jetstream.PublishMsgAsync (a publish with a reply subject is
// acknowledged by the stream on that subject), with one reply subscription
// per connection, one entry per batch instead of one future, channel and
// timer per message, and the acknowledgement parsed without reflection.
type batchPublisher struct {
	nc     *nats.Conn
	prefix string // <inbox>.  replies are <inbox>.<batch>.<index>
	sub    *nats.Subscription

	mu      sync.Mutex
	next    uint64
	batches map[uint64]*inflight
	// onDone learns a finished batch's outcome before its producer is
	// woken; then onWoken passes it on (the tail's local fast path).
	onDone, onWoken func(*inflight)
	// find reads the messages stored on subject from seq from on
	// (Log.findStored; nil: abandoned batches are not looked up).
	find func(ctx context.Context, from uint64, subject string, fn func(key string, seq uint64) bool) (next uint64, err error)
	// timeout is how long a batch waits for its acknowledgements
	// (ackTimeout, or clusterAckTimeout on an external NATS).
	timeout time.Duration
}

// inflight is one batch whose acknowledgements are awaited.
type inflight struct {
	id       uint64
	keys     []string // dedup key per message; "" where nothing was published
	subjects []string // subject per message published
	// floor is a seq below every seq this batch's events can get: the
	// dedup index's known seq when they were reserved (dedupIndex.reserve).
	floor uint64
	acks  []pubAck
	// bodies are the stored bodies of the messages published, for the
	// local fast path to the tail (localfeed.go).
	bodies [][]byte
	// abandoned: the acknowledgements did not all come in time (abandon);
	// what was found is not fed to the tail, whose consumer brings it.
	abandoned bool
	left      int // acknowledgements awaited (negative until sealed)
	sealed    bool
	sealedAt  time.Time
	done      chan struct{} // closed when every acknowledgement is in
	timer     *time.Timer
}

type pubAck struct {
	seq       uint64
	duplicate bool // JetStream's own dedup window recognised the id
	err       error
}

var errAckTimeout = errors.New("no acknowledgement from JetStream in time")

func newBatchPublisher(nc *nats.Conn, onDone, onWoken func(*inflight)) (*batchPublisher, error) {
	p := &batchPublisher{nc: nc, prefix: nats.NewInbox() + ".", batches: map[uint64]*inflight{}, onDone: onDone, onWoken: onWoken, timeout: ackTimeout}
	sub, err := nc.Subscribe(p.prefix+"*.*", p.handle)
	if err != nil {
		return nil, fmt.Errorf("store: ack subscription: %w", err)
	}
	// Acknowledgements must never be dropped as a slow consumer: they are
	// bounded by the messages in flight.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("store: ack subscription: %w", err)
	}
	p.sub = sub
	return p, nil
}

// begin registers a batch of n messages.
func (p *batchPublisher) begin(n int) *inflight {
	fl := &inflight{keys: make([]string, n), subjects: make([]string, n), acks: make([]pubAck, n), bodies: make([][]byte, n), done: make(chan struct{})}
	p.mu.Lock()
	p.next++
	fl.id = p.next
	p.batches[fl.id] = fl
	p.mu.Unlock()
	return fl
}

// replySubject is where message i of fl is acknowledged.
func (p *batchPublisher) replySubject(fl *inflight, i int) string {
	var buf [96]byte
	b := append(buf[:0], p.prefix...)
	b = strconv.AppendUint(b, fl.id, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 10)
	return string(b)
}

// publish sends message i of fl (not yet sealed). A message that could not
// be sent is not counted: seal's n counts the ones that were.
func (p *batchPublisher) publish(fl *inflight, i int, msg *nats.Msg) error {
	msg.Reply = p.replySubject(fl, i)
	fl.subjects[i] = msg.Subject
	return p.nc.PublishMsg(msg)
}

// seal says that n messages were published for fl: it completes once their
// acknowledgements are in, or fails the missing ones after ackTimeout.
func (p *batchPublisher) seal(fl *inflight, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fl.sealed = true
	fl.sealedAt = time.Now()
	fl.left += n
	if fl.left <= 0 {
		p.finishLocked(fl)
		return
	}
	fl.timer = time.AfterFunc(p.timeout, func() { p.abandon(fl) })
}

// abandon ends a batch whose acknowledgements did not all come within
// ackTimeout. The missing ones are looked for in the stream when p.find
// is set: the messages stored since the batch's floor on each subject it
// published to are read once, and an id found there is stored. The rest
// count as failed.
func (p *batchPublisher) abandon(fl *inflight) {
	p.mu.Lock()
	if p.batches[fl.id] != fl {
		p.mu.Unlock()
		return // completed meanwhile
	}
	delete(p.batches, fl.id) // late acknowledgements are ignored from here on
	fl.abandoned = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	missing := map[string]int{} // dedup key -> index
	from := map[string]uint64{} // subject -> next seq to read
	for i := range fl.acks {
		if fl.keys[i] == "" || fl.acks[i].seq != 0 || fl.acks[i].err != nil {
			continue
		}
		fl.acks[i].err = errAckTimeout
		if p.find != nil && fl.subjects[i] != "" {
			missing[fl.keys[i]] = i
			from[fl.subjects[i]] = fl.floor + 1
		}
	}
	// A message the server has received but not yet stored is not found
	// at once: look again a few times before it counts as lost, or a
	// retry would store it a second time once the first copy lands. Each
	// pass reads only what was stored after the previous one read.
	for pass := 0; len(missing) > 0 && pass < lookupPasses; pass++ {
		if pass > 0 {
			select {
			case <-ctx.Done():
				pass = lookupPasses
				continue
			case <-time.After(lookupPause):
			}
		}
		for subject, seq := range from {
			next, err := p.find(ctx, seq, subject, func(key string, seq uint64) bool {
				if i, ok := missing[key]; ok {
					fl.acks[i] = pubAck{seq: seq}
					delete(missing, key)
				}
				return len(missing) > 0
			})
			if err == nil {
				from[subject] = next
			}
			if len(missing) == 0 {
				break
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fl.left = 0
	p.finishLocked(fl)
}

// abandonSealedBefore ends, as their timeout would, the batches sealed
// before t that still wait for acknowledgements: after the stream changed
// leader (or the connection was re-established) at t, acknowledgements of
// what was published before may never come. Batches sealed after t are
// left alone: their messages may still be on their way to the stream.
func (p *batchPublisher) abandonSealedBefore(t time.Time) {
	p.mu.Lock()
	var old []*inflight
	for _, fl := range p.batches {
		if fl.sealed && fl.sealedAt.Before(t) {
			old = append(old, fl)
		}
	}
	p.mu.Unlock()
	for _, fl := range old {
		p.abandon(fl)
	}
}

// lateBatches returns the done channels of every sealed batch when one of
// them has waited longer than late for its acknowledgements, else nil.
func (p *batchPublisher) lateBatches(late time.Duration) []chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	anyLate := false
	for _, fl := range p.batches {
		if fl.sealed && now.Sub(fl.sealedAt) > late {
			anyLate = true
			break
		}
	}
	if !anyLate {
		return nil
	}
	var done []chan struct{}
	for _, fl := range p.batches {
		if fl.sealed {
			done = append(done, fl.done)
		}
	}
	return done
}

func (p *batchPublisher) finishLocked(fl *inflight) {
	delete(p.batches, fl.id)
	if fl.timer != nil {
		fl.timer.Stop()
	}
	p.onDone(fl)
	close(fl.done)
	// After the producer's wake, not before: Go runs the goroutine made
	// runnable last first (the P's runnext), so what onWoken wakes (the
	// hub's tail, on which every subscriber waits) runs next, and the
	// producer waits in the run queue; the other way round the producer's
	// wake pushed the tail behind everything queued (tail hand-off p50
	// 63 µs, 7-10 µs this way: docs/performance.md, "Wake order").
	p.onWoken(fl)
}

func (p *batchPublisher) resolve(batch uint64, i int, a pubAck) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fl := p.batches[batch]
	if fl == nil || i < 0 || i >= len(fl.acks) || fl.acks[i].seq != 0 || fl.acks[i].err != nil {
		return // late (abandoned batch) or repeated
	}
	fl.acks[i] = a
	fl.left--
	if fl.sealed && fl.left == 0 {
		p.finishLocked(fl)
	}
}

// handle receives one acknowledgement.
func (p *batchPublisher) handle(m *nats.Msg) {
	tail := strings.TrimPrefix(m.Subject, p.prefix)
	bs, is, ok := strings.Cut(tail, ".")
	if !ok {
		return
	}
	batch, err1 := strconv.ParseUint(bs, 10, 64)
	i, err2 := strconv.Atoi(is)
	if err1 != nil || err2 != nil {
		return
	}
	p.resolve(batch, i, parseAck(m))
}

var (
	ackPrefix = []byte(`{"stream":"`)
	seqKey    = []byte(`"seq":`)
	errKey    = []byte(`"error"`)
	dupKey    = []byte(`"duplicate"`)
)

// parseAck reads JetStream's answer to a publish: {"stream":..,"seq":N}
// (with "duplicate":true when its window knew the id), an API error, or a
// status message (no stream listening).
func parseAck(m *nats.Msg) pubAck {
	d := m.Data
	if len(d) == 0 {
		if st := m.Header.Get("Status"); st != "" {
			return pubAck{err: fmt.Errorf("jetstream: status %s %s", st, m.Header.Get("Description"))}
		}
		return pubAck{err: errors.New("jetstream: empty acknowledgement")}
	}
	if bytes.HasPrefix(d, ackPrefix) && !bytes.Contains(d, errKey) {
		if k := bytes.Index(d, seqKey); k >= 0 {
			rest := d[k+len(seqKey):]
			n := 0
			for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
				n++
			}
			if seq, err := strconv.ParseUint(string(rest[:n]), 10, 64); err == nil && seq > 0 {
				a := pubAck{seq: seq}
				if bytes.Contains(rest, dupKey) {
					a.duplicate = !bytes.Contains(rest, []byte(`"duplicate":false`))
				}
				return a
			}
		}
	}
	var full struct {
		Stream    string `json:"stream"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
		Error     *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(d, &full); err != nil {
		return pubAck{err: fmt.Errorf("jetstream: invalid acknowledgement %.80q", d)}
	}
	if full.Error != nil {
		return pubAck{err: fmt.Errorf("jetstream: %s (code %d, err_code %d)", full.Error.Description, full.Error.Code, full.Error.ErrCode)}
	}
	if full.Stream == "" || full.Seq == 0 {
		return pubAck{err: fmt.Errorf("jetstream: invalid acknowledgement %.80q", d)}
	}
	return pubAck{seq: full.Seq, duplicate: full.Duplicate}
}
