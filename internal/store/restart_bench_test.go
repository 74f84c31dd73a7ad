package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// BenchmarkOpenWithFullDedupWindow measures a restart with the dedup
// window full (issue 8, item 4): 1,000,000 small events are appended once
// (slow: the setup is not timed), then each iteration opens the log on
// that data directory, without the dedup snapshot (from=log, as after a
// kill -9 before any snapshot was written), with the one a clean Close
// wrote (from=snapshot), or with a periodic one written while the log ran
// when 900,000 events were stored (from=periodic: a kill -9 after a
// periodic snapshot, 100,000 events read from the log after it, what 10 s
// of the default interval hold at 10,000 events/s), and reports two times:
// s/open, until store.Open returns (the node serves reads), and s/index,
// until the dedup index of every id inside the window is rebuilt (appends
// wait for it, and /readyz says not ready until then); ns/op is s/index. cpu-s/index is the CPU time the process (server included)
// spent until then. Run it with a fixed count:
//
//	go test -run '^$' -bench OpenWithFullDedupWindow -benchtime 3x ./internal/store/
func BenchmarkOpenWithFullDedupWindow(b *testing.B) {
	const total, prefix = 1_000_000, 900_000
	// As vigil serve runs (cmd/vigil: GOGC=400 unless set).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	ctx := context.Background()
	// The window covers the whole setup, however slow the machine.
	cfg := store.Config{DataDir: b.TempDir(), DedupWindow: 30 * time.Minute, DedupSnapshotInterval: 200 * time.Millisecond}
	log, err := store.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	batch := make([]*event.Event, 1000)
	var periodic []byte // the periodic snapshot at prefix events
	for n := 0; n < total; n += len(batch) {
		if n == prefix {
			periodic = benchWaitSnapshot(b, cfg.DataDir, prefix)
		}
		for i := range batch {
			batch[i] = &event.Event{ID: fmt.Sprintf("e%07d", n+i), Type: "audit.query"}
			if _, err := event.Normalize(batch[i], []string{"acme", "globex"}[i%2], now, event.DefaultLimits()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := log.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	log.Close()

	// from=log: no snapshot, as after a kill -9: the index is read from
	// the log. from=snapshot: after a clean stop (Close wrote one).
	cfg.DedupSnapshotInterval = -1 // the opens below write one at Close only
	b.Run("from=log", func(b *testing.B) { benchOpen(b, cfg, total, "log", nil) })
	b.Run("from=snapshot", func(b *testing.B) { benchOpen(b, cfg, total, "snapshot", nil) })
	b.Run("from=periodic", func(b *testing.B) { benchOpen(b, cfg, total, "periodic", periodic) })
}

// benchWaitSnapshot waits for the periodic snapshot to cover head and
// returns it.
func benchWaitSnapshot(b *testing.B, dir string, head uint64) []byte {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if s, err := os.ReadFile(filepath.Join(dir, "dedup-index.snapshot")); err == nil {
			var c, cov int64
			var h uint64
			_, rest, _ := bytes.Cut(s, []byte("\n"))
			if _, err := fmt.Sscanf(string(rest), "stream_created %d head %d covered_since %d", &c, &h, &cov); err == nil && h == head {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("no periodic snapshot at head %d within a minute", head)
	return nil
}

func benchOpen(b *testing.B, cfg store.Config, total int, from string, periodic []byte) {
	ctx := context.Background()
	path := filepath.Join(cfg.DataDir, "dedup-index.snapshot")
	var opened, indexed, cpu time.Duration
	var tail int
	for b.Loop() {
		b.StopTimer()
		switch from {
		case "log": // killed before any snapshot
			if err := os.Remove(path); err != nil {
				b.Fatal(err)
			}
		case "periodic": // killed after the periodic snapshot
			if err := os.WriteFile(path, periodic, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		cpu0 := restartCPUTime(b)
		start := time.Now()
		l, err := store.Open(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		opened += time.Since(start)
		info, err := l.WaitDedupIndex(ctx)
		if err != nil {
			b.Fatal(err)
		}
		indexed += time.Since(start)
		cpu += restartCPUTime(b) - cpu0
		b.StopTimer()
		if err := l.Ready(ctx); err != nil {
			b.Fatalf("not ready once the dedup index is complete: %v", err)
		}
		if info.IDs != total || info.Snapshot != (from != "log") {
			b.Fatalf("dedup index rebuilt: %+v, want %d ids, from %s", info, total, from)
		}
		tail = info.Tail
		// The index is complete: the first and the last id are duplicates.
		for _, want := range []struct {
			id, tenant string
			seq        uint64
		}{{"e0000000", "acme", 1}, {fmt.Sprintf("e%07d", total-1), "globex", uint64(total)}} {
			e := &event.Event{ID: want.id, Type: "audit.query"}
			if _, err := event.Normalize(e, want.tenant, time.Now(), event.DefaultLimits()); err != nil {
				b.Fatal(err)
			}
			acks, err := l.Append(ctx, []*event.Event{e})
			if err != nil || !acks[0].Duplicate || acks[0].Seq != want.seq {
				b.Fatalf("%s after restart: %+v %v", want.id, acks, err)
			}
		}
		l.Close()
		b.StartTimer()
	}
	b.ReportMetric(opened.Seconds()/float64(b.N), "s/open")
	b.ReportMetric(indexed.Seconds()/float64(b.N), "s/index")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/index")
	b.ReportMetric(float64(tail), "ids-from-log")
}

// restartCPUTime is the CPU time this process has used so far (every
// thread: the embedded NATS server runs in it too), a figure that a busy
// machine does not inflate as it does wall time.
func restartCPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
