package idindex

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// keyOf is the key the tests store for seq: UUID-like, not in seq order.
func keyOf(seq uint64) string {
	h := seq * 0x9E3779B97F4A7C15
	return fmt.Sprintf("tenant-%d/%08x-%04x-7%03x-8%03x-%012x", seq%3, uint32(h>>32), uint16(h>>16), seq&0xfff, (seq>>12)&0xfff, seq)
}

// entries returns the entries for seqs from..to.
func entries(from, to uint64) []Entry {
	es := make([]Entry, 0, to-from+1)
	for s := from; s <= to; s++ {
		es = append(es, Entry{Key: keyOf(s), Seq: s})
	}
	return es
}

func openT(t *testing.T, dir string) *Index {
	t.Helper()
	x, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func wantSeq(t *testing.T, x *Index, key string, want uint64) {
	t.Helper()
	seq, ok, err := x.Lookup(key)
	switch {
	case err != nil:
		t.Fatalf("lookup %q: %v", key, err)
	case want == 0 && ok:
		t.Fatalf("lookup %q: seq %d, want none", key, seq)
	case want != 0 && (!ok || seq != want):
		t.Fatalf("lookup %q: %d %v, want %d", key, seq, ok, want)
	}
}

func TestRoundTrip(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "idx"))
	if w := x.Watermark(); w != 0 {
		t.Fatalf("new index: watermark %d, want 0", w)
	}
	for from := uint64(1); from <= 5000; from += 1000 {
		if err := x.Put(entries(from, from+999), from+999); err != nil {
			t.Fatal(err)
		}
	}
	if w := x.Watermark(); w != 5000 {
		t.Fatalf("watermark %d, want 5000", w)
	}
	for s := uint64(1); s <= 5000; s++ {
		wantSeq(t, x, keyOf(s), s)
	}
	wantSeq(t, x, keyOf(5001), 0)
	wantSeq(t, x, "", 0)
	// A key that is a prefix of a stored one, or extends it, is another key.
	k := keyOf(7)
	wantSeq(t, x, k[:len(k)-1], 0)
	wantSeq(t, x, k+"0", 0)

	// A watermark with no entries (a stretch of the log without ids), and
	// one below the current: the watermark never goes down.
	if err := x.Put(nil, 6000); err != nil {
		t.Fatal(err)
	}
	if err := x.Put(entries(10, 10), 10); err != nil {
		t.Fatal(err)
	}
	if w := x.Watermark(); w != 6000 {
		t.Fatalf("watermark %d, want 6000", w)
	}
}

func TestPutRefusesBadEntries(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "idx"))
	for _, tc := range []struct {
		es      []Entry
		through uint64
		want    string
	}{
		{[]Entry{{Key: "", Seq: 1}}, 1, "empty key"},
		{[]Entry{{Key: "t/a", Seq: 0}}, 1, "seq 0"},
		{[]Entry{{Key: "t/a", Seq: 5}}, 4, "above the watermark"},
		{[]Entry{{Key: strings.Repeat("a", MaxKeyLen+1), Seq: 1}}, 1, "bytes (at most"},
	} {
		if err := x.Put(tc.es, tc.through); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Put(%.40v, %d): %v, want an error with %q", tc.es, tc.through, err, tc.want)
		}
	}
	if w := x.Watermark(); w != 0 {
		t.Fatalf("a refused Put moved the watermark to %d", w)
	}
}

// TestDuplicateKeyKeepsLowest: a retried event stored twice (two seqs for
// one key) is found at its first seq, whatever the order of the Puts, until
// retention removes that seq.
func TestDuplicateKeyKeepsLowest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	x := openT(t, dir)
	const k = "acme/0192f1c4-1111-7000-8000-000000000001"
	if err := x.Put([]Entry{{k, 10}}, 10); err != nil {
		t.Fatal(err)
	}
	if err := x.Put([]Entry{{k, 20}}, 20); err != nil { // the retry, stored again
		t.Fatal(err)
	}
	wantSeq(t, x, k, 10)
	// Re-indexing from an older watermark puts lower seqs after a higher
	// one, and one batch may hold a key twice.
	if err := x.Put([]Entry{{k, 9}, {"acme/b", 8}, {k, 7}}, 20); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, x, k, 7)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x = openT(t, dir)
	wantSeq(t, x, k, 7)
	// Retention removes seq 7: the key goes (its later copies are not
	// indexed), the other key stays.
	if err := x.Prune(8); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, x, k, 0)
	wantSeq(t, x, "acme/b", 8)
	if err := x.Prune(30); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, x, "acme/b", 0)
}

func TestPrune(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	x := openT(t, dir)
	const chunk = 1000
	x.pruneChunk = chunk
	const n = 3*chunk + 500 // several chunks
	for from := uint64(1); from <= n; from += 100 {
		to := min(from+99, n)
		if err := x.Put(entries(from, to), to); err != nil {
			t.Fatal(err)
		}
	}
	const below = 2*chunk + 123
	if err := x.Prune(below); err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= n; s++ {
		want := s
		if s < below {
			want = 0
		}
		wantSeq(t, x, keyOf(s), want)
	}
	// Pruning lower again is a no-op; the by-seq rows are gone too: putting
	// seqs below the pruned mark again and pruning does not find them.
	if err := x.Prune(10); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, x, keyOf(below), below)
	if w := x.Watermark(); w != n {
		t.Fatalf("watermark %d after prune, want %d", w, n)
	}
	rows, err := x.eng.scan([]byte{prefixBySeq}, bySeqBound(below), 10)
	if err != nil || len(rows) != 0 {
		t.Fatalf("by-seq rows below %d after prune: %d (%v)", below, len(rows), err)
	}

	// The pruned mark survives a reopen, and pruning goes on from it.
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x = openT(t, dir)
	x.pruneChunk = chunk
	if x.prunedBelow != below {
		t.Fatalf("pruned mark %d after reopen, want %d", x.prunedBelow, below)
	}
	if err := x.Prune(n + 1); err != nil {
		t.Fatal(err)
	}
	for s := uint64(below); s <= n; s += 7 {
		wantSeq(t, x, keyOf(s), 0)
	}
	if empty, err := x.eng.scan([]byte{prefixByID}, []byte{prefixByID + 1}, 1); err != nil || len(empty) != 0 {
		t.Fatalf("by-id rows after pruning everything: %d (%v)", len(empty), err)
	}
}

func TestReopenAfterClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	x, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Put(entries(1, 1000), 1500); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := x.Lookup(keyOf(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lookup after Close: %v, want ErrClosed", err)
	}
	if err := x.Put(entries(1, 1), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	if err := x.Prune(5); !errors.Is(err, ErrClosed) {
		t.Fatalf("Prune after Close: %v, want ErrClosed", err)
	}
	x = openT(t, dir)
	if w := x.Watermark(); w != 1500 {
		t.Fatalf("watermark %d after reopen, want 1500", w)
	}
	for s := uint64(1); s <= 1000; s++ {
		wantSeq(t, x, keyOf(s), s)
	}
}

// TestCorruptIndexSaysDeleteToRebuild: whatever is wrong with the files,
// Open refuses them with ErrCorrupt and names the directory to delete.
func TestCorruptIndexSaysDeleteToRebuild(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
	}{
		{"garbage", func(t *testing.T, dir string) {
			forEachFile(t, dir, func(p string, size int64) {
				junk := []byte(strings.Repeat("not an index ", int(size/13)+1))[:size]
				if err := os.WriteFile(p, junk, 0o600); err != nil {
					t.Fatal(err)
				}
			})
		}},
		{"truncated", func(t *testing.T, dir string) {
			forEachFile(t, dir, func(p string, size int64) {
				if err := os.Truncate(p, size/3); err != nil {
					t.Fatal(err)
				}
			})
		}},
		{"other format", func(t *testing.T, dir string) {
			x := openT(t, dir)
			if err := x.eng.apply(&batch{meta: []kv{{metaFormat, []byte("idindex 0")}}}); err != nil {
				t.Fatal(err)
			}
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"bad watermark", func(t *testing.T, dir string) {
			x := openT(t, dir)
			if err := x.eng.apply(&batch{meta: []kv{{metaWatermark, []byte{1, 2, 3}}}}); err != nil {
				t.Fatal(err)
			}
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "idx")
			x := openT(t, dir)
			if err := x.Put(entries(1, 3000), 3000); err != nil {
				t.Fatal(err)
			}
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, dir)
			x, err := Open(dir, Options{})
			if err == nil {
				_ = x.Close()
				t.Fatal("Open accepted a spoilt index")
			}
			want := "delete " + dir + " to rebuild from the log"
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Open: %v\nwant ErrCorrupt and %q", err, want)
			}
			// Deleting the directory is indeed the way out.
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			x = openT(t, dir)
			if w := x.Watermark(); w != 0 {
				t.Fatalf("rebuilt index starts at watermark %d", w)
			}
		})
	}
}

// TestDamagedRowSaysDeleteToRebuild: a by-id row that does not decode is
// reported by Lookup as corrupt, with the directory to delete.
func TestDamagedRowSaysDeleteToRebuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	x := openT(t, dir)
	if err := x.eng.apply(&batch{meta: []kv{{appendByID(nil, "t/a"), []byte{1, 2, 3}}}}); err != nil {
		t.Fatal(err)
	}
	_, _, err := x.Lookup("t/a")
	if want := "delete " + dir + " to rebuild from the log"; !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Lookup of a damaged row: %v\nwant ErrCorrupt and %q", err, want)
	}
}

func forEachFile(t *testing.T, dir string, fn func(path string, size int64)) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().IsRegular() && fi.Size() > 0 && !strings.HasPrefix(de.Name(), "LOCK") {
			fn(filepath.Join(dir, de.Name()), fi.Size())
		}
	}
}

func TestOpenRefusesAnIndexInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	_ = openT(t, dir)
	x, err := Open(dir, Options{})
	if err == nil {
		_ = x.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
	if errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "delete") {
		t.Fatalf("an index in use is not corrupt: %v", err)
	}
}

// TestConcurrentLookupDuringPut: readers look keys up while one writer
// puts and prunes; whatever Watermark said before a lookup is found (run
// with -race).
func TestConcurrentLookupDuringPut(t *testing.T) {
	x := openT(t, filepath.Join(t.TempDir(), "idx"))
	// The writer prunes as it goes, never the seqs from keep on.
	const n, keep = 20_000, 5_000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := uint64(r + 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := x.Watermark()
				if w < keep {
					continue
				}
				s = s*6364136223846793005 + 1442695040888963407
				want := keep + s%(w-keep+1) // never pruned
				seq, ok, err := x.Lookup(keyOf(want))
				if err != nil || !ok || seq != want {
					errs <- fmt.Errorf("lookup of seq %d <= watermark %d: %d %v %v", want, w, seq, ok, err)
					return
				}
			}
		}()
	}
	for from := uint64(1); from <= n; from += 1000 {
		if err := x.Put(entries(from, from+999), from+999); err != nil {
			t.Fatal(err)
		}
		if from > n-keep {
			if err := x.Prune(from - (n - keep)); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
