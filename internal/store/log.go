package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	// 2-3x faster than encoding/json on the append and replay paths
	// (docs/architecture.md, Dependencies).
	json "github.com/goccy/go-json"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// ErrNotFound is what Get's error for an unknown id matches: the one
// domain.ErrNotFound (kept so existing callers compile; prefer the domain
// name).
var ErrNotFound = domain.ErrNotFound

// Ack is the log's answer for one appended event: domain.Ack (kept as an
// alias so existing callers compile; prefer the domain name).
type Ack = domain.Ack

// Log is the durable event log.
type Log struct {
	cfg    Config
	ns     *server.Server // nil when external
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream

	mu         sync.Mutex // serialises appends: the chain needs one order
	lastHash   string
	recent     *dedupIndex
	rebuild    *dedupRebuild // fills recent after a start; appends wait for it
	pub        *batchPublisher
	chainDirty atomic.Bool // a batch lost an event: recover the chain first
	// failing: since when no append has been acknowledged (zero: the last
	// one was), and why; readiness of the embedded server reports it.
	failMu       sync.Mutex
	failingSince time.Time
	failErr      error
	// heads keeps this node's chain-head checkpoint (chainhead.go): set
	// by recover, its writer stopped by Close.
	heads *chainHeads
	// group publishes the batches on an external NATS (nil: embedded,
	// where batches are published by their callers under mu, pipelined).
	group *groupCommitter
	// msgIDHeader sends Nats-Msg-Id with every event: JetStream's dedup
	// window as a backstop across the nodes sharing an external stream.
	// The embedded log has one appender, this Log, whose dedup index is
	// exact (rebuilt from the log at start, an unacknowledged event
	// looked up in the log by its id): there the header would only cost
	// JetStream a third of its append throughput (docs/architecture.md).
	msgIDHeader bool
	replicas    int // of the stream and every KV bucket
	// index is the id index on disk (indexer.go; nil without a data dir).
	index *indexer

	// undecodable counts stored messages skipped because they are not
	// events (a producer writing to vigil.events.> directly, outside the
	// protocol); decodeLog rate-limits the log line about them.
	undecodable atomic.Uint64
	decodeLog   *rate.Limiter

	ring lazyRing // the recent-event ring (ring.go)
	// spill continues the ring on disk (spill.go); nil when off.
	spill *replaySpill

	// local hands this node's acknowledged appends to its tail
	// (localfeed.go).
	local localFeed
	// tails counts stopped tails' consumer pumps and deletions; Close
	// waits for them.
	tails background

	// gapScanned counts the events replays read through the ordered
	// consumer because a direct-get batch had a gap (read.go).
	gapScanned atomic.Uint64
}

