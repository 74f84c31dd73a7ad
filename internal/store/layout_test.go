package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestLayout2SubjectsDoNotGrowWithTheLog (issue 12 item 8): events are
// stored on vigil.events.<tenant>.<category>.<severity>, so the stream
// keeps one subject per combination, not one per event, and it is
// S2-compressed and says its layout. Before: one subject per event.
func TestLayout2SubjectsDoNotGrowWithTheLog(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, manyEvents(t, 500, "sub")); err != nil {
		t.Fatal(err)
	}
	s, err := l.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.State.Msgs != 500 || info.State.NumSubjects != 1 {
		t.Fatalf("%d messages on %d subjects; want 500 on 1", info.State.Msgs, info.State.NumSubjects)
	}
	if info.Config.Compression != jetstream.S2Compression || info.Config.Metadata[LayoutMetadataKey] != Layout {
		t.Fatalf("compression %v, metadata %v", info.Config.Compression, info.Config.Metadata)
	}
	// By id without a subject per id.
	e, err := l.Get(ctx, "sub-250")
	if err != nil || e.Seq != 251 || e.ID != "sub-250" {
		t.Fatalf("get sub-250: %+v %v", e, err)
	}
}

// TestAbandonedBatchFindsItsEventsAmongOthers: the abandoned batch's
// lookup reads each subject it published to from its floor on and takes
// only its own ids (same tenant and id), not another tenant's event
// with the same id stored meanwhile.
func TestAbandonedBatchFindsItsEventsAmongOthers(t *testing.T) {
	ctx := context.Background()
	l := open(t, t.TempDir())
	defer l.Close()
	if _, err := l.Append(ctx, manyEvents(t, 50, "before")); err != nil {
		t.Fatal(err)
	}
	// Another tenant's event with an id of the batch, on another subject.
	other := manyEvents(t, 1, "mine")
	other[0].Tenant = "other"
	if _, err := l.Append(ctx, other); err != nil {
		t.Fatal(err)
	}
	old := ackTimeout
	ackTimeout = time.Nanosecond
	first, err := l.Append(ctx, manyEvents(t, 200, "mine"))
	ackTimeout = old
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range first {
		if a.Seq != uint64(52+i) || a.Duplicate {
			t.Fatalf("event %d: %+v, want seq %d", i, a, 52+i)
		}
	}
}

// writeLayout1 builds a data dir in layout 1 through a real embedded
// store: chained events published on subjects with their id (as the
// builds before layout 2 did), the stream config of then (no metadata, no
// compression), the first seqs removed by retention, a junk message in
// the middle deleted (an interior gap), one left, and an output consumer
// that acknowledged part of the log. It returns the ids by seq.
func writeLayout1(t *testing.T, dir string) map[uint64]string {
	t.Helper()
	ctx := context.Background()
	l := open(t, dir)
	defer l.Close()
	s, err := l.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Metadata, cfg.Compression = nil, jetstream.NoCompression
	if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// An output consumer as the outputs manager creates it (at the end).
	cons, err := l.js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable: "vigil-output-soc", DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: []string{SubjectPrefix + ".acme.authentication.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint64]string{}
	prev := ""
	for i := range 40 {
		if i == 20 {
			for _, subj := range []string{SubjectPrefix + ".junk.deleted.x.y", SubjectPrefix + ".kept"} {
				if _, err := l.js.Publish(ctx, subj, []byte("not an event")); err != nil {
					t.Fatal(err)
				}
			}
		}
		e := normalized(t, &event.Event{ID: fmt.Sprintf("v1-%02d", i), Type: "authentication.login", User: "u"})[0]
		if i%2 == 1 {
			e.Tenant = "acme"
		}
		e.Chain, e.PrevHash = "node-1", prev
		body, hash, err := canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: Subject(e) + "." + e.ID, Data: body})
		if err != nil {
			t.Fatal(err)
		}
		ids[ack.Sequence] = e.ID
		prev = hash
	}
	batch, err := cons.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 5 { // acme's events at seqs 2, 4, 6, 8, 10
		t.Fatalf("output consumer acknowledged %d, want 5", n)
	}
	if err := s.DeleteMsg(ctx, 21); err != nil { // the first junk message
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(6)); err != nil { // seqs 1-5 gone
		t.Fatal(err)
	}
	for seq := range uint64(6) {
		delete(ids, seq)
	}
	return ids
}

