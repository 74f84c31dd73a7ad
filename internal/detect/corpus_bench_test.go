package detect

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/event"
)

// corpusFiles lists the rule files of the SigmaHQ corpus that
// VIGIL_SIGMA_CORPUS points at (rules, rules-emerging-threats,
// rules-threat-hunting), or skips.
func corpusFiles(tb testing.TB) []string {
	dir := os.Getenv("VIGIL_SIGMA_CORPUS")
	if dir == "" {
		tb.Skip("VIGIL_SIGMA_CORPUS is not set (a checkout of github.com/SigmaHQ/sigma); skipping the corpus benchmark")
	}
	var files []string
	for _, sub := range []string{"rules", "rules-emerging-threats", "rules-threat-hunting"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yml") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return files
}

// BenchmarkEvaluateCorpus evaluates Vigil's own event mix (vigil demo
// traffic) against the whole SigmaHQ corpus plus the built-in rules, one
// goroutine, as BenchmarkEvaluate does (docs/performance.md).
func BenchmarkEvaluateCorpus(b *testing.B) {
	rs, err := LoadRules(LoadOptions{Files: corpusFiles(b)})
	if err != nil {
		b.Fatal(err)
	}
	g := demo.New(42)
	evs := make([]*event.Event, 8192)
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range evs {
		e := g.Next()
		if _, err := event.Normalize(e, "default", start, event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
		evs[i] = e
	}
	ev := NewEvaluator(rs, 0, 0)
	fired := 0
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := evs[i%len(evs)].Clone()
		e.Time = start.Add(time.Duration(i) * 10 * time.Millisecond)
		fired += len(ev.Evaluate(e))
	}
	b.StopTimer()
	// The box is shared: CPU time of this process says what one core does.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(rs.Len()), "rules")
	b.ReportMetric(float64(ev.evals)/float64(b.N), "rules-evaluated/event")
	b.Logf("%d rules loaded, %d refused, %d firings", rs.Len(), len(rs.Errors()), fired)
}

// cpuTime is the user+system CPU time of the process, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// The index must not change what matches: over demo traffic, the rules
// the evaluator runs through the index match exactly as a full scan
// (Matches) does — with the built-in and generated rules always, and with
// the whole corpus when VIGIL_SIGMA_CORPUS is set.
func TestIndexAgreesWithFullScan(t *testing.T) {
	dir := t.TempDir()
	benchRules(t, dir, 100)
	opts := LoadOptions{Dir: dir}
	if os.Getenv("VIGIL_SIGMA_CORPUS") != "" {
		opts.Files = corpusFiles(t)
	}
	rs, err := LoadRules(opts)
	if err != nil {
		t.Fatal(err)
	}
	g := demo.New(7)
	ev := NewEvaluator(rs, 0, 0)
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	n := 3000
	if os.Getenv("VIGIL_SIGMA_CORPUS") != "" {
		n = 300 // the full scan of the corpus is slow
	}
	total := 0
	for i := 0; i < n; i++ {
		e := g.Next()
		if _, err := event.Normalize(e, "default", start, event.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		full := ev.Matches(e)
		ctx := sigma.NewEvalCtx()
		ctx.UseIndex(rs.index) // keyword searches through the automaton
		ctx.Reset(e)
		var viaIndex []string
		for _, idx := range rs.index.Candidates(ctx, &ev.scr) {
			if r := rs.rules[idx]; r.matcher.MatchCtx(ctx) {
				viaIndex = append(viaIndex, r.meta.RuleID)
			}
		}
		if !slices.Equal(full, viaIndex) {
			t.Fatalf("event %d (%s): full scan %v, index %v", i, e.Type, full, viaIndex)
		}
		total += len(full)
	}
	t.Logf("%d events, %d matches, identical through the index (%d rules, %d always evaluated)", n, total, rs.Len(), rs.index.Always())
}
