package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

// The stream's layout (issue 12, item 8). Layout 1 stored every event on
// a subject of its own, vigil.events.<tenant>.<category>.<severity>.<id>,
// so JetStream kept state per retained event in its subject tree (about
// 170 B each: memory grew with the log). Layout 2 stores events on
// vigil.events.<tenant>.<category>.<severity>: a few thousand subjects
// whatever the log holds. The id is in the body (its first field), where
// the dedup rebuild and the abandoned-batch lookup read it. The stream
// says its layout in its config metadata; Open refuses a stream that
// holds events in layout 1 and `vigil migrate` rewrites it (migrate.go).
const (
	// LayoutMetadataKey is the stream metadata key naming its layout.
	LayoutMetadataKey = "vigil_layout"
	// Layout is the layout this build writes and reads.
	Layout = "2"
)

// streamConfig is the stream as this build keeps it.
func streamConfig(cfg Config, embedded bool) jetstream.StreamConfig {
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
		AllowDirect: true,
		// S2 on the file store's blocks: events are repetitive JSON
		// (field names, tenant, type, the hex hashes' alphabet).
		Compression: jetstream.S2Compression,
		Metadata:    map[string]string{LayoutMetadataKey: Layout},
	}
	if embedded {
		// No Nats-Msg-Id is sent to the embedded stream (see msgIDHeader),
		// so its window only made the server read every message inside it
		// at each start (issue 8, item 4): keep it at the minimum.
		scfg.Duplicates = embeddedDuplicates
	}
	return scfg
}

// checkLayout refuses a stream this build cannot read: one holding events
// in layout 1, or one a migration left half done. An empty stream of any
// layout is fine: Open updates its config to layout 2. So is no stream
// (Open creates it), unless a migration's temporary stream exists: between
// its steps the events are there alone, and a stream created then would
// be taken for the migrated one (the next `vigil migrate` would find it
// in layout 2 already).
func (l *Log) checkLayout(ctx context.Context) error {
	s, err := l.streamNamedAtOpen(ctx, StreamName)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("store: stream info: %w", err)
	}
	if err != nil || s.CachedInfo().State.Msgs == 0 {
		_, terr := l.streamNamedAtOpen(ctx, migrateStream)
		if terr == nil {
			return fmt.Errorf("store: stream %s %s is being migrated to layout %s (a `vigil migrate` did not finish; the events are in %s): run `%s` again to complete it", StreamName, l.where(), Layout, migrateStream, l.migrateCommand())
		}
		if !errors.Is(terr, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("store: stream info: %w", terr)
		}
	}
	if err != nil {
		return nil
	}
	ci := s.CachedInfo()
	if _, ok := ci.Config.Metadata[migrateFirstKey]; ok || ci.Config.Mirror != nil {
		return fmt.Errorf("store: stream %s %s is being migrated to layout %s (a `vigil migrate` did not finish): run `%s` again to complete it", StreamName, l.where(), Layout, l.migrateCommand())
	}
	if ci.Config.Metadata[LayoutMetadataKey] == Layout || ci.State.Msgs == 0 {
		return nil
	}
	have := ci.Config.Metadata[LayoutMetadataKey]
	if have == "" {
		have = "1"
	}
	return fmt.Errorf("store: stream %s %s holds %d events in layout %s (one NATS subject per event, which costs memory per retained event); this version reads layout %s only. Stop every Vigil node using it and run `%s` (it rewrites the stream keeping every seq; docs/operations.md, \"Stream layout 2\")", StreamName, l.where(), ci.State.Msgs, have, Layout, l.migrateCommand())
}

// streamAtOpen looks the stream up for Open. On an external cluster a
// stream another node has just created answers nothing until its replicas
// have elected a leader (each attempt then times out): ask again, for up
// to placementPatience, rather than fail the node's start (seen when six
// nodes started a second apart on a fresh 3-server cluster). "Not found"
// and every answer return at once.
func (l *Log) streamAtOpen(ctx context.Context) (jetstream.Stream, error) {
	return l.streamNamedAtOpen(ctx, StreamName)
}

