package store

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// spillFill opens a log in dir with the spill on, runs a tail from from,
// appends n demo events and waits until the spill holds them.
func spillFill(t *testing.T, dir string, from uint64, n int, gen *demo.Generator) *Log {
	t.Helper()
	l := spillLog(t, dir)
	stop := ringTail(t, l, from, nil)
	t.Cleanup(stop)
	ringAppendDemo(t, l, gen, n, map[uint64]string{}, nil)
	last := l.ReplaySpillStats().Last
	ringWaitFor(t, "the spill to hold the appends", func() bool {
		info, err := l.stream.Info(context.Background())
		return err == nil && l.ReplaySpillStats().Last == info.State.LastSeq && l.ReplaySpillStats().Last > last
	})
	return l
}

// spillCheckRange replays [from, to] through ScanRange and compares it,
// event for event, with the log read directly; it returns how many came
// from the spill.
func spillCheckRange(t *testing.T, l *Log, from, to uint64) uint64 {
	t.Helper()
	wantSeqs, wantIDs := spillScan(t, l, from, to, l.StoredScanForBench)
	before := l.ReplaySpillStats().Served
	seqs, ids := spillScan(t, l, from, to, l.ScanRange)
	if len(seqs) != len(wantSeqs) {
		t.Fatalf("range %d..%d: %d events, the log has %d", from, to, len(seqs), len(wantSeqs))
	}
	for i := range seqs {
		if seqs[i] != wantSeqs[i] || ids[i] != wantIDs[i] {
			t.Fatalf("range %d..%d: event %d is seq %d id %s, the log has seq %d id %s", from, to, i, seqs[i], ids[i], wantSeqs[i], wantIDs[i])
		}
	}
	return l.ReplaySpillStats().Served - before
}

// TestSpillSurvivesCleanRestart: what a cleanly closed log spilled serves
// replays after the next Open (a deploy: every client resumes at once),
// event for event what the log holds; the new tail's records continue it,
// across a gap the log fills, and that survives the next restart too.
func TestSpillSurvivesCleanRestart(t *testing.T) {
	dir := t.TempDir()
	gen := demo.New(7)
	l := spillFill(t, dir, 1, 3000, gen)
	l.Close()
	manifest := filepath.Join(dir, spillDirName, spillManifestName)
	if _, err := os.Stat(manifest); err != nil {
		t.Fatalf("a clean Close left no manifest: %v", err)
	}

	l = spillLog(t, dir)
	st := l.ReplaySpillStats()
	if st.Recovered != 3000 || st.First != 1 || st.Last != 3000 {
		t.Fatalf("after a clean restart the spill holds %+v, want seqs 1..3000 kept", st)
	}
	if _, err := os.Stat(manifest); !os.IsNotExist(err) {
		t.Fatalf("the manifest outlived the Open that read it (a crash now must not find it): %v", err)
	}
	if n := spillCheckRange(t, l, 1, 3000); n != 3000 {
		t.Fatalf("after the restart %d of 3,000 events came from the spill", n)
	}
	// 100 events no tail delivers, then a tail from after them: the spill
	// holds 1..3000 and 3101.., the log fills the gap.
	ringAppendDemo(t, l, gen, 100, map[uint64]string{}, nil)
	stop := ringTail(t, l, 3101, nil)
	ringAppendDemo(t, l, gen, 400, map[uint64]string{}, nil)
	ringWaitFor(t, "the new tail's records", func() bool { return l.ReplaySpillStats().Last == 3500 })
	stop()
	if st := l.ReplaySpillStats(); st.Events != 3400 {
		t.Fatalf("the spill holds %d events across the gap, want 3,400", st.Events)
	}
	if n := spillCheckRange(t, l, 2990, 3500); n < 100 {
		t.Fatalf("across the gap only %d events came from the spill", n)
	}
	spillCheckRange(t, l, 1, 3500)
	l.Close()

	l = spillLog(t, dir)
	defer l.Close()
	if st := l.ReplaySpillStats(); st.Recovered < 3000 || st.First != 1 || st.Last < 3400 {
		t.Fatalf("the second restart kept %+v", st)
	}
	spillCheckRange(t, l, 1, 3500)
}

