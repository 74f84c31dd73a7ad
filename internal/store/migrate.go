package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Migration to layout 2 (vigil migrate), with every Vigil node stopped.
//
// JetStream cannot rename a stored message's subject, and a copy through
// a publisher would give every event a new store time (from.time cursors,
// MaxAge and the dedup window read it) and refuse interior gaps. A mirror
// keeps both: it stores each message at its origin's seq with its
// origin's time (skipping the seqs of deleted messages), and may rewrite
// subjects on the way. So:
//
//  1. the output consumers' positions are recorded, and a temporary
//     stream mirrors VIGIL_EVENTS, dropping the id token of every event
//     subject (layout 1 -> 2); other subjects are mirrored as they are;
//  2. once it holds as many messages, with the same first and last seq,
//     it is detached (a stream of its own), VIGIL_EVENTS is deleted and
//     created again as a mirror of the temporary stream;
//  3. once that has caught up it is promoted to a normal stream in layout
//     2 (the mirror removed, its subjects and limits set), the output
//     consumers are created again at their ack floor + 1, the temporary
//     stream is deleted, and the layout is marked done.
//
// Every step can be interrupted and `vigil migrate` run again: the
// recorded state (first and last seq, message count, consumers, the
// stream's limits) is in the temporary stream's metadata, and
// VIGIL_EVENTS carries migrateFirstKey (and the limits) until the end, so
// Open refuses it meanwhile; between steps 2 and 3 there is no
// VIGIL_EVENTS at all, and Open refuses to create one while the temporary
// stream exists (checkLayout).
const (
	migrateStream       = "VIGIL_EVENTS_MIGRATE"
	migrateFirstKey     = "vigil_migrate_first_seq"
	migrateLastKey      = "vigil_migrate_last_seq"
	migrateMsgsKey      = "vigil_migrate_msgs"
	migrateConsumersKey = "vigil_migrate_consumers"
	// migrateLimitsKey holds the layout-1 stream's limits (JSON
	// migrateLimits): `vigil migrate` is not given the node's
	// --retention-max-age, --retention-max-bytes and --dedup-window, so
	// the migrated stream takes them from the stream it replaces.
	migrateLimitsKey = "vigil_migrate_limits"
	// outputConsumerPrefix names the durable consumers of the outputs
	// (outputs.ConsumerName), recreated by a migration.
	outputConsumerPrefix = "vigil-output-"
)

// migrateStall is how long a mirror may make no progress before Migrate
// gives up (it can be run again).
const migrateStall = time.Minute

// migrateTransforms map layout-1 subjects to layout 2; the other forms
// (not stored by Append) are mirrored unchanged. JetStream refuses
// overlapping sources, hence one per token count.
var migrateTransforms = []jetstream.SubjectTransformConfig{
	{Source: SubjectPrefix + ".*"},
	{Source: SubjectPrefix + ".*.*"},
	{Source: SubjectPrefix + ".*.*.*"},
	{Source: SubjectPrefix + ".*.*.*.*", Destination: SubjectPrefix + ".{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"},
	{Source: SubjectPrefix + ".*.*.*.*.>"},
}