// TestMigratePausesRetention: a layout-1 log whose oldest events reach its
// max age while it is being copied keeps them all through the migration
// (retention is paused, then set again). Without the pause they expired
// before the copy read them, and the migration stalled for good.
func TestMigratePausesRetention(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeLayout1(t, dir)
	const maxAge = 3 * time.Second
	streamWhileDown(t, dir, func(js jetstream.JetStream, s jetstream.Stream) {
		cfg := s.CachedInfo().Config
		cfg.MaxAge = maxAge
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	})
	aged := time.Now().Add(maxAge + time.Second)
	var steps []string
	rep, err := Migrate(ctx, Config{DataDir: dir}, func(s string) {
		steps = append(steps, s)
		if strings.HasPrefix(s, "output consumer") {
			// The copy starts after this line: let every event reach
			// the stream's max age first, as the oldest events of a
			// large log do while it is copied. (The time passing is the
			// test's subject, not a wait for a state.)
			time.Sleep(time.Until(aged))
		}
	})
	if err != nil {
		t.Fatalf("migrate: %v (steps %q)", err, steps)
	}
	if !rep.Done || rep.Messages != 36 || rep.FirstSeq != 6 || rep.LastSeq != 42 {
		t.Fatalf("report %+v (steps %q)", rep, steps)
	}
	if !strings.HasPrefix(steps[0], "pausing retention") {
		t.Fatalf("steps %q", steps)
	}
	// As the migration left it (a node's Open then sets its own flags').
	streamWhileDown(t, dir, func(_ jetstream.JetStream, s jetstream.Stream) {
		if got := s.CachedInfo().Config; got.MaxAge != maxAge || got.Metadata[migrateLimitsKey] != "" {
			t.Fatalf("after migrate: max age %v, metadata %v", got.MaxAge, got.Metadata)
		}
	})
}