// Open starts or connects to NATS and makes sure the stream exists.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg.defaults()
	l := &Log{cfg: cfg, recent: newDedupIndex(cfg.DedupWindow), decodeLog: rate.NewLimiter(rate.Every(10*time.Second), 5)}
	var err error
	if cfg.NATSURL == "" {
		l.ns, err = startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		l.nc, err = nats.Connect("", nats.InProcessServer(l.ns), nats.Name("vigil"), nats.Token(cfg.ListenToken))
	} else {
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of reaching the stream seconds later, after messages
		// published before it were lost with the old connection (the chain
		// would then link to an event that is not in the log).
		l.nc, err = nats.Connect(cfg.NATSURL, nats.Name("vigil-"+cfg.NodeID), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1),
			nats.ReconnectHandler(func(*nats.Conn) { l.leaderChanged(time.Now()) }))
	}
	if err != nil {
		l.shutdownServer()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	l.js, err = jetstream.New(l.nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("store: jetstream: %w", err)
	}
	l.msgIDHeader = l.ns == nil
	if l.pub, err = newBatchPublisher(l.nc, l.settled, l.local.offerSettled); err != nil {
		l.Close()
		return nil, err
	}
	l.pub.find = l.findStored
	if l.ns == nil {
		l.pub.timeout = clusterAckTimeout
		l.group = newGroupCommitter(l)
		// A new stream leader stores nothing that was sent during the
		// election: settle what was in flight soon after it instead of at
		// the acknowledgement timeout (the fail-over's RTO).
		if _, err := l.nc.Subscribe("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."+StreamName, func(*nats.Msg) {
			l.leaderChanged(time.Now())
		}); err != nil {
			l.Close()
			return nil, fmt.Errorf("store: leader advisories: %w", err)
		}
	}
	if err := l.checkLayout(ctx); err != nil {
		l.Close()
		return nil, err
	}
	scfg := streamConfig(cfg, l.ns != nil)
	var reason string
	l.stream, l.replicas, reason, err = l.chooseReplicas(ctx, scfg)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("store: create stream: %w", err)
	}
	cfg.Logger.Info("log: replicas of the stream and KV buckets", "replicas", l.replicas, "reason", reason)
	if err := l.recover(ctx); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.openIndexer(ctx); err != nil {
		l.Close()
		return nil, err
	}
	// The spill continues the ring: reads reach it only through the ring.
	// Turned off, what an earlier run left is deleted: its events are
	// kept nowhere else outside the log, and whoever turned it off may
	// have done so to keep no copy past retention (docs/security.md).
	switch spillDir := filepath.Join(cfg.DataDir, spillDirName); {
	case cfg.DataDir == "":
	case cfg.ReplaySpillBytes < 0 || cfg.ReplayCacheBytes < 0:
		if err := os.RemoveAll(spillDir); err != nil {
			l.Close()
			return nil, fmt.Errorf("store: removing the replay spill: %w", err)
		}
	default:
		b := cfg.ReplaySpillBytes
		if b == 0 {
			b = DefaultReplaySpillBytes
		}
		// Without the stream's state nothing left from before can be
		// checked, or described for the next start: the spill then only
		// lives as long as this process, and the start goes on.
		view, err := l.spillView(ctx) // nil on error
		if err != nil {
			cfg.Logger.Warn("log: replay spill: the stream's state is unknown; the spill starts empty and is not kept at stop", "err", err)
		}
		if l.spill, err = openReplaySpill(ctx, spillDir, b, cfg.ReplaySpillCheckpoint, cfg.Logger, view); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func startEmbedded(cfg Config) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "vigil-embedded",
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "jetstream"),
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		// No TCP listener unless asked for: by default the only client is
		// this process (docs/operations.md).
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.Listen != "" {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("store: nats listen address: %w", err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("store: nats listen port: %w", err)
		}
		if cfg.ListenToken == "" {
			return nil, errors.New("store: a NATS listener needs a token")
		}
		// The embedded server cannot report a listener it failed to open:
		// it would never become ready, and the start would wait the full
		// 30 s below to say nothing useful. Try the address first.
		// (NATS reads -1 as a random port and 0 as its default, 4222.)
		if port > 0 {
			probe, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return nil, fmt.Errorf("store: nats listener: %w", err)
			}
			_ = probe.Close()
		}
		opts.DontListen, opts.Host, opts.Port, opts.Authorization = false, host, port, cfg.ListenToken
		if cfg.ListenTLS != nil {
			opts.TLSConfig, opts.TLSTimeout = cfg.ListenTLS, 5 // seconds
		}
	}
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("store: embedded nats: %w", err)
	}
	go ns.Start() // owned by Log: stopped by Close via Shutdown
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("store: embedded nats did not become ready in 30s")
	}
	return ns, nil
}

// JetStream exposes the JetStream context for KV buckets of other packages.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Conn exposes the NATS connection (for direct NATS publishers' subjects).
func (l *Log) Conn() *nats.Conn { return l.nc }

// ClientURL is where NATS clients reach the embedded server's listener
// ("" without one).
func (l *Log) ClientURL() string {
	if l.ns == nil || l.cfg.Listen == "" {
		return ""
	}
	return l.ns.ClientURL()
}

// Embedded reports whether the log runs the in-process server.
func (l *Log) Embedded() bool { return l.ns != nil }

