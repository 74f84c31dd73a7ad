package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	// 2-3x faster than encoding/json on the append and replay paths
	// (docs/architecture.md, Dependencies).
	json "github.com/goccy/go-json"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

// ErrNotFound is returned by Get for an unknown id.
var ErrNotFound = errors.New("event not found")

// Ack is the log's answer for one appended event.
type Ack struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// Log is the durable event log.
type Log struct {
	cfg    Config
	ns     *server.Server // nil when external
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream

	mu       sync.Mutex // serialises appends: the chain needs one order
	lastHash string
	recent   *dedupIndex
}

// Open starts or connects to NATS and makes sure the stream exists.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg.defaults()
	l := &Log{cfg: cfg, recent: newDedupIndex(cfg.DedupWindow)}
	var err error
	if cfg.NATSURL == "" {
		l.ns, err = startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		l.nc, err = nats.Connect("", nats.InProcessServer(l.ns), nats.Name("vigil"), nats.Token(cfg.ListenToken))
	} else {
		l.nc, err = nats.Connect(cfg.NATSURL, nats.Name("vigil-"+cfg.NodeID), nats.MaxReconnects(-1))
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
	scfg := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Vigil security events",
		Subjects:    []string{SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  cfg.DedupWindow,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    orUnlimited(cfg.MaxBytes),
		Replicas:    cfg.Replicas,
		AllowDirect: true,
	}
	l.stream, err = l.js.CreateOrUpdateStream(ctx, scfg)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("store: create stream: %w", err)
	}
	if err := l.recover(ctx); err != nil {
		l.Close()
		return nil, err
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
		opts.DontListen, opts.Host, opts.Port, opts.Authorization = false, host, port, cfg.ListenToken
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
	if l.nc != nil {
		_ = l.nc.Drain()
		// Drain is asynchronous; Close makes the connection's goroutines exit.
		l.nc.Close()
	}
	l.shutdownServer()
}

func (l *Log) shutdownServer() {
	if l.ns != nil {
		l.ns.Shutdown()
		l.ns.WaitForShutdown()
	}
}

// Ready reports whether the log answers (readiness probe).
func (l *Log) Ready(ctx context.Context) error {
	if _, err := l.stream.Info(ctx); err != nil {
		return fmt.Errorf("store: stream info: %w", err)
	}
	return nil
}

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

// Subject is where an event is stored; consumers narrow by its tokens.
func Subject(e *event.Event) string {
	return SubjectPrefix + "." + e.Tenant + "." + string(e.Category) + "." + e.Severity.String() + "." + e.ID
}

// Append stores events in order and returns one Ack per event once every
// one is in the log. An id already stored within the dedup window is
// acknowledged with its original seq and not stored again. Events must be
// normalized (event.Normalize) first.
func (l *Log) Append(ctx context.Context, events []*event.Event) ([]Ack, error) {
	acks := make([]Ack, len(events))
	futures := make([]jetstream.PubAckFuture, len(events))
	type dupWait struct {
		index int
		p     *pending
	}
	var waits []dupWait
	l.mu.Lock()
	for i, e := range events {
		key := e.Tenant + "/" + e.ID
		if p, dup := l.recent.lookupOrReserve(key); dup {
			acks[i] = Ack{ID: e.ID, Duplicate: true}
			waits = append(waits, dupWait{i, p})
			continue
		}
		e.Chain = l.cfg.NodeID
		e.PrevHash = l.lastHash
		body, hash, err := canonical(e)
		if err != nil {
			l.recent.release(key)
			l.mu.Unlock()
			return nil, fmt.Errorf("store: append: encode %s: %w", e.ID, err)
		}
		msg := &nats.Msg{Subject: Subject(e), Data: body, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, key)
		f, err := l.js.PublishMsgAsync(msg)
		if err != nil {
			l.recent.release(key)
			l.mu.Unlock()
			return nil, fmt.Errorf("store: append: publish: %w", err)
		}
		e.Hash = hash
		l.lastHash = hash
		futures[i] = f
	}
	l.mu.Unlock()

	var firstErr error
	for i, f := range futures {
		if f == nil {
			continue
		}
		key := events[i].Tenant + "/" + events[i].ID
		select {
		case pa := <-f.Ok():
			events[i].Seq = pa.Sequence
			acks[i] = Ack{ID: events[i].ID, Seq: pa.Sequence, Duplicate: pa.Duplicate}
			l.recent.commit(key, pa.Sequence)
		case err := <-f.Err():
			l.recent.release(key)
			if firstErr == nil {
				firstErr = fmt.Errorf("store: append %s: %w", events[i].ID, err)
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = fmt.Errorf("store: append: %w", ctx.Err())
			}
		}
	}
	for _, w := range waits {
		seq, err := l.recent.wait(ctx, w.p)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("store: append %s: %w", events[w.index].ID, err)
		}
		acks[w.index].Seq = seq
		events[w.index].Seq = seq
	}
	if firstErr != nil {
		// A failed append breaks this node's in-memory chain position: take
		// it again from the log so the next append links to what was stored.
		l.mu.Lock()
		_ = l.recoverChain(context.WithoutCancel(ctx))
		l.mu.Unlock()
		return acks, firstErr
	}
	return acks, nil
}

// canonical encodes e (without seq and hash) for storage and hashing, and
// returns the stored body: the canonical bytes with the hash added.
func canonical(e *event.Event) (body []byte, hash string, err error) {
	seq, h := e.Seq, e.Hash
	e.Seq, e.Hash = 0, ""
	b, err := json.Marshal(e)
	e.Seq, e.Hash = seq, h
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	hash = hex.EncodeToString(sum[:])
	body = make([]byte, 0, len(b)+80)
	body = append(body, b[:len(b)-1]...)
	body = append(body, `,"hash":"`...)
	body = append(body, hash...)
	body = append(body, `"}`...)
	return body, hash, nil
}

// Hash recomputes the integrity hash of a stored event (for verify).
func Hash(e *event.Event) (string, error) {
	_, h, err := canonical(e)
	return h, err
}

// decode turns a stored body into an Event with its seq, and caches the
// client encoding (seq spliced in) so fan-out never re-encodes it.
func decode(data []byte, seq uint64) (*event.Event, error) {
	var e event.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("store: decode seq %d: %w", seq, err)
	}
	e.Seq = seq
	enc := make([]byte, 0, len(data)+24)
	enc = append(enc, `{"seq":`...)
	enc = strconv.AppendUint(enc, seq, 10)
	if len(data) > 2 {
		enc = append(enc, ',')
	}
	enc = append(enc, data[1:]...)
	e.SetJSON(enc)
	return &e, nil
}

// Get returns the event with the given id, searching every tenant.
func (l *Log) Get(ctx context.Context, id string) (*event.Event, error) {
	if id == "" {
		return nil, ErrNotFound
	}
	raw, err := l.stream.GetLastMsgForSubject(ctx, SubjectPrefix+".*.*.*."+id)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	return decode(raw.Data, raw.Sequence)
}
