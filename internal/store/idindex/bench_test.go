package idindex

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIndex inserts N random UUID-like keys (producer ids are
// arbitrary; random is the worst case for both stores, time-ordered UUIDv7
// ids insert nearly in order) in batches of 1,000, then looks up random
// stored keys and absent ones, and reports per entry: insert wall and CPU
// time (the whole process, background compactions included), lookup time,
// bytes on disk, and the process's resident memory (VmRSS = RssAnon +
// RssFile + RssShmem, from /proc/self/status) after the inserts and after
// the lookups, as the increase over the process before Open, and the time
// to reopen the index after Close and answer a first Lookup. Keys are
// generated from their number, never held, so the benchmark's own memory
// does not grow with N.
//
//	go test ./internal/store/idindex -run x -bench .
//	IDINDEX_BENCH_N=10000000 go test ./internal/store/idindex -run x -bench . -timeout 60m
//
// Each sub-benchmark runs once, whatever b.N (it takes longer than the
// default -benchtime).
func BenchmarkIndex(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("IDINDEX_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1000 {
			b.Fatalf("IDINDEX_BENCH_N=%q: want a number >= 1000", s)
		}
		n = v
	}
	b.Run(fmt.Sprintf("pebble/N=%d", n), func(b *testing.B) { benchIndex(b, n) })
}

func benchIndex(b *testing.B, n int) {
	const batchSize = 1000
	dir := b.TempDir()
	base := readRSS(b)
	x, err := Open(filepath.Join(dir, "idx"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	b.ResetTimer()

	batch := make([]Entry, 0, batchSize)
	cpu0, t0 := cpuTime(), time.Now()
	for i := 1; i <= n; i++ {
		batch = append(batch, Entry{Key: benchKey(uint64(i)), Seq: uint64(i)})
		if len(batch) == batchSize || i == n {
			if err := x.Put(batch, uint64(i)); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	insertWall, insertCPU := time.Since(t0), cpuTime()-cpu0
	afterInsert := readRSS(b)

	const lookups, misses = 200_000, 50_000
	rng := uint64(12345)
	cpu0, t0 = cpuTime(), time.Now()
	for range lookups {
		rng = rng*6364136223846793005 + 1442695040888963407
		want := 1 + (rng>>11)%uint64(n)
		seq, ok, err := x.Lookup(benchKey(want))
		if err != nil || !ok || seq != want {
			b.Fatalf("lookup %d: %d %v %v", want, seq, ok, err)
		}
	}
	lookupWall, lookupCPU := time.Since(t0), cpuTime()-cpu0
	cpu0, t0 = cpuTime(), time.Now()
	for i := range misses {
		if _, ok, err := x.Lookup(benchKey(uint64(n + 1 + i))); err != nil || ok {
			b.Fatalf("lookup of an absent key: %v %v", ok, err)
		}
	}
	missWall, missCPU := time.Since(t0), cpuTime()-cpu0
	afterLookup := readRSS(b)
	b.StopTimer()
	if err := x.Close(); err != nil {
		b.Fatal(err)
	}
	disk := dirBytes(b, dir)

	// A restart: Open (WAL replay included) and the first Lookup.
	t0 = time.Now()
	x, err = Open(filepath.Join(dir, "idx"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	if seq, ok, err := x.Lookup(benchKey(uint64(n))); err != nil || !ok || seq != uint64(n) {
		b.Fatalf("lookup after reopen: %d %v %v", seq, ok, err)
	}
	reopen := time.Since(t0)
	if w := x.Watermark(); w != uint64(n) {
		b.Fatalf("watermark %d after reopen, want %d", w, n)
	}
	if err := x.Close(); err != nil {
		b.Fatal(err)
	}

	per := func(d time.Duration, k int) float64 { return float64(d.Nanoseconds()) / float64(k) }
	b.ReportMetric(float64(reopen.Milliseconds()), "reopen-ms")
	b.ReportMetric(per(insertWall, n), "insert-ns/entry")
	b.ReportMetric(per(insertCPU, n), "insert-cpu-ns/entry")
	b.ReportMetric(float64(n)/insertWall.Seconds(), "inserts/s")
	b.ReportMetric(per(lookupWall, lookups), "lookup-ns")
	b.ReportMetric(per(lookupCPU, lookups), "lookup-cpu-ns")
	b.ReportMetric(per(missWall, misses), "miss-ns")
	b.ReportMetric(per(missCPU, misses), "miss-cpu-ns")
	b.ReportMetric(float64(disk)/float64(n), "disk-B/entry")
	mb := func(v int64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(mb(afterInsert.anon-base.anon), "anon-MB-insert")
	b.ReportMetric(mb(afterInsert.file-base.file), "file-MB-insert")
	b.ReportMetric(mb(afterLookup.anon-base.anon), "anon-MB-lookup")
	b.ReportMetric(mb(afterLookup.file-base.file), "file-MB-lookup")
	b.ReportMetric(mb(afterLookup.vm-base.vm), "rss-MB-lookup")
	b.ReportMetric(0, "ns/op") // one run, not per op
	b.Logf("N=%d: base rss %.0f MB (anon %.0f, file %.0f); after inserts +%.0f MB (anon %+.0f, file %+.0f), after lookups +%.0f MB (anon %+.0f, file %+.0f); disk %.0f MB; load %s",
		n, mb(base.vm), mb(base.anon), mb(base.file),
		mb(afterInsert.vm-base.vm), mb(afterInsert.anon-base.anon), mb(afterInsert.file-base.file),
		mb(afterLookup.vm-base.vm), mb(afterLookup.anon-base.anon), mb(afterLookup.file-base.file),
		mb(disk), loadAvg())
}

// benchKey is key i: a tenant and a random-looking UUID (a bijection of i,
// so every key is distinct).
func benchKey(i uint64) string {
	h1, h2 := mix64(i), mix64(i^0x5851F42D4C957F2D)
	var buf [64]byte
	k := append(buf[:0], "tenant-"...)
	k = strconv.AppendUint(k, i%4, 10)
	k = append(k, '/')
	k = appendHex(k, h1>>32, 8)
	k = append(k, '-')
	k = appendHex(k, h1>>16&0xffff, 4)
	k = append(k, '-')
	k = appendHex(k, h1&0xffff, 4)
	k = append(k, '-')
	k = appendHex(k, h2>>48, 4)
	k = append(k, '-')
	k = appendHex(k, i, 12) // keeps keys distinct
	return string(k)
}

func appendHex(dst []byte, v uint64, digits int) []byte {
	const hex = "0123456789abcdef"
	for d := digits - 1; d >= 0; d-- {
		dst = append(dst, hex[(v>>(4*d))&0xf])
	}
	return dst
}

// mix64 is splitmix64's finaliser.
func mix64(z uint64) uint64 {
	z += 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

type rss struct{ vm, anon, file int64 }

// readRSS reads the process's resident memory after returning the Go
// heap's free pages to the OS (what the process keeps, not garbage).
func readRSS(b *testing.B) rss {
	runtime.GC()
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var r rss
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			r.vm = kb << 10
		case "RssAnon":
			r.anon = kb << 10
		case "RssFile":
			r.file = kb << 10
		}
	}
	return r
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dirBytes(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