// Close drains the connection and stops the embedded server.
func (l *Log) Close() {
	l.rebuild.stop() // before nc closes: it reads through it
	l.index.stop()   // likewise
	// A planned restart then skips the rebuild; on failure it reads the
	// log after the last periodic snapshot.
	if _, err := l.saveDedupSnapshot(l.rebuild, l.rebuild.lastSnapshotHead()); err != nil {
		l.cfg.Logger.Warn("log: dedup snapshot at close failed", "err", err)
	}
	if l.group != nil {
		l.group.close()
	}
	l.heads.close(true) // its writer; then the final checkpoint, while nc is open
	if l.nc != nil {
		_ = l.nc.Drain()
		// Drain is asynchronous; Close makes the connection's goroutines exit.
		l.nc.Close()
	}
	l.tails.closeAndWait() // tails' pumps and consumer deletions end with the connection
	l.spill.close()
	l.shutdownServer()
}

func (l *Log) shutdownServer() {
	if l.ns != nil {
		l.ns.Shutdown()
		l.ns.WaitForShutdown()
	}
}

// readyTimeout bounds the readiness probe's stream info request: while a
// replicated stream elects a leader nobody answers it, and the probe must
// say "not ready" quickly rather than hang.
const readyTimeout = time.Second

// Ready reports whether the log can take appends (readiness probe): the
// dedup index is rebuilt after the start (appends wait for it), the stream
// answers, and on a cluster it has a leader.
func (l *Log) Ready(ctx context.Context) error {
	if err := l.rebuild.readyErr(); err != nil {
		return err
	}
	if l.ns != nil {
		// The embedded JetStream stops writing after a write error (a
		// full disk) while still answering stream info: only the appends
		// tell. On an external NATS the checks below say what is wrong,
		// and the cluster recovers by itself.
		if err := l.appendsFailing(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: stream info: %w", err)
	}
	if c := info.Cluster; c != nil && l.ns == nil {
		if c.Leader == "" {
			return fmt.Errorf("store: stream %s has no leader", StreamName)
		}
		// A leader that lost its followers stays leader until JetStream's
		// lost-quorum check (10 s), unable to store anything: count the
		// replicas it hears from.
		live := 1
		for _, p := range c.Replicas {
			if p != nil && !p.Offline && p.Active < readyPeerSilence {
				live++
			}
		}
		if need := (len(c.Replicas)+1)/2 + 1; live < need {
			return fmt.Errorf("store: stream %s: leader %s hears from %d of %d replicas, %d needed", StreamName, c.Leader, live, len(c.Replicas)+1, need)
		}
	}
	return nil
}

// failingGrace is how long appends may go unacknowledged before the
// embedded server's readiness reports it.
const failingGrace = 5 * time.Second

// noteOutcome records whether fl's batch had an event acknowledged (the
// log takes appends) or only failures.
func (l *Log) noteOutcome(fl *inflight) {
	var stored bool
	var failed error
	for i, a := range fl.acks {
		if fl.keys[i] == "" {
			continue
		}
		if a.err == nil {
			stored = true
		} else if failed == nil {
			failed = a.err
		}
	}
	if !stored && failed == nil {
		return // duplicates only: says nothing
	}
	l.failMu.Lock()
	defer l.failMu.Unlock()
	switch {
	case stored:
		if !l.failingSince.IsZero() {
			l.cfg.Logger.Info("log: appends are acknowledged again", "failing_for", time.Since(l.failingSince).Round(time.Millisecond))
		}
		l.failingSince, l.failErr = time.Time{}, nil
	case l.failingSince.IsZero():
		l.failingSince, l.failErr = time.Now(), failed
		if l.ns != nil {
			l.cfg.Logger.Error("log: an append was not acknowledged; if the data directory's disk is full, free space and restart the node (the embedded JetStream stops writing after a write error and does not resume)", "data_dir", l.cfg.DataDir, "err", failed)
		}
	default:
		l.failErr = failed
	}
}

// appendsFailing returns why appends are not acknowledged, when none has
// been for failingGrace.
func (l *Log) appendsFailing() error {
	l.failMu.Lock()
	defer l.failMu.Unlock()
	if l.failingSince.IsZero() || time.Since(l.failingSince) < failingGrace {
		return nil
	}
	return fmt.Errorf("store: no append acknowledged since %s (%v); if the disk of %s is full, free space and restart the node", l.failingSince.UTC().Format(time.RFC3339), l.failErr, l.cfg.DataDir)
}

// readyPeerSilence is how long a replica may go unheard (JetStream's
// heartbeat is 1 s) before readiness no longer counts it.
const readyPeerSilence = 3 * time.Second

// Head returns the sequence of the newest event (0 for an empty log).
func (l *Log) Head(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: head: %w", err)
	}
	return info.State.LastSeq, nil
}