// streamNamedAtOpen is streamAtOpen for stream name.
func (l *Log) streamNamedAtOpen(ctx context.Context, name string) (jetstream.Stream, error) {
	if l.ns != nil {
		return l.js.Stream(ctx, name)
	}
	deadline := time.Now().Add(placementPatience)
	for {
		actx, cancel := context.WithTimeout(ctx, streamInfoAttempt)
		s, err := l.js.Stream(actx, name)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil || time.Now().After(deadline) {
			return s, err
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return s, err
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// streamInfoAttempt bounds one stream info request of streamAtOpen.
const streamInfoAttempt = 2 * time.Second

func (l *Log) where() string {
	if l.cfg.NATSURL != "" {
		return "on " + l.cfg.NATSURL
	}
	return "in " + filepath.Join(l.cfg.DataDir, "jetstream")
}

func (l *Log) migrateCommand() string {
	if l.cfg.NATSURL != "" {
		return "vigil migrate --nats-url " + l.cfg.NATSURL
	}
	return "vigil migrate --data-dir " + l.cfg.DataDir
}

var idPrefix = []byte(`{"id":"`)

// idOf returns the id of a stored event from its body without decoding
// it: the encoder writes the id first (event.AppendJSON), and ids hold
// only letters, digits, '-', '_' and ':' (no escapes). Anything else (an
// escape, a body of another shape) is decoded in full.
func idOf(body []byte) (string, bool) {
	if bytes.HasPrefix(body, idPrefix) {
		rest := body[len(idPrefix):]
		for i, c := range rest {
			if c == '"' {
				if i == 0 {
					return "", false
				}
				return string(rest[:i]), true
			}
			if c == '\\' || c < 0x20 {
				break
			}
		}
	}
	e, err := event.DecodeStored(body)
	if err != nil || e.ID == "" {
		return "", false
	}
	return e.ID, true
}

// tenantOf returns the tenant token of an event subject
// vigil.events.<tenant>.<category>.<severity> (see Subject).
func tenantOf(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return "", false
	}
	tenant, _, ok := strings.Cut(rest, ".")
	if !ok || tenant == "" {
		return "", false
	}
	return tenant, true
}

// dedupKey returns the dedup key, <tenant>/<id>, of a stored message: the
// tenant from its subject, the id from its body.
func dedupKey(subject string, body []byte) (string, bool) {
	tenant, ok := tenantOf(subject)
	if !ok {
		return "", false
	}
	id, ok := idOf(body)
	if !ok {
		return "", false
	}
	return tenant + "/" + id, true
}

// findBatch is the size of one batched direct get of rawScan.
const findBatch = 1024

// findStored reads the messages stored on subject (the exact subject of
// the events looked for) with seq >= from, up to the head, and calls fn
// with each one's dedup key and seq until fn returns false. It returns the
// seq after the last message read (from when none was): a later call from
// there reads only what was stored since. It replaces a lookup by subject
// per event (layout 1): an abandoned batch looks for its missing events
// with one read per subject it published to.
func (l *Log) findStored(ctx context.Context, from uint64, subject string, fn func(key string, seq uint64) bool) (uint64, error) {
	return l.rawScan(ctx, from, subject, func(seq uint64, subj string, body []byte) bool {
		if key, ok := dedupKey(subj, body); ok {
			return fn(key, seq)
		}
		return true
	})
}

// rawScan reads with batched direct gets (answered by any replica, no
// consumer created) the messages with seq >= from, on subjects matching
// filter ("" for all), up to the head, and calls fn with each one, in
// order, until fn returns false; body is the client's own copy. It returns
// the seq after the last message read (from when none was).
func (l *Log) rawScan(ctx context.Context, from uint64, filter string, fn func(seq uint64, subject string, body []byte) bool) (uint64, error) {
	inbox := nats.NewInbox()
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return from, fmt.Errorf("store: scan: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1) // bounded by one batch in flight
	from = max(from, 1)
	for {
		var req []byte
		if filter == "" {
			req = fmt.Appendf(nil, `{"seq":%d,"batch":%d,"max_bytes":%d}`, from, findBatch, directMaxBytes)
		} else {
			req = fmt.Appendf(nil, `{"seq":%d,"batch":%d,"next_by_subj":%q,"max_bytes":%d}`, from, findBatch, filter, directMaxBytes)
		}
		if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+StreamName, inbox, req); err != nil {
			return from, fmt.Errorf("store: scan: %w", err)
		}
		got, more := 0, false
		// A batch unanswered for directWait (a replica that died) ends the
		// scan with an error instead of holding it.
		bctx, cancel := context.WithTimeout(ctx, directWait)
		for {
			m, err := sub.NextMsgWithContext(bctx)
			if err != nil {
				cancel()
				return from, fmt.Errorf("store: scan: %w", err)
			}
			if st := m.Header.Get("Status"); st != "" {
				switch st {
				case "204": // end of batch
					np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
					more = np > 0 && got > 0
				case "404": // nothing (more) stored from there
				default:
					cancel()
					return from, fmt.Errorf("store: scan: direct get: status %s %s", st, m.Header.Get("Description"))
				}
				break
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil || seq < from {
				cancel()
				return from, fmt.Errorf("store: scan: direct get answered seq %q", m.Header.Get(jetstream.SequenceHeader))
			}
			got++
			from = seq + 1
			if !fn(seq, m.Header.Get(jetstream.SubjectHeader), m.Data) {
				cancel()
				return from, nil // the rest of the batch is dropped with the inbox
			}
		}
		cancel()
		if !more {
			return from, nil
		}
	}
}