// TestMigrateLayout1KeepsEverySeq: a data dir in layout 1 is refused with
// the command to run; vigil migrate rewrites it keeping every seq, store
// time, gap and the output consumer's position; the log then reads by id
// and seq, and its integrity chain checks out.
func TestMigrateLayout1KeepsEverySeq(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ids := writeLayout1(t, dir)

	_, err := Open(ctx, Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "vigil migrate --data-dir "+dir) || !strings.Contains(err.Error(), "layout 1") {
		t.Fatalf("open of a layout-1 dir: %v", err)
	}
	var before []time.Time
	// What the layout-1 stream holds, by direct reads (Open refuses it).
	streamWhileDown(t, dir, func(_ jetstream.JetStream, s jetstream.Stream) {
		for seq := uint64(6); seq <= 42; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if seq == 21 {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			before = append(before, m.Time)
		}
	})

	var steps []string
	rep, err := Migrate(ctx, Config{DataDir: dir}, func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatalf("migrate: %v (steps %q)", err, steps)
	}
	if !rep.Done || rep.FirstSeq != 6 || rep.LastSeq != 42 || rep.Messages != 36 || len(rep.Consumers) != 1 || rep.Consumers[0].Resume != 11 {
		t.Fatalf("report %+v", rep)
	}
	again, err := Migrate(ctx, Config{DataDir: dir}, nil)
	if err != nil || again.Done || !strings.Contains(again.Reason, "already") {
		t.Fatalf("second migrate: %+v %v", again, err)
	}

	l := open(t, dir)
	defer l.Close()
	if _, err := l.WaitDedupIndex(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := l.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.State.FirstSeq != 6 || info.State.LastSeq != 42 || info.State.Msgs != 36 || info.State.NumSubjects != 3 {
		t.Fatalf("after migrate: %+v", info.State)
	}
	if _, err := l.js.Stream(ctx, migrateStream); err == nil {
		t.Fatal("the temporary stream is left")
	}
	// Every seq holds what it held, at the same store time.
	var after []time.Time
	for seq := uint64(6); seq <= 42; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if seq == 21 {
			if err == nil {
				t.Fatal("the interior gap was filled")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, m.Time)
		if id, ok := ids[seq]; ok {
			if got, _ := idOf(m.Data); got != id {
				t.Fatalf("seq %d holds %q, want %q", seq, got, id)
			}
			if strings.Count(m.Subject, ".") != 4 {
				t.Fatalf("seq %d on subject %s", seq, m.Subject)
			}
		} else if m.Subject != SubjectPrefix+".kept" {
			t.Fatalf("seq %d: junk moved to %s", seq, m.Subject)
		}
	}
	for i := range before {
		if !before[i].Equal(after[i]) {
			t.Fatalf("message %d stored at %v, was %v", i, after[i], before[i])
		}
	}
	for seq, id := range ids {
		e, err := l.Get(ctx, id)
		if err != nil || e.Seq != seq {
			t.Fatalf("get %s: %+v %v, want seq %d", id, e, err, seq)
		}
	}
	rep2, err := l.Verify(ctx)
	if err != nil || !rep2.OK || rep2.Checked != 35 {
		t.Fatalf("verify: %+v %v", rep2, err)
	}
	// A duplicate of a migrated id is recognised (the dedup index was
	// rebuilt from the migrated log), and the next event gets seq 43.
	dup := normalized(t, &event.Event{ID: "v1-39", Type: "authentication.login"})
	dup[0].Tenant = "acme"
	acks, err := l.Append(ctx, dup)
	if err != nil || !acks[0].Duplicate || acks[0].Seq != 42 {
		t.Fatalf("duplicate after migrate: %+v %v", acks, err)
	}
	acks, err = l.Append(ctx, normalized(t, &event.Event{ID: "v2-1", Type: "audit.query"}))
	if err != nil || acks[0].Seq != 43 {
		t.Fatalf("append after migrate: %+v %v", acks, err)
	}
	// The output consumer resumes after what it acknowledged.
	c, err := l.js.Consumer(ctx, StreamName, "vigil-output-soc")
	if err != nil {
		t.Fatal(err)
	}
	ci := c.CachedInfo()
	if ci.Config.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || ci.Config.OptStartSeq != rep.Consumers[0].Resume {
		t.Fatalf("output consumer %+v", ci.Config)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := m.Metadata()
	if meta.Sequence.Stream != 12 { // acme's first event after 11
		t.Fatalf("output consumer resumes at %d, want 12", meta.Sequence.Stream)
	}
	if got, _ := idOf(m.Data()); !strings.HasPrefix(m.Subject(), SubjectPrefix+".acme.authentication.") || got == "" {
		t.Fatalf("output consumer got %s %q", m.Subject(), got)
	}
}

// TestEmptyLayout1StreamIsUpdated: a layout-1 stream without events is
// simply given the layout-2 config at Open.
func TestEmptyLayout1StreamIsUpdated(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := open(t, dir)
	s, _ := l.js.Stream(ctx, StreamName)
	cfg := s.CachedInfo().Config
	cfg.Metadata, cfg.Compression = nil, jetstream.NoCompression
	if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir)
	defer l.Close()
	s, _ = l.js.Stream(ctx, StreamName)
	if md := s.CachedInfo().Config.Metadata; md[LayoutMetadataKey] != Layout || s.CachedInfo().Config.Compression != jetstream.S2Compression {
		t.Fatalf("config after open: %+v", s.CachedInfo().Config)
	}
}