// First returns the sequence of the oldest retained event.
func (l *Log) First(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: first: %w", err)
	}
	return info.State.FirstSeq, nil
}

// Subject is where an event is stored, vigil.events.<tenant>.<category>.
// <severity> (layout 2: no id, so the stream has a few thousand subjects
// however many events it holds); consumers narrow by its tokens.
func Subject(e *event.Event) string {
	return SubjectPrefix + "." + e.Tenant + "." + string(e.Category) + "." + e.Severity.String()
}

// Append stores events in order and returns one Ack per event once every
// one is in the log. An id already stored within the dedup window, or
// found in the id index (stored earlier and still retained), is
// acknowledged with its original seq and not stored again. Events must be
// normalized (event.Normalize) first.
//
// The whole batch is published without waiting between messages, each
// message acknowledged by JetStream on its own reply subject, and Append
// returns once every acknowledgement is in: the producer is answered only
// when all its events are stored. If some fail, the others stay stored and
// keep their ids in the dedup index, so a retry of the whole batch with
// the same ids stores only what is missing.
func (l *Log) Append(ctx context.Context, events []*event.Event) ([]Ack, error) {
	acks := make([]Ack, len(events))
	if err := l.rebuild.wait(ctx); err != nil {
		return acks, err // dedup is exact from the first append on, or nothing is appended
	}
	fl := l.pub.begin(len(events))
	for i, e := range events {
		fl.keys[i] = e.Tenant + "/" + e.ID
	}
	late := l.index.lateDuplicates(fl.keys, events) // clears their keys
	var (
		dups          []dupRef
		firstErr, err error
	)
	if l.group != nil {
		dups, firstErr, err = l.group.submit(ctx, events, fl)
	} else {
		l.mu.Lock()
		dups, firstErr, err = l.publishLocked(ctx, events, fl)
		l.mu.Unlock()
	}
	if err != nil {
		return acks, err
	}
	dups = append(dups, late...)

	select {
	case <-fl.done:
	case <-ctx.Done():
		// The batch settles in the background (the dedup index learns
		// its outcome); this producer is told it may not be stored.
		return acks, fmt.Errorf("store: append: %w", ctx.Err())
	}
	l.heads.noteBatch(events, fl) // the checkpoint's newest link (chainhead.go)
	for i, e := range events {
		if fl.keys[i] == "" {
			continue
		}
		a := fl.acks[i]
		if a.err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("store: append %s: %w", e.ID, a.err)
			}
			continue
		}
		e.Seq = a.seq
		acks[i] = Ack{ID: e.ID, Seq: a.seq, Duplicate: a.duplicate}
	}
	for _, d := range dups {
		seq, err := l.recent.wait(ctx, d)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("store: append %s: %w", events[d.index].ID, err)
		}
		acks[d.index] = Ack{ID: events[d.index].ID, Seq: seq, Duplicate: true}
		events[d.index].Seq = seq
	}
	if firstErr != nil {
		return acks, firstErr
	}
	return acks, nil
}