// MigrateReport says what Migrate did.
type MigrateReport struct {
	// Done is false when there was nothing to migrate (Reason says why).
	Done   bool   `json:"migrated"`
	Reason string `json:"reason,omitempty"`
	// The stream's messages and seqs, the same before and after.
	Messages uint64 `json:"messages"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Consumers are the output consumers created again, at Resume.
	Consumers []MigratedConsumer `json:"consumers,omitempty"`
	Took      time.Duration      `json:"took_ns"`
}

// MigratedConsumer is one output consumer created again by Migrate.
type MigratedConsumer struct {
	Name   string `json:"name"`
	Resume uint64 `json:"resume_seq"` // its ack floor + 1
}

type migrateConsumer struct {
	Config jetstream.ConsumerConfig `json:"config"`
	Resume uint64                   `json:"resume"`
}

// migrateLimits are the limits of the stream being migrated that Vigil
// sets from its own configuration.
type migrateLimits struct {
	MaxAge     time.Duration `json:"max_age"`
	MaxBytes   int64         `json:"max_bytes"`
	Duplicates time.Duration `json:"duplicates"`
}

func limitsOf(cfg jetstream.StreamConfig) string {
	b, _ := json.Marshal(migrateLimits{MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes, Duplicates: cfg.Duplicates})
	return string(b)
}

// Migrate rewrites the stream of cfg's data dir (or external NATS) in
// layout 2, keeping every seq, every message's store time and the output
// consumers' positions. Every Vigil node using the stream must be stopped.
// progress (may be nil) receives a line per step.
func Migrate(ctx context.Context, cfg Config, progress func(string)) (MigrateReport, error) {
	start := time.Now()
	cfg.defaults()
	if progress == nil {
		progress = func(string) {}
	}
	var (
		nc  *nats.Conn
		err error
	)
	if cfg.NATSURL == "" {
		if cfg.DataDir == "" {
			return MigrateReport{}, errors.New("store: migrate: no data dir and no NATS URL")
		}
		cfg.Listen = "" // nobody else may write meanwhile
		s, err := startEmbedded(cfg)
		if err != nil {
			return MigrateReport{}, err
		}
		defer func() { s.Shutdown(); s.WaitForShutdown() }()
		nc, err = nats.Connect("", nats.InProcessServer(s), nats.Name("vigil-migrate"))
		if err != nil {
			return MigrateReport{}, fmt.Errorf("store: migrate: connect: %w", err)
		}
	} else {
		nc, err = nats.Connect(cfg.NATSURL, nats.Name("vigil-migrate"))
		if err != nil {
			return MigrateReport{}, fmt.Errorf("store: migrate: connect to %s: %w", cfg.NATSURL, err)
		}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return MigrateReport{}, fmt.Errorf("store: migrate: %w", err)
	}
	m := &migration{cfg: cfg, js: js, embedded: cfg.NATSURL == "", progress: progress}
	rep, err := m.run(ctx)
	rep.Took = time.Since(start)
	return rep, err
}

type migration struct {
	cfg      Config
	js       jetstream.JetStream
	embedded bool
	progress func(string)
}

// info returns the stream's info, nil when it does not exist; retried.
func (m *migration) info(ctx context.Context, name string) (info *jetstream.StreamInfo, err error) {
	err = m.retry(ctx, func() error {
		info, err = m.infoOnce(ctx, name)
		return err
	})
	return info, err
}

// infoOnce is info without the retries.
func (m *migration) infoOnce(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	s, err := m.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: migrate: stream %s: %w", name, err)
	}
	return s.CachedInfo(), nil
}

func (m *migration) run(ctx context.Context) (MigrateReport, error) {
	main, err := m.info(ctx, StreamName)
	if err != nil {
		return MigrateReport{}, err
	}
	temp, err := m.info(ctx, migrateStream)
	if err != nil {
		return MigrateReport{}, err
	}
	migrating := main != nil && (main.Config.Mirror != nil || main.Config.Metadata[migrateFirstKey] != "")
	if main != nil && temp != nil && !migrating && main.Config.Metadata[LayoutMetadataKey] == Layout {
		// A stream in layout 2 next to the temporary one.
		want, _, _, rerr := recorded(temp, nil)
		switch {
		case rerr == nil && temp.Config.Mirror == nil && main.State.LastSeq == 0:
			// Created, and never written, while VIGIL_EVENTS did not
			// exist between steps 2 and 3 (by a node of a build that did
			// not refuse to): the events are in the temporary stream.
			m.progress("deleting the empty " + StreamName + " created while the migration was under way")
			if err := m.remove(ctx, StreamName); err != nil {
				return MigrateReport{}, fmt.Errorf("store: migrate: delete the empty %s: %w", StreamName, err)
			}
			main = nil
		case rerr == nil && main.State.Msgs == want.Msgs && main.State.FirstSeq == want.FirstSeq && main.State.LastSeq == want.LastSeq:
			// Left over by an earlier run that was stopped after its end.
			if err := m.remove(ctx, migrateStream); err != nil {
				return MigrateReport{}, fmt.Errorf("store: migrate: delete %s: %w", migrateStream, err)
			}
			temp = nil
		default:
			return MigrateReport{}, fmt.Errorf("store: migrate: %s is in layout %s (seq %d-%d, %d messages) but %s holds an unfinished migration's copy (seq %d-%d, %d messages): a node wrote to a new %s while the migration was under way. Nothing was deleted: delete whichever you do not need (`nats stream rm %s` and run `vigil migrate` again to go on with the migration, or `nats stream rm %s`)",
				StreamName, Layout, main.State.FirstSeq, main.State.LastSeq, main.State.Msgs, migrateStream, want.FirstSeq, want.LastSeq, want.Msgs, StreamName, StreamName, migrateStream)
		}
	}
	switch {
	case main == nil && temp == nil:
		return MigrateReport{Reason: "no stream " + StreamName + ": nothing to migrate (a new log is created in layout " + Layout + ")"}, nil
	case main != nil && !migrating && main.Config.Metadata[LayoutMetadataKey] == Layout:
		return MigrateReport{Reason: "stream " + StreamName + " is in layout " + Layout + " already", Messages: main.State.Msgs, FirstSeq: main.State.FirstSeq, LastSeq: main.State.LastSeq}, nil
	case main != nil && !migrating && main.State.Msgs == 0 && temp == nil:
		if _, err := m.update(ctx, m.finalConfig(main.Config.Replicas, recordedLimits(main), nil)); err != nil {
			return MigrateReport{}, fmt.Errorf("store: migrate: update the empty stream: %w", err)
		}
		return MigrateReport{Reason: "stream " + StreamName + " was empty: its config is now layout " + Layout, FirstSeq: main.State.FirstSeq, LastSeq: main.State.LastSeq}, nil
	}
	if main != nil && !migrating {
		// Step 1: layout 1 with events.
		if temp == nil {
			if main, err = m.pauseRetention(ctx, main); err != nil {
				return MigrateReport{}, err
			}
			if _, err = m.createTemp(ctx, main); err != nil {
				return MigrateReport{}, err
			}
		}
		m.progress(fmt.Sprintf("copying %d messages (seq %d-%d) to %s, ids out of the subjects", main.State.Msgs, main.State.FirstSeq, main.State.LastSeq, migrateStream))
		if temp, err = m.catchUp(ctx, migrateStream, main.State); err != nil {
			return MigrateReport{}, err
		}
		if temp.Config.Mirror != nil {
			// A stream of its own before VIGIL_EVENTS mirrors it (JetStream
			// refuses a cycle).
			tcfg := temp.Config
			tcfg.Mirror, tcfg.Metadata = nil, ownMetadata(tcfg.Metadata)
			if _, err := m.update(ctx, tcfg); err != nil {
				return MigrateReport{}, fmt.Errorf("store: migrate: detach %s from %s: %w", migrateStream, StreamName, err)
			}
		}
		m.progress("deleting the layout-1 stream " + StreamName)
		if err := m.remove(ctx, StreamName); err != nil {
			return MigrateReport{}, fmt.Errorf("store: migrate: delete the layout-1 stream: %w", err)
		}
		main = nil
	}
	want, consumers, limits, err := recorded(temp, main)
	if err != nil {
		return MigrateReport{}, err
	}
	rep := MigrateReport{Messages: want.Msgs, FirstSeq: want.FirstSeq, LastSeq: want.LastSeq}
	replicas := 1
	if temp != nil {
		replicas = temp.Config.Replicas
	} else if main != nil {
		replicas = main.Config.Replicas
	}
	if main == nil {
		// Step 2.
		if temp == nil {
			return rep, fmt.Errorf("store: migrate: neither %s nor %s exists any more", StreamName, migrateStream)
		}
		m.progress(fmt.Sprintf("copying %d messages back to %s in layout %s", want.Msgs, StreamName, Layout))
		if _, err := m.createStream(ctx, jetstream.StreamConfig{
			Name: StreamName, Description: "Vigil security events (being migrated)",
			Storage: jetstream.FileStorage, Replicas: replicas, Compression: jetstream.S2Compression,
			Mirror:   &jetstream.StreamSource{Name: migrateStream},
			Metadata: ownMetadata(temp.Config.Metadata),
		}, "the events are kept in "+migrateStream); err != nil {
			return rep, fmt.Errorf("store: migrate: create %s as a mirror: %w", StreamName, err)
		}
		main = &jetstream.StreamInfo{Config: jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: migrateStream}}}
	}
	if main.Config.Mirror != nil {
		// Step 3: promote.
		if _, err := m.catchUp(ctx, StreamName, want); err != nil {
			return rep, err
		}
		// Without the limits yet (retention could remove messages before
		// the check below): they are kept in the metadata until the end.
		meta := map[string]string{migrateFirstKey: strconv.FormatUint(want.FirstSeq, 10)}
		if limits != "" {
			meta[migrateLimitsKey] = limits
		}
		if _, err := m.update(ctx, m.finalConfig(replicas, "", meta)); err != nil {
			return rep, fmt.Errorf("store: migrate: promote %s to a stream of its own: %w", StreamName, err)
		}
	}
	got, err := m.info(ctx, StreamName)
	if err != nil {
		return rep, err
	}
	if got.State.FirstSeq != want.FirstSeq || got.State.LastSeq != want.LastSeq || got.State.Msgs != want.Msgs {
		return rep, fmt.Errorf("store: migrate: %s holds seq %d-%d (%d messages) after the copy, not %d-%d (%d): left as it is, Vigil refuses it; run `vigil migrate` again or restore the data dir from its backup", StreamName, got.State.FirstSeq, got.State.LastSeq, got.State.Msgs, want.FirstSeq, want.LastSeq, want.Msgs)
	}
	for _, c := range consumers {
		cc := c.Config
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = jetstream.DeliverByStartSequencePolicy, c.Resume, nil
		cc.Metadata = ownMetadata(cc.Metadata)
		if err := m.retry(ctx, func() error {
			_, err := m.js.CreateOrUpdateConsumer(ctx, StreamName, cc)
			return err
		}); err != nil {
			return rep, fmt.Errorf("store: migrate: create the output consumer %s again at seq %d: %w", cc.Durable, c.Resume, err)
		}
		rep.Consumers = append(rep.Consumers, MigratedConsumer{Name: cc.Durable, Resume: c.Resume})
	}
	if temp != nil {
		if err := m.remove(ctx, migrateStream); err != nil {
			return rep, fmt.Errorf("store: migrate: delete %s: %w", migrateStream, err)
		}
	}
	if _, err := m.update(ctx, m.finalConfig(replicas, limits, nil)); err != nil {
		return rep, fmt.Errorf("store: migrate: mark %s as layout %s: %w", StreamName, Layout, err)
	}
	rep.Done = true
	return rep, nil
}

// finalConfig is the layout-2 stream with the limits (JSON migrateLimits,
// those of m.cfg when empty) and extra metadata.
func (m *migration) finalConfig(replicas int, limits string, extra map[string]string) jetstream.StreamConfig {
	scfg := streamConfig(m.cfg, m.embedded)
	scfg.Replicas = max(replicas, 1)
	var lim migrateLimits
	if limits != "" && json.Unmarshal([]byte(limits), &lim) == nil {
		scfg.MaxAge, scfg.MaxBytes = lim.MaxAge, orUnlimited(lim.MaxBytes)
		if lim.Duplicates > 0 {
			scfg.Duplicates = lim.Duplicates
		}
	}
	for k, v := range extra {
		scfg.Metadata[k] = v
	}
	return scfg
}

// pauseRetention keeps the layout-1 stream from expiring messages while it
// is copied. A log kept for its max age loses its oldest messages all the
// time, and a copy of a large one takes minutes to hours: messages expired
// before the mirror read them would be missing from the copy, which would
// then never hold what was recorded (the migration would stall, and every
// run after it too). Its limits are recorded on the stream itself first
// (a run interrupted here finds them there), then on the copy, and set
// again on the migrated stream at the last step: what retention would
// have removed meanwhile is removed then. Nothing is appended meanwhile
// (every node is stopped), so max bytes cannot be reached either.
func (m *migration) pauseRetention(ctx context.Context, main *jetstream.StreamInfo) (*jetstream.StreamInfo, error) {
	if main.Config.Metadata[migrateLimitsKey] != "" || (main.Config.MaxAge <= 0 && main.Config.MaxBytes <= 0) {
		return main, nil // paused by an earlier run, or nothing expires
	}
	cfg := main.Config
	cfg.Metadata = ownMetadata(cfg.Metadata)
	cfg.Metadata[migrateLimitsKey] = limitsOf(main.Config)
	cfg.MaxAge, cfg.MaxBytes = 0, -1
	m.progress(fmt.Sprintf("pausing retention on %s while it is copied (max age %v, max bytes %d: set again at the end)", StreamName, main.Config.MaxAge, main.Config.MaxBytes))
	info, err := m.update(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: pause retention on the layout-1 stream: %w", err)
	}
	return info, nil
}

// recordedLimits are the limits of main before the migration: recorded
// in its metadata once pauseRetention has lifted them.
func recordedLimits(main *jetstream.StreamInfo) string {
	if l := main.Config.Metadata[migrateLimitsKey]; l != "" {
		return l
	}
	return limitsOf(main.Config)
}

// createTemp records the consumers' positions and starts the mirror that
// rewrites the subjects.
func (m *migration) createTemp(ctx context.Context, main *jetstream.StreamInfo) (*jetstream.StreamInfo, error) {
	var consumers []migrateConsumer
	err := m.retry(ctx, func() error {
		consumers = nil
		s, err := m.js.Stream(ctx, StreamName)
		if err != nil {
			return err
		}
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			if !strings.HasPrefix(ci.Name, outputConsumerPrefix) || ci.Config.Durable == "" {
				continue // ephemeral consumers end with their node
			}
			consumers = append(consumers, migrateConsumer{Config: ci.Config, Resume: ci.AckFloor.Stream + 1})
		}
		return lister.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: migrate: list the output consumers: %w", err)
	}
	for _, c := range consumers {
		m.progress(fmt.Sprintf("output consumer %s resumes at seq %d", c.Config.Durable, c.Resume))
	}
	cs, err := json.Marshal(consumers)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	ts, err := m.createStream(ctx, jetstream.StreamConfig{
		Name: migrateStream, Description: "Vigil: " + StreamName + " in layout " + Layout + ", being migrated (vigil migrate)",
		Storage: jetstream.FileStorage, Replicas: max(main.Config.Replicas, 1), Compression: jetstream.S2Compression,
		Mirror: &jetstream.StreamSource{Name: StreamName, SubjectTransforms: migrateTransforms},
		Metadata: map[string]string{
			migrateFirstKey:     strconv.FormatUint(main.State.FirstSeq, 10),
			migrateLastKey:      strconv.FormatUint(main.State.LastSeq, 10),
			migrateMsgsKey:      strconv.FormatUint(main.State.Msgs, 10),
			migrateConsumersKey: string(cs),
			migrateLimitsKey:    recordedLimits(main),
		},
	}, "nothing was changed")
	if err != nil {
		return nil, fmt.Errorf("store: migrate: create %s: %w", migrateStream, err)
	}
	return ts.CachedInfo(), nil
}

// recorded reads what the migration recorded in the temporary stream (or,
// once that is gone, in VIGIL_EVENTS: its first seq and limits only).
// limits is "" for a temporary stream of an earlier build (none recorded).
func recorded(temp, main *jetstream.StreamInfo) (st jetstream.StreamState, cs []migrateConsumer, limits string, err error) {
	if temp == nil {
		if main == nil {
			return st, nil, "", errors.New("store: migrate: nothing recorded")
		}
		return main.State, nil, main.Config.Metadata[migrateLimitsKey], nil
	}
	md := temp.Config.Metadata
	var err1, err2, err3 error
	st.FirstSeq, err1 = strconv.ParseUint(md[migrateFirstKey], 10, 64)
	st.LastSeq, err2 = strconv.ParseUint(md[migrateLastKey], 10, 64)
	st.Msgs, err3 = strconv.ParseUint(md[migrateMsgsKey], 10, 64)
	if err := errors.Join(err1, err2, err3, json.Unmarshal([]byte(md[migrateConsumersKey]), &cs)); err != nil {
		return st, nil, "", fmt.Errorf("store: migrate: %s does not hold the migration's records (%w): delete it (`nats stream rm %s`) if VIGIL_EVENTS still exists, and run vigil migrate again", migrateStream, err, migrateStream)
	}
	return st, cs, md[migrateLimitsKey], nil
}

// catchUp waits until stream name holds want's messages and seqs.
func (m *migration) catchUp(ctx context.Context, name string, want jetstream.StreamState) (*jetstream.StreamInfo, error) {
	var last uint64
	moved := time.Now()
	for {
		info, err := m.infoOnce(ctx, name)
		if err != nil {
			// On a cluster a stream electing a leader (a server stopped)
			// answers nothing for a few seconds: a stall, not an end.
			if ctx.Err() != nil || !migrateTransient(err) {
				return nil, err
			}
			if time.Since(moved) > migrateStall {
				return nil, fmt.Errorf("%w (no answer for %v: run vigil migrate again once the NATS cluster answers)", err, migrateStall)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("store: migrate: waiting for %s: %w", name, ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		if info == nil {
			return nil, fmt.Errorf("store: migrate: stream %s disappeared", name)
		}
		st := info.State
		if st.Msgs == want.Msgs && st.LastSeq == want.LastSeq && (st.FirstSeq == want.FirstSeq || want.Msgs == 0) {
			return info, nil
		}
		if st.LastSeq > want.LastSeq || st.Msgs > want.Msgs {
			return nil, fmt.Errorf("store: migrate: %s holds more than its origin (%d messages to seq %d, want %d to %d): is a Vigil node still writing?", name, st.Msgs, st.LastSeq, want.Msgs, want.LastSeq)
		}
		if st.LastSeq != last {
			last, moved = st.LastSeq, time.Now()
		} else if time.Since(moved) > migrateStall {
			return nil, fmt.Errorf("store: migrate: %s stalled at seq %d (%d messages) of %d-%d (%d) for %v; run vigil migrate again", name, st.LastSeq, st.Msgs, want.FirstSeq, want.LastSeq, want.Msgs, migrateStall)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("store: migrate: waiting for %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createStream creates cfg. A cluster may not place its replicas for a
// while (a server stopped, or just back and not yet known to be online):
// that is retried for up to placementPatience, then returned with what to
// do; state says what the failure left.
func (m *migration) createStream(ctx context.Context, cfg jetstream.StreamConfig, state string) (jetstream.Stream, error) {
	deadline := time.Now().Add(placementPatience)
	for {
		var s jetstream.Stream
		err := m.retry(ctx, func() (err error) {
			s, err = m.js.CreateStream(ctx, cfg)
			return err
		})
		if err == nil || !isPlacementError(err) {
			return s, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: the NATS cluster cannot place %d replicas (a server down?); %s: run vigil migrate again once every server is back", err, cfg.Replicas, state)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// migrateTransient says whether err is a request a cluster without a
// stream leader leaves unanswered (or answers "temporarily unavailable").
func migrateTransient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.As(err, &apiErr) && apiErr.Code == 503
}

// retry runs op until it succeeds, fails for a reason other than a
// cluster electing a leader (migrateTransient), or has gone unanswered for
// migrateStall. Every step's requests go through it: a server stopping
// mid-migration costs a wait, not a rerun. op must be safe to repeat
// (each step's request is: an update sets the same config, a delete of
// what is already gone counts as done).
func (m *migration) retry(ctx context.Context, op func() error) error {
	start := time.Now()
	for {
		err := op()
		if err == nil || ctx.Err() != nil || !migrateTransient(err) {
			return err
		}
		if time.Since(start) > migrateStall {
			return fmt.Errorf("%w (no answer for %v: run vigil migrate again once the NATS cluster answers)", err, migrateStall)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// update is UpdateStream, retried.
func (m *migration) update(ctx context.Context, cfg jetstream.StreamConfig) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := m.retry(ctx, func() error {
		s, err := m.js.UpdateStream(ctx, cfg)
		if err == nil {
			info = s.CachedInfo()
		}
		return err
	})
	return info, err
}

// remove deletes stream name, retried; a stream already gone (deleted by
// an attempt whose answer was lost) counts as deleted.
func (m *migration) remove(ctx context.Context, name string) error {
	err := m.retry(ctx, func() error { return m.js.DeleteStream(ctx, name) })
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	return err
}

// ownMetadata is md without the server's own keys (_nats.*).
func ownMetadata(md map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range md {
		if !strings.HasPrefix(k, "_nats.") {
			out[k] = v
		}
	}
	return out
}
