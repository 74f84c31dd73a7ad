package hostile

// `vigil migrate --nats-url` (issue 12 item 8) on what it is for: a
// layout-1 VIGIL_EVENTS with three replicas on a three-server JetStream
// cluster, written as the builds before layout 2 wrote it (one subject per
// event, Nats-Msg-Id on every message, two nodes' chains, retention limits
// set, the first seqs gone, an interior gap, an output's durable consumer
// part way through). The migration runs as an operator runs it, the vigil
// binary against the cluster's URL: once straight through, once stopped
// at several points (SIGKILL, a cancelled context) and run again, and
// once with a server of the cluster stopped meanwhile. Each time the migrated stream must hold
// every message at the same seq with the same store time and body, keep
// its replicas, limits and gap, give the output consumer back at its ack
// floor + 1, and open, read by id, replay and verify as a Vigil node does.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// migrateEvents is how many events the layout-1 stream is given.
const migrateEvents = 3000

// migrateMsg is one stored message as read back from the stream.
type migrateMsg struct {
	subject string
	data    string
	time    time.Time
}

// migrateLayout1 is what migrateWriteLayout1 stored.
type migrateLayout1 struct {
	cfg      jetstream.StreamConfig // the layout-1 stream's config as created
	state    jetstream.StreamState
	msgs     map[uint64]migrateMsg // every stored message by seq
	ids      map[uint64]string     // the events' ids by seq
	tenants  map[uint64]string
	gap      uint64 // the interior seq deleted
	consumer string // the output's durable consumer
	filter   []string
	ackFloor uint64
	next     uint64 // the first seq after the ack floor the consumer matches
}

// migrateCluster starts a three-server cluster holding a layout-1 log
// (skipped with -short).
func migrateCluster(t *testing.T) (*clusterNATS, *migrateLayout1) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a NATS cluster: skipped with -short")
	}
	cl := clusterStartNATS(t, 3)
	return cl, migrateWriteLayout1(t, cl.url(0))
}