// publishLocked hashes and publishes one batch (l.mu held): the chain
// links each event to the one published before it. dups are the ids
// already stored or in flight; firstErr is the first event that could not
// be published (the rest of the batch is then not published). err means
// nothing was published and fl has ended.
func (l *Log) publishLocked(ctx context.Context, events []*event.Event, fl *inflight) (dups []dupRef, firstErr, err error) {
	if l.ns == nil {
		// On a cluster a batch whose acknowledgements are late may be
		// lost with a stream leader, and one hashed now would link to its
		// events: while one is late, wait until every earlier batch has
		// settled (a loss marks the chain dirty, recovered below).
		// Appends are serial meanwhile; in the common case nothing waits.
		for _, done := range l.pub.lateBatches(lateAckWait) {
			select {
			case <-done:
			case <-ctx.Done():
				l.failBatch(fl)
				return nil, nil, fmt.Errorf("store: append: waiting for earlier batches to settle: %w", ctx.Err())
			}
		}
	}
	if l.chainDirty.Load() {
		// An earlier batch lost events after this node's chain moved past
		// them: take the chain position again from what the log holds.
		// Until that succeeds nothing is appended (the chain would link to
		// a lost event); the deadline keeps producers from waiting on a
		// log that does not answer.
		l.chainDirty.Store(false)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chainRecoverTimeout)
		err := l.recoverChain(rctx)
		cancel()
		if err != nil {
			l.chainDirty.Store(true)
			l.failBatch(fl)
			return nil, nil, fmt.Errorf("store: append: recover the chain position after a failed append: %w", err)
		}
	}
	dups = l.recent.reserve(fl.keys, time.Now(), fl)
	published := 0
	for i, e := range events {
		key := fl.keys[i]
		if key == "" {
			continue // a duplicate
		}
		if firstErr != nil {
			fl.acks[i].err = firstErr
			continue
		}
		e.Chain = l.cfg.NodeID
		e.PrevHash = l.lastHash
		body, hash, err := canonical(e)
		if err == nil {
			msg := &nats.Msg{Subject: Subject(e), Data: body}
			if l.msgIDHeader {
				msg.Header = nats.Header{jetstream.MsgIDHeader: []string{key}}
			}
			if err = l.pub.publish(fl, i, msg); err != nil {
				err = fmt.Errorf("store: append: publish: %w", err)
			}
		} else {
			err = fmt.Errorf("store: append: encode %s: %w", e.ID, err)
		}
		if err != nil {
			fl.acks[i].err = err
			firstErr = err
			continue
		}
		published++
		fl.bodies[i] = body
		e.Hash = hash
		l.lastHash = hash
	}
	l.pub.seal(fl, published)
	return dups, firstErr, nil
}

// settleGrace is how long after a leader change (or a reconnect) the
// batches published before it keep waiting for acknowledgements: a new
// leader commits what its predecessor had replicated within its first
// heartbeats; what is still missing after that was dropped, and the
// lookups of the abandoned batches then tell stored from lost.
const settleGrace = time.Second

// settleEarly abandons, settleGrace after t, the batches sealed before t.
func (l *Log) settleEarly(t time.Time) {
	time.AfterFunc(settleGrace, func() { // one-shot; harmless after Close
		if l.pub != nil {
			l.pub.abandonSealedBefore(t)
		}
	})
}

// lateAckWait is how long a batch on a cluster may wait for its
// acknowledgements before the next append waits for it to settle
// (publishLocked). Acknowledgements take milliseconds while the stream has
// a leader; an election takes seconds.
const lateAckWait = 250 * time.Millisecond

// leaderChanged is told that the stream has a new leader or the
// connection a new server (at t): batches in flight then may have lost
// events the old leader had not replicated. Their settlement marks the
// chain dirty, but only settleGrace (or an acknowledgement timeout) later,
// and a batch hashed meanwhile would link to a lost event: verify then
// reports a break no one made (TestClusterLeaderHardKill saw it once in
// 15 runs, the next batch stored after the election linking to the last
// event of a batch the kill lost). So the next append takes the chain
// position from the log first; what the old leader had committed is in
// the new leader's log by now, what it had not is gone for good. (A batch
// hashed between the election and this call is held by lateAckWait.)
func (l *Log) leaderChanged(t time.Time) {
	l.chainDirty.Store(true)
	l.settleEarly(t)
}

// chainRecoverTimeout bounds the chain recovery an append waits for.
const chainRecoverTimeout = 5 * time.Second

// failBatch ends fl, registered with begin, before any of it was reserved
// in the dedup index or published.
func (l *Log) failBatch(fl *inflight) {
	for i := range fl.keys {
		fl.keys[i] = ""
	}
	l.pub.seal(fl, 0)
}