// TestSpillRestartChecksTheLog: what a previous process left is kept only
// when it agrees with the log; every way it could not is refused, and
// the spill starts empty with none of the old files left.
func TestSpillRestartChecksTheLog(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, why string
		change    func(t *testing.T, dir string)
	}{
		{"killed", "no manifest", func(t *testing.T, dir string) {
			// A process that did not close cleanly left no manifest.
			if err := os.Remove(filepath.Join(dir, spillDirName, spillManifestName)); err != nil {
				t.Fatal(err)
			}
		}},
		{"message-deleted", "deleted messages inside it", func(t *testing.T, dir string) {
			streamWhileDown(t, dir, func(_ jetstream.JetStream, s jetstream.Stream) {
				if err := s.DeleteMsg(ctx, 1500); err != nil {
					t.Fatal(err)
				}
			})
		}},
		{"stream-recreated", "not the one the spill was written from", func(t *testing.T, dir string) {
			streamWhileDown(t, dir, func(js jetstream.JetStream, s jetstream.Stream) {
				cfg := s.CachedInfo().Config
				if err := js.DeleteStream(ctx, StreamName); err != nil {
					t.Fatal(err)
				}
				// The server removes the old stream's files after it
				// answers: creating it again may fail until it has.
				testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
					_, err := js.CreateStream(ctx, cfg)
					return err
				})
				spillOthers(t, js, 2000) // other events at the spill's seqs
			})
		}},
		{"segment-truncated", "shorter than the manifest gives", func(t *testing.T, dir string) {
			segs, _ := filepath.Glob(filepath.Join(dir, spillDirName, "*.spill"))
			if len(segs) == 0 {
				t.Fatal("no segment")
			}
			if err := os.Truncate(segs[0], 100); err != nil {
				t.Fatal(err)
			}
		}},
		{"log-restored-from-an-older-backup", "past the stream's last seq", func(t *testing.T, dir string) {
			// The data directory but the spill put back as it was at seq
			// 1000: the spill's newest seqs are not in the log.
			spillRestoreBackup(t, dir)
		}},
		{"log-restored-then-other-appends", "differs from the log's", func(t *testing.T, dir string) {
			// The same, and other events appended since: the spill's seqs
			// exist again, with other events at them.
			spillRestoreBackup(t, dir)
			streamWhileDown(t, dir, func(js jetstream.JetStream, _ jetstream.Stream) { spillOthers(t, js, 1500) })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			gen := demo.New(5)
			l := spillFill(t, dir, 1, 1000, gen)
			l.Close()
			spillBackup(t, dir)
			l = spillFill(t, dir, 1001, 1000, gen)
			l.Close()
			c.change(t, dir)
			var logged testkit.SyncBuffer
			l, err := Open(ctx, Config{DataDir: dir, ReplayCacheBytes: 30 * ringCost(700), ReplayCacheEvents: 30, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if !strings.Contains(logged.String(), c.why) {
				t.Errorf("refused for another reason than %q:\n%s", c.why, logged.String())
			}
			if st := l.ReplaySpillStats(); st.Recovered != 0 || st.Segments != 0 {
				t.Fatalf("kept %+v", st)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, spillDirName)); len(entries) != 0 {
				t.Fatalf("%d files of the refused spill are left", len(entries))
			}
			info, err := l.stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs > 0 {
				spillCheckRange(t, l, info.State.FirstSeq, info.State.LastSeq)
			}
		})
	}
}

// TestSpillRestartAfterRetention: segments retention emptied while the
// node was down are removed; the rest is kept and serves what the log
// still holds, never what it removed.
func TestSpillRestartAfterRetention(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := spillFill(t, dir, 1, 2000, demo.New(11))
	l.Close()
	streamWhileDown(t, dir, func(_ jetstream.JetStream, s jetstream.Stream) {
		if err := s.Purge(ctx, jetstream.WithPurgeSequence(1200)); err != nil {
			t.Fatal(err)
		}
	})
	l = spillLog(t, dir)
	defer l.Close()
	if st := l.ReplaySpillStats(); st.Recovered == 0 {
		t.Fatalf("nothing kept: %+v", st)
	}
	var first uint64
	if err := l.ScanRange(ctx, 1, 2000, func(e *event.Event) bool { first = e.Seq; return false }); err != nil {
		t.Fatal(err)
	}
	if first != 1200 {
		t.Fatalf("a replay from seq 1 after retention starts at %d, want 1200", first)
	}
	if n := spillCheckRange(t, l, 1200, 2000); n != 801 {
		t.Fatalf("%d of 801 events came from the spill", n)
	}
}