// migrateWriteLayout1 creates VIGIL_EVENTS with three replicas exactly as
// the builds before layout 2 did (store.Open then: no metadata, no
// compression, Nats-Msg-Id dedup window, the operator's retention limits)
// and stores migrateEvents chained events through it as those builds' two
// nodes vigil-a and vigil-b did: canonical bodies with their hash chain,
// subject vigil.events.<tenant>.<category>.<severity>.<id>, Nats-Msg-Id
// tenant/id. Retention has removed seqs 1-10, a stray non-event message
// in the middle was deleted (an interior gap), and an output's durable
// consumer (as the outputs manager creates it) acknowledged its first 40
// events.
func migrateWriteLayout1(t *testing.T, url string) *migrateLayout1 {
	t.Helper()
	ctx := t.Context()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	fx := &migrateLayout1{
		cfg: jetstream.StreamConfig{
			Name:        store.StreamName,
			Description: "Vigil security events",
			Subjects:    []string{store.SubjectPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			Duplicates:  5 * time.Minute, // --dedup-window 5m
			MaxAge:      90 * 24 * time.Hour,
			MaxBytes:    128 << 20,
			AllowDirect: true,
			Replicas:    3,
		},
		ids:      map[uint64]string{},
		tenants:  map[uint64]string{},
		consumer: "vigil-output-soc",
		filter:   []string{store.SubjectPrefix + ".acme.authentication.>"},
	}
	// A cluster just formed may not place three replicas yet.
	clusterCheckFor(t, 20*time.Second, func() error {
		_, err := js.CreateStream(ctx, fx.cfg)
		return err
	})
	cons, err := js.CreateOrUpdateConsumer(ctx, store.StreamName, jetstream.ConsumerConfig{
		Durable: fx.consumer, Description: "Vigil output soc (webhook)",
		DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 256, MaxDeliver: -1,
		FilterSubjects: fx.filter,
	})
	if err != nil {
		t.Fatal(err)
	}

	prev := map[string]string{}
	var futures []jetstream.PubAckFuture
	var ids, tenants []string
	for i := range migrateEvents {
		if i == migrateEvents/2 {
			// A stray message of another producer, deleted below.
			if _, err := js.Publish(ctx, store.SubjectPrefix+".junk.stray.x.y", []byte("not an event")); err != nil {
				t.Fatal(err)
			}
		}
		e := &event.Event{ID: fmt.Sprintf("evt-%05d", i), Type: "audit.query", User: fmt.Sprintf("u%d", i%7), Message: strings.Repeat("m", i%50)}
		if i%3 == 0 {
			e.Type = "authentication.login"
		}
		tenant := "default"
		if i%2 == 1 {
			tenant = "acme"
		}
		if _, err := event.Normalize(e, tenant, time.Now(), event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		e.Chain = "vigil-a"
		if i%5 >= 3 {
			e.Chain = "vigil-b"
		}
		e.PrevHash = prev[e.Chain]
		h, err := store.Hash(e)
		if err != nil {
			t.Fatal(err)
		}
		e.Hash = h
		body, err := e.AppendJSON(nil) // the canonical body: the hash last
		if err != nil {
			t.Fatal(err)
		}
		prev[e.Chain] = h
		msg := &nats.Msg{Subject: store.Subject(e) + "." + e.ID, Data: body,
			Header: nats.Header{jetstream.MsgIDHeader: []string{tenant + "/" + e.ID}}}
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		ids, tenants = append(ids, e.ID), append(tenants, tenant)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("layout-1 events not all acknowledged within 30s")
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			fx.ids[ack.Sequence], fx.tenants[ack.Sequence] = ids[i], tenants[i]
		case err := <-f.Err():
			t.Fatalf("publish %s: %v", ids[i], err)
		}
	}
	fx.gap = migrateEvents/2 + 1
	if _, ok := fx.ids[fx.gap]; ok {
		t.Fatalf("seq %d holds an event, not the stray message", fx.gap)
	}

	// The output acknowledged its first 40 events (acme's logins).
	batch, err := cons.Fetch(40, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		meta, _ := m.Metadata()
		fx.ackFloor = meta.Sequence.Stream
		n++
	}
	if n != 40 {
		t.Fatalf("the output consumer acknowledged %d, want 40", n)
	}
	s, err := js.Stream(ctx, store.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, fx.gap); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(11)); err != nil { // seqs 1-10: retention
		t.Fatal(err)
	}
	for seq := range uint64(11) {
		delete(fx.ids, seq)
		delete(fx.tenants, seq)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fx.state = info.State
	if fx.state.FirstSeq != 11 || fx.state.LastSeq != migrateEvents+1 || fx.state.Msgs != migrateEvents-10 {
		t.Fatalf("layout-1 stream: %+v", fx.state)
	}
	fx.msgs = migrateReadAll(t, js, fx.state)
	for seq := fx.ackFloor + 1; seq <= fx.state.LastSeq; seq++ {
		if m, ok := fx.msgs[seq]; ok && strings.HasPrefix(m.subject, store.SubjectPrefix+".acme.authentication.") {
			fx.next = seq
			break
		}
	}
	if fx.next == 0 {
		t.Fatal("no event for the output consumer after its ack floor")
	}
	return fx
}

// migrateReadAll reads every message of the stream (state: its first and
// last seq and message count, as its leader told) with an ordered
// consumer: subject, body and store time by seq. The consumer may be
// placed on a replica that has not yet applied the latest purge or
// delete, and right after a server's restart the cluster may answer
// "temporarily unavailable": it reads again until what it read agrees
// with state.
func migrateReadAll(t *testing.T, js jetstream.JetStream, state jetstream.StreamState) map[uint64]migrateMsg {
	t.Helper()
	var out map[uint64]migrateMsg
	clusterCheckFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		cons, err := js.OrderedConsumer(ctx, store.StreamName, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return fmt.Errorf("read the stream: %w", err)
		}
		it, err := cons.Messages()
		if err != nil {
			return fmt.Errorf("read the stream: %w", err)
		}
		defer it.Stop()
		stop := context.AfterFunc(ctx, it.Stop)
		defer stop()
		out = map[uint64]migrateMsg{}
		for {
			m, err := it.Next()
			if err != nil {
				return fmt.Errorf("read the stream: %w", err)
			}
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read the stream: %w", err)
			}
			seq := meta.Sequence.Stream
			out[seq] = migrateMsg{subject: m.Subject(), data: string(m.Data()), time: meta.Timestamp}
			if seq >= state.LastSeq {
				if first := slices.Min(slices.Collect(maps.Keys(out))); first != state.FirstSeq || uint64(len(out)) != state.Msgs {
					return fmt.Errorf("read seq %d-%d, %d messages; the stream holds %d-%d, %d", first, seq, len(out), state.FirstSeq, state.LastSeq, state.Msgs)
				}
				return nil
			}
		}
	})
	return out
}

