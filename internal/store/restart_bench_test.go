package store_test

import (
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
// kill -9) or with the one a clean Close wrote (from=snapshot), and
// reports two times: s/open, until store.Open
// returns (the node serves reads), and s/index, until the dedup index of
// every id inside the window is rebuilt (appends wait for it); ns/op is
// s/index. cpu-s/index is the CPU time the process (server included)
// spent until then. Run it with a fixed count:
//
//	go test -run '^$' -bench OpenWithFullDedupWindow -benchtime 3x ./internal/store/
func BenchmarkOpenWithFullDedupWindow(b *testing.B) {
	const total = 1_000_000
	// As vigil serve runs (cmd/vigil: GOGC=400 unless set).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	ctx := context.Background()
	// The window covers the whole setup, however slow the machine.
	cfg := store.Config{DataDir: b.TempDir(), DedupWindow: 30 * time.Minute}
	log, err := store.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	batch := make([]*event.Event, 1000)
	for n := 0; n < total; n += len(batch) {
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
	b.Run("from=log", func(b *testing.B) { benchOpen(b, cfg, total, false) })
	b.Run("from=snapshot", func(b *testing.B) { benchOpen(b, cfg, total, true) })
}

func benchOpen(b *testing.B, cfg store.Config, total int, snapshot bool) {
	ctx := context.Background()
	var opened, indexed, cpu time.Duration
	for b.Loop() {
		if !snapshot {
			b.StopTimer()
			if err := os.Remove(filepath.Join(cfg.DataDir, "dedup-index.snapshot")); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
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
		if info.IDs != total || info.Snapshot != snapshot {
			b.Fatalf("dedup index rebuilt: %+v, want %d ids, from the snapshot: %v", info, total, snapshot)
		}
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
