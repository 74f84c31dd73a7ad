package hostile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
)

// TestStartup (issue 8, item 1) runs the vigil binary as child processes:
// a second `vigil serve` on a data directory in use, `vigil verify
// --offline` on it, and a serve on a busy port must all exit at once,
// non-zero, without touching the directory; a kill -9 must not leave a
// stale lock. The binary is built once for the subtests.
func TestStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vigil binary and runs it as child processes; skipped with -short")
	}
	bin := startupBuildVigil(t)
	t.Run("DataDirLock", func(t *testing.T) { startupDataDirLock(t, bin) })
	t.Run("PortInUse", func(t *testing.T) { startupPortInUse(t, bin) })
}

func startupDataDirLock(t *testing.T, bin string) {
	dataDir := filepath.Join(t.TempDir(), "data")
	first := startupServe(t, bin, dataDir)
	c := first.client(t, dataDir)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := map[string]uint64{}
	publish := func(c *client.Client, batch string) {
		t.Helper()
		evs := make([]*client.Event, 200)
		for i := range evs {
			evs[i] = &client.Event{ID: fmt.Sprintf("%s-%d", batch, i), Type: "audit.query", Message: "startup"}
		}
		acks, err := c.Publish(ctx, evs)
		if err != nil {
			t.Fatalf("publish %s: %v", batch, err)
		}
		for _, a := range acks {
			if a.Duplicate {
				t.Fatalf("publish %s: %s acknowledged as a duplicate", batch, a.ID)
			}
			acked[a.ID] = a.Seq
		}
	}
	publish(c, "before")

	// A second serve on the same directory: refused at once, naming the
	// directory and the holder's PID.
	absDir, err := filepath.Abs(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	wantMsg := []string{absDir, "pid " + strconv.Itoa(first.cmd.Process.Pid)}
	out := startupMustFail(t, 10*time.Second, bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	startupContainsAll(t, "second serve", out, wantMsg...)
	// verify --offline would open the live store under the running node.
	out = startupMustFail(t, 10*time.Second, bin, "verify", "--offline", "--data-dir", dataDir)
	startupContainsAll(t, "verify --offline", out, wantMsg...)

	// The first node did not notice: it still appends after its own head.
	publish(c, "between")

	// kill -9 leaves no stale lock: a new serve starts on the directory
	// and has every acknowledged event under its seq.
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	second := startupServe(t, bin, dataDir)
	c2 := second.client(t, dataDir)
	for id, seq := range acked {
		e, err := c2.Get(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged event %s (seq %d) after kill -9 and restart: %v", id, seq, err)
		}
		if e.Seq != seq {
			t.Fatalf("event %s: seq %d after restart, acknowledged as %d", id, e.Seq, seq)
		}
	}
	publish(c2, "after")
	// And the restarted node holds the lock in turn.
	out = startupMustFail(t, 10*time.Second, bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	startupContainsAll(t, "serve after restart", out, absDir, "pid "+strconv.Itoa(second.cmd.Process.Pid))
	second.stop(t)

	// Stopped: verify --offline may open the directory now, and the chain
	// across the kill checks out.
	cmd := exec.Command(bin, "verify", "--offline", "--data-dir", dataDir)
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("verify --offline on the stopped directory: %v\n%s", err, out)
	}
}

func startupPortInUse(t *testing.T, bin string) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dataDir := filepath.Join(t.TempDir(), "fresh")
	out := startupMustFail(t, 10*time.Second, bin, "serve", "--listen", busy.Addr().String(), "--data-dir", dataDir)
	startupContainsAll(t, "serve on a busy port", out, busy.Addr().String(), "address already in use")
	// Nothing was set up: no admin token, no JetStream store, no lock.
	entries, err := os.ReadDir(dataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("serve on a busy port left %s in the fresh data directory", e.Name())
	}
}

// startupBuildVigil is the vigil binary (built once per run: archVigilBin).
func startupBuildVigil(t *testing.T) string {
	t.Helper()
	return archVigilBin.Path(t)
}

var startupListening = regexp.MustCompile(`msg="vigil listening" addr=(\S+)`)

// startupProc is a `vigil serve` child process.
type startupProc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process is reaped
	mu     sync.Mutex
	log    bytes.Buffer // its stderr so far
}

// startupServe starts `vigil serve` on dataDir (with extra flags, if any)
// and waits for its "vigil listening" line; the process is killed when the
// test ends.
func startupServe(t *testing.T, bin, dataDir string, extra ...string) *startupProc {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, extra...)
	p := &startupProc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() { // drains the child's log, then reaps it
		defer close(p.exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := startupListening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.addr = <-addr:
		return p
	case <-p.exited:
		t.Fatalf("vigil serve exited before listening:\n%s", p.stderr())
	case <-time.After(60 * time.Second):
		t.Fatalf("vigil serve did not log its address within 60s:\n%s", p.stderr())
	}
	return nil
}

func (p *startupProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *startupProc) client(t *testing.T, dataDir string) *client.Client {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New("http://"+p.addr, strings.TrimSpace(string(token)), client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stop ends the process gracefully and waits for it.
func (p *startupProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("vigil serve did not stop within 30s of SIGTERM:\n%s", p.stderr())
	}
}

// startupMustFail runs the vigil binary and asserts that it exits non-zero
// within limit; it returns what the process wrote.
func startupMustFail(t *testing.T, limit time.Duration, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("vigil %s still running after %v (killed); it must refuse at once:\n%s", strings.Join(args, " "), limit, out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("vigil %s: %v, want a non-zero exit:\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("vigil %s exited %d after %v: %s", args[0], exit.ExitCode(), time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out))
	return string(out)
}

func startupContainsAll(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: output does not name %q:\n%s", what, w, out)
		}
	}
}