// migrateRun runs `vigil migrate --nats-url url` as an operator does. With
// killAt set, it kills the process (SIGKILL) as soon as it has printed a
// line containing killAt; killed says whether the kill ended it (a run
// that finished first was not). out is its standard output and error.
func migrateRun(t *testing.T, url, killAt string) (out string, killed bool, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, archVigilBin.Path(t), "migrate", "--nats-url", url)
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if killAt != "" && strings.Contains(sc.Text(), killAt) {
			_ = cmd.Process.Kill()
			killAt = ""
		}
	}
	err = cmd.Wait()
	killed = cmd.ProcessState.ExitCode() == -1 // ended by a signal
	return strings.Join(lines, "\n") + "\n" + stderr.String(), killed, err
}

// migrateInProcess runs store.Migrate against url and calls at(step) as
// each step is reported (the migration waits meanwhile); at may cancel
// the context it is given: the migration then stops at that step's
// boundary (its next request fails at once).
func migrateInProcess(t *testing.T, url string, at func(step string, cancel context.CancelFunc)) (store.MigrateReport, []string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var steps []string
	rep, err := store.Migrate(ctx, store.Config{NATSURL: url}, func(step string) {
		steps = append(steps, step)
		at(step, cancel)
	})
	return rep, steps, err
}

// migrateRefused checks that a Vigil node refuses the stream while the
// migration is unfinished, naming the command that completes it, and
// creates nothing meanwhile (a new VIGIL_EVENTS would be taken for a
// migrated one).
func migrateRefused(t *testing.T, url, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l, err := store.Open(ctx, store.Config{NATSURL: url, NodeID: "vigil-a"})
	if err == nil {
		l.Close()
		t.Errorf("%s: a node opened the stream, in the middle of its migration", when)
		return
	}
	if !strings.Contains(err.Error(), "vigil migrate --nats-url "+url) {
		t.Errorf("%s: a node's open: %v, want the command that completes the migration", when, err)
	}
}

// migrateUnfinished says whether a migration is under way: the
// temporary stream exists, or VIGIL_EVENTS does not or is still marked.
func migrateUnfinished(t *testing.T, js jetstream.JetStream) bool {
	t.Helper()
	if _, err := js.Stream(t.Context(), "VIGIL_EVENTS_MIGRATE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		return true
	}
	s, err := js.Stream(t.Context(), store.StreamName)
	if err != nil {
		return true
	}
	cfg := s.CachedInfo().Config
	return cfg.Mirror != nil || cfg.Metadata[store.LayoutMetadataKey] != store.Layout || cfg.Metadata["vigil_migrate_first_seq"] != ""
}