// settled is called once every acknowledgement of a batch is in (or it was
// abandoned): the dedup index learns the outcome, and a message that was
// not stored although later ones of this node's chain link to it makes
// the next append take the chain position again from the log.
func (l *Log) settled(fl *inflight) {
	l.noteOutcome(fl) // here, not in Append: a producer that gave up leaves its batch to settle
	l.recent.settle(fl)
	l.index.feed(fl)
	for i, a := range fl.acks {
		if fl.keys[i] != "" && (a.err != nil || a.duplicate) {
			l.chainDirty.Store(true)
			return
		}
	}
}

// canonical encodes e (without seq and hash) for storage and hashing, and
// returns the stored body: the canonical bytes with the hash added.
func canonical(e *event.Event) (body []byte, hash string, err error) {
	seq, h := e.Seq, e.Hash
	e.Seq, e.Hash = 0, ""
	b, err := e.AppendJSON(make([]byte, 0, 448+len(e.Data)+len(e.Message)+len(e.PrevHash)))
	e.Seq, e.Hash = seq, h
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	body = append(b[:len(b)-1], `,"hash":"`...)
	body = append(body, hx[:]...)
	body = append(body, `"}`...)
	return body, string(hx[:]), nil
}

// legacyHash is the hash as computed before the hand-written encoder
// (goccy's Marshal). The two encodings are the same by construction and
// by test; verify accepts either so that no stored event could ever be
// reported broken because of an encoder difference.
func legacyHash(e *event.Event) (string, error) {
	seq, h := e.Seq, e.Hash
	e.Seq, e.Hash = 0, ""
	b, err := json.Marshal(e)
	e.Seq, e.Hash = seq, h
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Hash recomputes the integrity hash of a stored event (for verify).
func Hash(e *event.Event) (string, error) {
	_, h, err := canonical(e)
	return h, err
}

// skipUndecodable counts a stored message that is not an event and is
// skipped by a read, and logs it (at most one line per 10 s after a burst
// of 5, so a flood of bad messages cannot flood the log).
func (l *Log) skipUndecodable(seq uint64, err error) {
	n := l.undecodable.Add(1)
	if l.decodeLog.Allow() {
		l.cfg.Logger.Warn("log: stored message is not an event; skipped", "seq", seq, "err", err, "skipped_total", n)
	}
}

// UndecodableSkipped counts the stored messages reads have skipped because
// they are not events (each read of one counts; vigil_log_undecodable_total).
func (l *Log) UndecodableSkipped() uint64 { return l.undecodable.Load() }

// decode turns a stored body into an Event with its seq. The client
// encoding (seq spliced into the stored bytes) is made on first use, so
// fan-out never re-encodes it and an event never sent is never encoded.
// data must not be modified afterwards (the event's strings and Data
// share it).
func decode(data []byte, seq uint64) (*event.Event, error) {
	e, err := event.DecodeStoredOwned(data) // every caller passes a message body of its own
	if err != nil {
		return nil, fmt.Errorf("store: decode seq %d: %w", seq, err)
	}
	e.Seq = seq
	e.SetStored(data)
	return e, nil
}

// Get returns the event with the given id, searching every tenant (the
// newest one stored with that id): Find without a choice.
func (l *Log) Get(ctx context.Context, id string) (*event.Event, error) {
	return l.Find(ctx, id, nil)
}

// Find returns the newest event stored with the given id that keep
// accepts (nil keeps any). An id is unique within a tenant only (dedup
// is per tenant), so two tenants may each hold one: a reader must be
// answered with the one it may see, or a tenant publishing another's id
// would hide that tenant's event from it. Layout 2 has no subject per id:
// the id is looked up in the dedup index (the ids stored within its
// window, this node's appends at once), then in the id index on disk
// (every event it has read, within a second of its storing: indexer.go);
// the event at each seq found is read and checked to have that id.
func (l *Log) Find(ctx context.Context, id string, keep func(*event.Event) bool) (*event.Event, error) {
	if id == "" {
		return nil, fmt.Errorf("event: empty id: %w", domain.ErrNotFound)
	}
	tried := map[uint64]bool{}
	try := func(seqs []uint64) (*event.Event, error) {
		for _, seq := range seqs {
			if tried[seq] {
				continue
			}
			tried[seq] = true
			e, err := l.getSeq(ctx, seq, id)
			if err != nil {
				return nil, err
			}
			if e != nil && (keep == nil || keep(e)) {
				return e, nil
			}
		}
		return nil, nil
	}
	e, err := try(l.recent.lookupID(id))
	if err != nil || e != nil {
		return e, err
	}
	if l.index != nil {
		seqs, err := l.index.lookup(id)
		if err != nil {
			return nil, fmt.Errorf("store: get %s: %w", id, err)
		}
		if e, err := try(seqs); err != nil || e != nil {
			return e, err
		}
	}
	return nil, fmt.Errorf("event %q: %w", id, domain.ErrNotFound)
}

// getSeq returns the event stored at seq if its id is id (nil, nil when
// seq holds another event or none: retention removed it).
func (l *Log) getSeq(ctx context.Context, seq uint64, id string) (*event.Event, error) {
	raw, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("store: get %s (seq %d): %w", id, seq, err)
	}
	if got, ok := idOf(raw.Data); !ok || got != id {
		return nil, nil
	}
	return decode(raw.Data, raw.Sequence)
}