// spillBackup copies the data directory dir, but its replay spill, to
// dir+".backup".
func spillBackup(t *testing.T, dir string) {
	t.Helper()
	if err := os.CopyFS(dir+".backup", os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir+".backup", spillDirName)); err != nil {
		t.Fatal(err)
	}
}

// spillRestoreBackup puts spillBackup's copy back in place of everything
// in dir but the replay spill.
func spillRestoreBackup(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != spillDirName {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.CopyFS(dir, os.DirFS(dir+".backup")); err != nil {
		t.Fatal(err)
	}
}

// streamWhileDown reads or changes the data directory's stream with NATS
// alone while no Log is open (an operator's tools while the node is down;
// a layout-1 stream, which Open refuses).
func streamWhileDown(t *testing.T, dir string, change func(js jetstream.JetStream, s jetstream.Stream)) {
	t.Helper()
	ctx := context.Background()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: filepath.Join(dir, "jetstream"), DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start() // shut down below
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	change(js, s)
}

// spillOthers stores n events no Log has seen, as Append would store them.
func spillOthers(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	gen := demo.New(98)
	for range n {
		e := normalized(t, gen.Next())[0]
		body, _, err := canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), Subject(e), body); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpillOffDeletesWhatWasLeft: a log opened with the spill off deletes
// what an earlier run's clean stop left: whoever turned it off may have
// done so to keep no copy of the events past the log's retention.
func TestSpillOffDeletesWhatWasLeft(t *testing.T) {
	dir := t.TempDir()
	l := spillFill(t, dir, 1, 500, demo.New(13))
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, spillDirName, spillManifestName)); err != nil {
		t.Fatalf("a clean stop left no spill: %v", err)
	}
	l, err := Open(context.Background(), Config{DataDir: dir, ReplaySpillBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, spillDirName)); !os.IsNotExist(err) {
		t.Fatalf("the spill's files outlived a start with the spill off: %v", err)
	}
}

// TestSpillSurvivesACrash: a process that dies without closing (kill -9)
// leaves the spill as its last checkpoint described it, and the next
// Open keeps that after the same checks as after a clean stop; records
// written after the checkpoint are not kept, and a segment evicted after
// it is skipped. The crash is a copy of the data directory taken while
// the log runs (what kill -9 leaves on disk: every write made, no Close).
func TestSpillSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// 4 MiB: segments of 1 MiB, so 2,500 events fill more than one.
	cfg := Config{DataDir: dir, ReplayCacheBytes: 30 * ringCost(700), ReplayCacheEvents: 30, ReplaySpillBytes: 4 << 20, ReplaySpillCheckpoint: 20 * time.Millisecond}
	l, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := ringTail(t, l, 1, nil)
	ringAppendDemo(t, l, demo.New(21), 2500, map[uint64]string{}, nil)
	manifest := filepath.Join(dir, spillDirName, spillManifestName)
	ringWaitFor(t, "a checkpoint of all 2,500 events", func() bool {
		b, err := os.ReadFile(manifest)
		var m spillManifest
		return err == nil && json.Unmarshal(b, &m) == nil && len(m.Segments) > 1 && m.Segments[len(m.Segments)-1].Last == 2500
	})
	crashed := func(name string) string {
		t.Helper()
		// A checkpoint may rename its temporary file while the copy
		// lists and opens files: copy again into a fresh directory.
		var c string
		testkit.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
			c = filepath.Join(t.TempDir(), name)
			return os.CopyFS(c, os.DirFS(dir))
		})
		return c
	}
	whole, evicted := crashed("whole"), crashed("evicted")
	segs, _ := filepath.Glob(filepath.Join(evicted, spillDirName, "*.spill"))
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	if err := os.Remove(segs[0]); err != nil { // the oldest, evicted after the checkpoint
		t.Fatal(err)
	}
	stop()
	l.Close()

	for _, c := range []struct {
		dir      string
		min, max uint64
	}{{whole, 2500, 2500}, {evicted, 1, 2499}} {
		cfg.DataDir = c.dir
		l, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		st := l.ReplaySpillStats()
		if st.Recovered < c.min || st.Recovered > c.max || st.Last != 2500 {
			l.Close()
			t.Fatalf("%s: kept %+v, want %d..%d events up to seq 2,500", filepath.Base(c.dir), st, c.min, c.max)
		}
		if n := spillCheckRange(t, l, 1, 2500); n != st.Recovered {
			l.Close()
			t.Fatalf("%s: %d events came from the spill, it kept %d", filepath.Base(c.dir), n, st.Recovered)
		}
		l.Close()
	}
}