// migrateCheck asserts the migration's outcome: the stream in layout 2
// with three current replicas and the limits it had; every message at its
// seq with its store time and body, on its subject without the id; the
// gap still a gap; the temporary stream gone; the output consumer at its
// ack floor + 1; and a node opens it, reads by id, replays, verifies the
// chains, recognises a retry of a migrated event and appends after it.
//
// The stream is read through server 0 (the migration's, never stopped by
// these tests) and the node opens it through server 1 once every replica
// is current: a server restarted after missing the stream's deletion and
// creation answers "stream not found" for it itself while it catches up
// (seen once in a -race run, for over 20 s, on the restarted server).
func migrateCheck(t *testing.T, cl *clusterNATS, fx *migrateLayout1) {
	t.Helper()
	ctx := t.Context()
	nc, err := nats.Connect(cl.url(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	var info *jetstream.StreamInfo
	clusterCheckFor(t, 30*time.Second, func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		s, err := js.Stream(actx, store.StreamName)
		if err != nil {
			return err
		}
		info = s.CachedInfo()
		c := info.Cluster
		if c == nil || c.Leader == "" || len(c.Replicas) != 2 {
			return fmt.Errorf("stream cluster %+v", c)
		}
		for _, p := range c.Replicas {
			if p.Offline || !p.Current {
				return fmt.Errorf("replica %s: offline %v, current %v", p.Name, p.Offline, p.Current)
			}
		}
		return nil
	})
	cfg, want := info.Config, fx.cfg
	if cfg.Replicas != 3 || cfg.Mirror != nil || len(cfg.Sources) != 0 || !slices.Equal(cfg.Subjects, want.Subjects) ||
		cfg.Storage != want.Storage || cfg.Retention != want.Retention || cfg.Discard != want.Discard ||
		cfg.Duplicates != want.Duplicates || cfg.MaxAge != want.MaxAge || cfg.MaxBytes != want.MaxBytes ||
		cfg.MaxMsgs != -1 || cfg.MaxMsgsPerSubject != -1 || !cfg.AllowDirect || cfg.DenyDelete || cfg.DenyPurge {
		t.Errorf("migrated stream's config differs from the layout-1 stream's (replicas, subjects, limits):\n got  replicas %d mirror %v subjects %v storage %v retention %v discard %v duplicates %v max_age %v max_bytes %d max_msgs %d per_subject %d allow_direct %v\n want replicas %d subjects %v storage %v retention %v discard %v duplicates %v max_age %v max_bytes %d",
			cfg.Replicas, cfg.Mirror, cfg.Subjects, cfg.Storage, cfg.Retention, cfg.Discard, cfg.Duplicates, cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgs, cfg.MaxMsgsPerSubject, cfg.AllowDirect,
			want.Replicas, want.Subjects, want.Storage, want.Retention, want.Discard, want.Duplicates, want.MaxAge, want.MaxBytes)
	}
	if cfg.Metadata[store.LayoutMetadataKey] != store.Layout || cfg.Compression != jetstream.S2Compression {
		t.Errorf("migrated stream: metadata %v, compression %v", cfg.Metadata, cfg.Compression)
	}
	for k := range cfg.Metadata {
		if strings.HasPrefix(k, "vigil_migrate") {
			t.Errorf("migrated stream still carries %s", k)
		}
	}
	st := info.State
	if st.FirstSeq != fx.state.FirstSeq || st.LastSeq != fx.state.LastSeq || st.Msgs != fx.state.Msgs || st.NumDeleted != 1 {
		t.Fatalf("migrated stream holds seq %d-%d, %d messages, %d deleted; want %d-%d, %d, 1 deleted (the gap)",
			st.FirstSeq, st.LastSeq, st.Msgs, st.NumDeleted, fx.state.FirstSeq, fx.state.LastSeq, fx.state.Msgs)
	}
	if _, err := js.Stream(ctx, "VIGIL_EVENTS_MIGRATE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the temporary stream: %v, want it deleted", err)
	}
	s, err := js.Stream(ctx, store.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(ctx, fx.gap); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the interior gap, seq %d: %v, want not found", fx.gap, err)
	}

	// Every message: same seq, store time and body; the id out of its
	// subject.
	after := migrateReadAll(t, js, fx.state)
	if len(after) != len(fx.msgs) {
		t.Errorf("%d messages read after the migration, %d before", len(after), len(fx.msgs))
	}
	subjects := map[string]bool{}
	bad := 0
	for seq, m := range fx.msgs {
		a, ok := after[seq]
		wantSubj := strings.TrimSuffix(m.subject, "."+fx.ids[seq])
		subjects[wantSubj] = true
		switch {
		case !ok:
			t.Errorf("seq %d is gone", seq)
		case a.data != m.data:
			t.Errorf("seq %d holds another body:\n%s\nwas\n%s", seq, a.data, m.data)
		case !a.time.Equal(m.time):
			t.Errorf("seq %d stored at %v, was %v", seq, a.time, m.time)
		case a.subject != wantSubj || strings.Count(a.subject, ".") != 4:
			t.Errorf("seq %d on subject %s (was %s), want %s", seq, a.subject, m.subject, wantSubj)
		default:
			continue
		}
		if bad++; bad > 5 {
			t.FailNow()
		}
	}
	if st.NumSubjects != uint64(len(subjects)) {
		t.Errorf("migrated stream has %d subjects, want %d (layout 2: tenant, category, severity)", st.NumSubjects, len(subjects))
	}

	// The output consumer resumes after what it acknowledged.
	c, err := js.Consumer(ctx, store.StreamName, fx.consumer)
	if err != nil {
		t.Fatalf("output consumer %s after the migration: %v", fx.consumer, err)
	}
	ci := c.CachedInfo()
	if ci.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || ci.Config.OptStartSeq != fx.ackFloor+1 ||
		!slices.Equal(ci.Config.FilterSubjects, fx.filter) || ci.Config.AckPolicy != jetstream.AckExplicitPolicy ||
		ci.Config.MaxDeliver != -1 || ci.Config.AckWait != 30*time.Second || ci.Config.MaxAckPending != 256 {
		t.Errorf("output consumer after the migration: %+v, want it to start at seq %d (ack floor %d + 1)", ci.Config, fx.ackFloor+1, fx.ackFloor)
	}
	if ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
		t.Errorf("output consumer's cluster: %+v, want three replicas", ci.Cluster)
	}
	m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := m.Metadata()
	if meta.Sequence.Stream != fx.next || string(m.Data()) != fx.msgs[fx.next].data {
		t.Errorf("output consumer resumes at seq %d, want %d", meta.Sequence.Stream, fx.next)
	}

	// A Vigil node on the migrated stream.
	l, err := store.Open(ctx, store.Config{NATSURL: cl.url(1), NodeID: "vigil-a", DataDir: t.TempDir(),
		DedupWindow: fx.cfg.Duplicates, MaxAge: fx.cfg.MaxAge, MaxBytes: fx.cfg.MaxBytes})
	if err != nil {
		t.Fatalf("open the migrated stream: %v", err)
	}
	defer l.Close()
	if r := l.Replicas(); r != 3 {
		t.Errorf("node's replicas %d, want 3", r)
	}
	if _, err := l.WaitDedupIndex(ctx); err != nil {
		t.Fatal(err)
	}
	seqs := make([]uint64, 0, len(fx.ids))
	for seq := range fx.ids {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		if i%97 != 0 && seq != fx.gap+1 && i != len(seqs)-1 {
			continue
		}
		e, err := l.Get(ctx, fx.ids[seq])
		if err != nil || e.Seq != seq || e.Tenant != fx.tenants[seq] {
			t.Fatalf("get %s: %+v %v, want seq %d", fx.ids[seq], e, err, seq)
		}
	}
	var replayed []uint64
	if err := l.ScanRange(ctx, fx.state.FirstSeq, fx.state.LastSeq, func(e *event.Event) bool {
		if e.ID != fx.ids[e.Seq] {
			t.Errorf("replay: seq %d is %s, want %s", e.Seq, e.ID, fx.ids[e.Seq])
		}
		replayed = append(replayed, e.Seq)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(replayed, seqs) {
		t.Errorf("replay delivered %d events (%d..), want %d", len(replayed), replayed[:min(3, len(replayed))], len(seqs))
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK || rep.Checked != uint64(len(seqs)) || len(rep.Chains) != 2 {
		t.Fatalf("verify after the migration: %+v %v", rep, err)
	}
	// A late retry of a migrated event is a duplicate; the next event
	// comes after the last migrated seq and continues vigil-a's chain.
	last := seqs[len(seqs)-1]
	retry := &event.Event{ID: fx.ids[last], Type: "audit.query"}
	if _, err := event.Normalize(retry, fx.tenants[last], time.Now(), event.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	next := &event.Event{ID: "after-migrate", Type: "audit.query"}
	if _, err := event.Normalize(next, "default", time.Now(), event.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	acks, err := l.Append(ctx, []*event.Event{retry, next})
	if err != nil || !acks[0].Duplicate || acks[0].Seq != last || acks[1].Duplicate || acks[1].Seq != fx.state.LastSeq+1 {
		t.Fatalf("append after the migration: %+v %v, want a duplicate at %d and a new event at %d", acks, err, last, fx.state.LastSeq+1)
	}
	if rep, err := l.Verify(ctx); err != nil || !rep.OK || rep.Checked != uint64(len(seqs))+1 {
		t.Fatalf("verify after an append: %+v %v", rep, err)
	}
}

// migrateDone checks the report of a `vigil migrate` that finished. A run
// that completes an interrupted one reports the output consumers only if
// it created them itself (consumers says whether to expect them).
func migrateDone(t *testing.T, out string, err error, fx *migrateLayout1, consumers bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("vigil migrate: %v\n%s", err, out)
	}
	want := fmt.Sprintf("migrated %d messages (seq %d..%d, every seq kept) to layout %s", fx.state.Msgs, fx.state.FirstSeq, fx.state.LastSeq, store.Layout)
	if !strings.Contains(out, want) || consumers && !strings.Contains(out, fmt.Sprintf("output consumer %s resumes at seq %d", fx.consumer, fx.ackFloor+1)) {
		t.Fatalf("vigil migrate said:\n%s\nwant %q and the output consumer at seq %d", out, want, fx.ackFloor+1)
	}
}

// TestClusterMigrate: `vigil migrate --nats-url` of a layout-1 stream with
// three replicas on a three-server cluster, straight through; run again,
// it has nothing left to do.
func TestClusterMigrate(t *testing.T) {
	cl, fx := migrateCluster(t)
	migrateRefused(t, cl.url(2), "before the migration")
	start := time.Now()
	out, _, err := migrateRun(t, cl.url(0), "")
	migrateDone(t, out, err, fx, true)
	t.Logf("migrated %d messages in %v:\n%s", fx.state.Msgs, time.Since(start).Round(time.Millisecond), out)
	migrateCheck(t, cl, fx)
	out, _, err = migrateRun(t, cl.url(2), "")
	if err != nil || !strings.Contains(out, "layout "+store.Layout+" already") {
		t.Fatalf("second vigil migrate: %v\n%s", err, out)
	}
}

// TestClusterMigrateInterrupted: the migration is stopped at every kind of
// point — SIGKILL mid-copy into the temporary stream, its context
// cancelled once the copy is detached and again once the layout-1 stream
// is deleted (no VIGIL_EVENTS at all), SIGKILL mid-copy back — a node
// refuses the stream each time, and `vigil migrate` run again completes
// it. Meanwhile a node of a build that did not refuse a missing stream
// created an empty VIGIL_EVENTS in layout 2: the migration makes it give
// way instead of taking it for the migrated stream and deleting the copy.
func TestClusterMigrateInterrupted(t *testing.T) {
	cl, fx := migrateCluster(t)
	url := cl.url(0)

	out, killed, err := migrateRun(t, url, "to VIGIL_EVENTS_MIGRATE")
	if !killed {
		t.Fatalf("vigil migrate was not killed mid-copy: %v\n%s", err, out)
	}
	migrateRefused(t, url, "killed mid-copy")

	for _, at := range []string{"deleting the layout-1 stream", "copying " + fmt.Sprint(fx.state.Msgs) + " messages back"} {
		_, steps, err := migrateInProcess(t, url, func(step string, cancel context.CancelFunc) {
			if strings.Contains(step, at) {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("migration cancelled at %q: %v (steps %q)", at, err, steps)
		}
		migrateRefused(t, url, "cancelled at "+at)
	}

	// What an earlier build's node did on finding no stream.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: store.StreamName, Description: "Vigil security events", Subjects: []string{store.SubjectPrefix + ".>"},
		Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		Duplicates: 2 * time.Minute, MaxBytes: -1, AllowDirect: true, Compression: jetstream.S2Compression,
		Metadata: map[string]string{store.LayoutMetadataKey: store.Layout}, Replicas: 3,
	}); err != nil {
		t.Fatal(err)
	}
	migrateRefused(t, url, "an empty stream created between the steps")

	out, killed, err = migrateRun(t, url, "messages back to")
	switch {
	case !killed:
		t.Logf("vigil migrate finished before its kill mid-copy back: %v\n%s", err, out)
	case migrateUnfinished(t, js):
		migrateRefused(t, url, "killed mid-copy back")
	default:
		t.Logf("vigil migrate was killed after its last step")
	}
	if !strings.Contains(out, "deleting the empty "+store.StreamName) {
		t.Errorf("vigil migrate did not delete the empty stream created between its steps:\n%s", out)
	}
	out, _, err = migrateRun(t, url, "")
	migrateDone(t, out, err, fx, false)
	migrateCheck(t, cl, fx)
}

// TestClusterMigrateServerDown: a server of the cluster (the one leading
// the temporary stream, unless that is the one vigil migrate is connected
// to) stops once the copy has started. The migration either completes on
// the two servers left (JetStream places a replica on the stopped server
// too; it catches up once back) or fails, and a node then refuses the
// stream; once the server is back, `vigil migrate` completes (or finds
// nothing left to do), and the replicas are all current.
func TestClusterMigrateServerDown(t *testing.T) {
	cl, fx := migrateCluster(t)
	url := cl.url(0)
	down := -1
	rep, steps, err := migrateInProcess(t, url, func(step string, _ context.CancelFunc) {
		if down < 0 && strings.Contains(step, "to VIGIL_EVENTS_MIGRATE") {
			if down = cl.streamLeader("VIGIL_EVENTS_MIGRATE"); down <= 0 {
				down = 2
			}
			cl.stop(down)
		}
	})
	if down < 0 {
		t.Fatalf("the migration never started its copy: %v (steps %q)", err, steps)
	}
	t.Logf("server %s stopped once the copy started; the migration: %+v, %v (steps %q)", cl.servers[down].Name(), rep, err, steps)
	if err != nil {
		if !strings.Contains(err.Error(), "store: migrate:") {
			t.Errorf("the migration with a server down failed with %v", err)
		}
		migrateRefused(t, url, "migration failed with a server down")
	}
	cl.start(down)
	out, _, err := migrateRun(t, url, "")
	t.Logf("vigil migrate once the server is back:\n%s", out)
	if err != nil {
		t.Fatalf("vigil migrate once the server is back: %v\n%s", err, out)
	}
	migrateCheck(t, cl, fx)
}

// TestClusterMigrateServerRestarted: a server of the cluster restarts
// (an operator's rolling restart) just before VIGIL_EVENTS is created
// again with three replicas. Until the restarted server has reported to
// the others, JetStream refuses to place a replica on it ("no suitable
// peers for placement, peer offline"): the migration waits for that
// instead of failing with the layout-1 stream already deleted.
func TestClusterMigrateServerRestarted(t *testing.T) {
	cl, fx := migrateCluster(t)
	url := cl.url(0)
	const restarted = 2
	start := time.Now()
	rep, steps, err := migrateInProcess(t, url, func(step string, _ context.CancelFunc) {
		if strings.Contains(step, "deleting the layout-1 stream") {
			cl.stop(restarted)
			cl.start(restarted)
		}
	})
	if err != nil || !rep.Done {
		t.Fatalf("the migration with %s restarted: %+v %v (steps %q)", cl.servers[restarted].Name(), rep, err, steps)
	}
	t.Logf("migrated in %v with %s restarted before the copy back", time.Since(start).Round(time.Millisecond), cl.servers[restarted].Name())
	migrateCheck(t, cl, fx)
}

// TestClusterMigrateLeaderLostMidStep: the server leading the layout-1
// stream stops just as the migration deletes that stream, so the request
// meets a leader election (JetStream answers nothing, or 503, for a few
// seconds). The migration waits for the new leader, as it does while
// copying, instead of ending with "run vigil migrate again".
func TestClusterMigrateLeaderLostMidStep(t *testing.T) {
	cl, fx := migrateCluster(t)
	leader := cl.streamLeader("VIGIL_EVENTS")
	if leader < 0 {
		t.Fatal("VIGIL_EVENTS has no leader")
	}
	other := (leader + 1) % 3 // the migration's server stays up
	url := cl.url(other)
	start := time.Now()
	rep, steps, err := migrateInProcess(t, url, func(step string, _ context.CancelFunc) {
		if strings.Contains(step, "deleting the layout-1 stream") {
			if l := cl.streamLeader("VIGIL_EVENTS"); l >= 0 && l != other {
				leader = l
			}
			cl.stop(leader)
		}
	})
	if err != nil || !rep.Done {
		t.Fatalf("the migration with the stream's leader %s stopped mid-step: %+v %v (steps %q)", cl.servers[leader].Name(), rep, err, steps)
	}
	t.Logf("migrated in %v with %s stopped as the layout-1 stream was deleted", time.Since(start).Round(time.Millisecond), cl.servers[leader].Name())
	cl.start(leader)
	migrateCheck(t, cl, fx)
}