// chainInfoAttempt bounds one stream info request of a chain recovery.
// After the stream's leader died (kill -9, a crashed host) its followers
// keep sending requests to it until their election timeout (4-9 s in
// JetStream); a request sent then is never answered, while one sent a
// moment later reaches the new leader. Short attempts retried until the
// recovery's deadline take the chain position as soon as a leader answers,
// instead of waiting out a 5 s request (which made the fail-over's RTO a
// multiple of 5 s, past 15 s in one run of five: docs/operations.md).
const chainInfoAttempt = 500 * time.Millisecond

// chainBounds returns the first and last seq of the stream as its leader
// knows them, for a chain recovery. On a cluster only a leader's answer
// will do, and only once it has led for settleGrace:
//   - a replica without a leader answers with its own state, which may
//     miss events the next leader stores (acknowledged ones among them):
//     a chain position taken from it would link the next event to an older
//     one of this node's chain, and verify would report the fork;
//   - a new leader commits what its predecessor had replicated within its
//     first heartbeats (see settleGrace): an event of this node published
//     before the fail-over, given up as lost, may still be stored then,
//     after a chain position taken without it.
//
// Without a deadline in ctx, chainRecoverTimeout bounds the whole.
func (l *Log) chainBounds(ctx context.Context) (first, head uint64, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, chainRecoverTimeout)
		defer cancel()
	}
	for {
		actx, cancel := context.WithTimeout(ctx, chainInfoAttempt)
		info, ierr := l.stream.Info(actx)
		cancel()
		wait := 50 * time.Millisecond // between answers that will not do
		switch {
		case ierr != nil:
			err = fmt.Errorf("store: recover chain: stream info: %w", ierr)
			wait = 0 // the attempt's own timeout paced it (or it failed at once: see below)
			if !errors.Is(ierr, context.DeadlineExceeded) {
				wait = 100 * time.Millisecond
			}
		case info.Cluster == nil || l.ns != nil:
			return info.State.FirstSeq, info.State.LastSeq, nil
		case info.Cluster.Leader == "":
			err = fmt.Errorf("store: recover chain: stream %s has no leader", StreamName)
		case info.State.LastSeq > 0 && info.Cluster.LeaderSince != nil && info.TimeStamp.Sub(*info.Cluster.LeaderSince) < settleGrace:
			// Both times are the leader's clock.
			err = fmt.Errorf("store: recover chain: stream leader %s elected %s ago", info.Cluster.Leader, info.TimeStamp.Sub(*info.Cluster.LeaderSince))
			wait = settleGrace - info.TimeStamp.Sub(*info.Cluster.LeaderSince)
		default:
			return info.State.FirstSeq, info.State.LastSeq, nil
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			return 0, 0, err
		}
	}
}
