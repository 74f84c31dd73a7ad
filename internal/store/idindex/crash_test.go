package idindex

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/testkit"
)

// crashChildEnv names the directory a re-executed test binary indexes into
// until it is killed.
const crashChildEnv = "IDINDEX_TEST_CRASH_CHILD"

// TestKillMidPutKeepsWatermarkHonest: a child process puts batches of
// entries as fast as it can and is killed with SIGKILL in the middle
// (four times, each resuming from the watermark as the log would); every
// time the index opens, and every seq up to its watermark is found.
func TestKillMidPutKeepsWatermarkHonest(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := filepath.Join(t.TempDir(), "idx")
	var last uint64
	for round := range 4 {
		// Let it put a few batches (more each round), then kill it while it
		// puts more: it never pauses between Puts, and the random delay of
		// up to a few Puts lands the kill anywhere in one.
		reported := testkit.KillChild(t, "TestKillMidPutKeepsWatermarkHonest", crashChildEnv+"="+dir, 3+2*round, 10*time.Millisecond)

		x, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: open after kill -9: %v", round, err)
		}
		w := x.Watermark()
		t.Logf("round %d: the child reported a watermark of %s; reopened at %d", round, reported, w)
		if w < last {
			t.Fatalf("round %d: watermark went back from %d to %d", round, last, w)
		}
		for s := uint64(1); s <= w; s++ {
			seq, ok, err := x.Lookup(keyOf(s))
			if err != nil || !ok || seq != s {
				_ = x.Close()
				t.Fatalf("round %d: watermark %d, but seq %d: %d %v %v", round, w, s, seq, ok, err)
			}
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		last = w
	}
	if last == 0 {
		t.Fatal("nothing was indexed before the kills")
	}
}

// crashBatch is the child's batch: small, so that the parent's check of
// every seq stays short under -race.
const crashBatch = 250

// crashChild indexes from the watermark on, printing each watermark
// reached, until killed.
func crashChild(dir string) {
	x, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for from := x.Watermark() + 1; ; from += crashBatch {
		to := from + crashBatch - 1
		if err := x.Put(entries(from, to), to); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		_, _ = w.WriteString(strconv.FormatUint(to, 10) + "\n")
		_ = w.Flush()
	}
}
