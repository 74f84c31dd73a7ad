package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
)

var addrLine = regexp.MustCompile(`msg="vigil listening" addr=(\S+)`)

// startServe runs `vigil serve` with args (after --listen on a loopback
// port) as a child process and returns its address.
func startServe(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrCh := make(chan string, 1)
	go func() { // drains the child's log until it exits
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addrLine.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
	}()
	select {
	case addr := <-addrCh:
		return cmd, addr
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("vigil serve did not log its address within 60s")
	}
	return nil, ""
}

// TestKill9KeepsAcknowledgedEvents: SIGKILL the server while producers are
// publishing; after a restart on the same data directory every
// acknowledged event is there, seq continues, and the hash chain verifies.
func TestKill9KeepsAcknowledgedEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a child vigil process; skipped with -short")
	}
	dir := t.TempDir()
	bin := vigilBin.Path(t)
	dataDir := filepath.Join(dir, "data")
	cmd, addr := startServe(t, bin, "--data-dir", dataDir)
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New("http://"+addr, strings.TrimSpace(string(token)), client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acked := map[string]uint64{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		wg.Add(1)
		go func(p int) { // a producer: stops at the first failure (the kill)
			defer wg.Done()
			for b := 0; ctx.Err() == nil; b++ {
				evs := make([]*client.Event, 50)
				for i := range evs {
					evs[i] = &client.Event{ID: fmt.Sprintf("p%d-b%d-e%d", p, b, i), Type: "audit.query", Message: "durability"}
				}
				acks, err := c.Publish(ctx, evs)
				if err != nil {
					return
				}
				mu.Lock()
				for _, a := range acks {
					acked[a.ID] = a.Seq
				}
				mu.Unlock()
			}
		}(p)
	}
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no event was acknowledged before the kill")
	}
	var maxSeq uint64
	for _, s := range acked {
		maxSeq = max(maxSeq, s)
	}
	t.Logf("%d events acknowledged before SIGKILL (max seq %d)", len(acked), maxSeq)

	cmd2, addr2 := startServe(t, bin, "--data-dir", dataDir)
	defer func() { _ = cmd2.Process.Signal(syscall.SIGTERM); _ = cmd2.Wait() }()
	c2, err := client.New("http://"+addr2, strings.TrimSpace(string(token)))
	if err != nil {
		t.Fatal(err)
	}
	for id, seq := range acked {
		e, err := c2.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged event %s (seq %d) lost after SIGKILL: %v", id, seq, err)
		}
		if e.Seq != seq {
			t.Fatalf("event %s: seq %d after restart, acknowledged as %d", id, e.Seq, seq)
		}
	}
	acks, err := c2.Publish(context.Background(), []*client.Event{{Type: "system.heartbeat"}})
	if err != nil {
		t.Fatal(err)
	}
	if acks[0].Seq <= maxSeq {
		t.Fatalf("new event got seq %d, not after the old head %d", acks[0].Seq, maxSeq)
	}
	out, err := exec.Command(bin, "verify", "--server", "http://"+addr2, "--token", strings.TrimSpace(string(token))).CombinedOutput()
	if err != nil {
		t.Fatalf("vigil verify after SIGKILL: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "OK") {
		t.Fatalf("verify output: %s", out)
	}
}
