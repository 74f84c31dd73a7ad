package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
)

// TestSnapshotKill9 (issue 8, item 4): a `vigil serve` writes its dedup
// index periodically (--dedup-snapshot-interval), so that after a kill -9
// the next start takes the newest snapshot and reads only the events
// stored after it from the log. Over real sockets against the binary: an
// id published before the snapshot and one published after it are both
// acknowledged as duplicates with their original seqs by the restarted
// node, which says ready (/readyz 200) only once appends are accepted;
// and a damaged snapshot is ignored (the whole window is read from the
// log) with the same outcome.
func TestSnapshotKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vigil binary and runs it as child processes; skipped with -short")
	}
	bin := startupBuildVigil(t)
	t.Setenv("VIGIL_DEDUP_SNAPSHOT_INTERVAL", "100ms") // inherited by the children
	dataDir := filepath.Join(t.TempDir(), "data")
	snapPath := filepath.Join(dataDir, "dedup-index.snapshot")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	first := startupServe(t, bin, dataDir)
	c := first.client(t, dataDir)
	acked := map[string]uint64{}
	publish := func(c *client.Client, prefix string, n int) {
		t.Helper()
		for b := 0; b < n; b += 1000 {
			evs := make([]*client.Event, 1000)
			for i := range evs {
				evs[i] = &client.Event{ID: fmt.Sprintf("%s-%d", prefix, b+i), Type: "audit.query", Message: "snapshot"}
			}
			acks, err := c.Publish(ctx, evs)
			if err != nil {
				t.Fatalf("publish %s: %v", prefix, err)
			}
			for _, a := range acks {
				acked[a.ID] = a.Seq
			}
		}
	}
	publish(c, "before", 5000)
	// The periodic snapshot covering the first 5,000 events (on main only a
	// clean stop wrote one: this waits in vain).
	var periodic []byte
	if err := checkForSnapshot(30*time.Second, func() error {
		b, err := os.ReadFile(snapPath)
		if err != nil {
			return err
		}
		if h := snapshotFileHead(b); h < 5000 {
			return fmt.Errorf("snapshot at head %d", h)
		}
		periodic = b
		return nil
	}); err != nil {
		t.Fatalf("no periodic dedup snapshot of the running node: %v", err)
	}
	publish(c, "after", 2000)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	// The kill came before the next tick: the snapshot on disk covers the
	// "before" events only, the "after" ones are read from the log.
	if err := os.WriteFile(snapPath, periodic, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, run := range []struct {
		name, fromSnapshot, fromLog string
		spoil                       func()
	}{
		{"after a periodic snapshot", "true", "2000", nil},
		{"with a damaged snapshot", "false", "7000", func() {
			b, err := os.ReadFile(snapPath)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 1
			if err := os.WriteFile(snapPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		if run.spoil != nil {
			run.spoil()
		}
		p := startupServe(t, bin, dataDir)
		pc := p.client(t, dataDir)
		// Ready only once appends are accepted: the first append after a
		// 200 is answered at once.
		if err := checkForSnapshot(60*time.Second, func() error {
			if st := snapshotReadyz(t, p.addr); st != http.StatusOK {
				return fmt.Errorf("/readyz %d", st)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v\n%s", run.name, err, p.stderr())
		}
		probe := []*client.Event{
			{ID: "before-0", Type: "audit.query", Message: "retry"}, {ID: "before-4999", Type: "audit.query", Message: "retry"},
			{ID: "after-0", Type: "audit.query", Message: "retry"}, {ID: "after-1999", Type: "audit.query", Message: "retry"},
		}
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		acks, err := pc.Publish(actx, probe)
		acancel()
		if err != nil {
			t.Fatalf("%s: an append right after /readyz said ready: %v", run.name, err)
		}
		for _, a := range acks {
			if !a.Duplicate || a.Seq != acked[a.ID] {
				t.Fatalf("%s: retried %s acknowledged %+v, want a duplicate of seq %d", run.name, a.ID, a, acked[a.ID])
			}
		}
		log := p.stderr()
		if !strings.Contains(log, "from_snapshot="+run.fromSnapshot+" ids_from_log="+run.fromLog) {
			t.Fatalf("%s: want the index from_snapshot=%s with %s ids read from the log; the node logged:\n%s", run.name, run.fromSnapshot, run.fromLog, log)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.exited
		// Each run starts from the snapshot of the first kill.
		if err := os.WriteFile(snapPath, periodic, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshotFileHead is the head a dedup snapshot covers (0 if unreadable).
func snapshotFileHead(b []byte) uint64 {
	_, rest, _ := bytes.Cut(b, []byte("\n"))
	var c, cov int64
	var h uint64
	if _, err := fmt.Sscanf(string(rest), "stream_created %d head %d covered_since %d", &c, &h, &cov); err != nil {
		return 0
	}
	return h
}

// snapshotReadyz returns the status of GET /readyz (0 if unreachable).
func snapshotReadyz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK && !strings.Contains(body.Error, "dedup index rebuilding") {
		t.Errorf("/readyz %d: %q, want only the dedup rebuild as a reason", resp.StatusCode, body.Error)
	}
	return resp.StatusCode
}

// checkForSnapshot polls fn until it succeeds or limit passes.
func checkForSnapshot(limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
