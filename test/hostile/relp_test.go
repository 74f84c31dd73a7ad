package hostile

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
)

// relpRsyslog returns rsyslogd's path, skipping the test when rsyslog or
// its RELP output module (Debian's rsyslog-relp) is not installed.
func relpRsyslog(t *testing.T) string {
	t.Helper()
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Skip("rsyslogd not installed (apt-get install rsyslog rsyslog-relp); CI installs it")
	}
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog", "/usr/lib/rsyslog", "/usr/lib64/rsyslog"} {
		if _, err := os.Stat(filepath.Join(dir, "omrelp.so")); err == nil {
			return rsyslogd
		}
	}
	t.Skip("rsyslog's omrelp module not installed (apt-get install rsyslog-relp); CI installs it")
	return ""
}

// relpFreePort returns a loopback TCP port free right now.
func relpFreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// relpStartRsyslog runs rsyslogd following file (imfile) and forwarding
// every line over RELP (omrelp) to 127.0.0.1:port, retrying for ever while
// Vigil is away; it is killed when the test ends.
func relpStartRsyslog(t *testing.T, rsyslogd, dir, file, port string) *strings.Builder {
	t.Helper()
	return relpStartRsyslogWith(t, rsyslogd, dir, file, port, "", "")
}

// relpStartRsyslogWith is relpStartRsyslog with more omrelp parameters
// (name="value" ..., e.g. the TLS ones): module for module(load="omrelp"),
// action for its action.
func relpStartRsyslogWith(t *testing.T, rsyslogd, dir, file, port, module, action string) *strings.Builder {
	t.Helper()
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imfile" PollingInterval="1")
module(load="omrelp" %s)
input(type="imfile" File=%q Tag="relptest:" Facility="user" Severity="info")
action(type="omrelp" target="127.0.0.1" port=%q template="RSYSLOG_SyslogProtocol23Format"
       action.resumeRetryCount="-1" action.resumeInterval="1"
       queue.type="LinkedList" queue.size="100000" %s)
`, dir, module, file, port, action)
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &strings.Builder{}
	cmd := exec.Command(rsyslogd, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the rsyslogd this test started
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return out
}

// relpLines appends lines "relp line NNNNN" numbered [from, to) to file.
func relpLines(t *testing.T, file string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "relp line %05d\n", i)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
}

// relpSeen returns the distinct line numbers stored so far, and how many
// events carried them (more than distinct: a resend after a crash).
func relpSeen(t *testing.T, c *client.Client) (map[int]bool, int) {
	t.Helper()
	seen, total := map[int]bool{}, 0
	q := url.Values{"types": {"system.syslog.unparsed"}, "limit": {"10000"}, "since_seq": {"0"}}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		evs, next, err := c.History(ctx, q)
		cancel()
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		for _, e := range evs {
			var n int
			if _, err := fmt.Sscanf(e.Message, "relp line %d", &n); err == nil {
				seen[n] = true
				total++
			}
		}
		if next == nil || len(evs) == 0 {
			return seen, total
		}
		q.Set("since_seq", strconv.FormatUint(*next, 10))
	}
}

// TestRELPRsyslogKill9: rsyslog forwards a file over RELP (omrelp, the
// real client) to a real `vigil serve`; Vigil is killed with SIGKILL while
// lines are in flight and started again on the same data directory and
// port: every line is in the log afterwards. Vigil answers a RELP message
// only once its event is in the log, so rsyslog resends what was not
// answered; a line may be stored twice (at least once), never lost.
func TestRELPRsyslogKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test: skipped in -short")
	}
	rsyslogd := relpRsyslog(t)
	bin := startupBuildVigil(t)
	dataDir, dir := t.TempDir(), t.TempDir()
	port := relpFreePort(t)
	relp := []string{"--syslog-relp-listen", "127.0.0.1:" + port}
	p := startupServe(t, bin, dataDir, relp...)
	file := filepath.Join(dir, "app.log")
	const total = 4000
	relpLines(t, file, 0, total/2)
	out := relpStartRsyslog(t, rsyslogd, dir, file, port)
	c := p.client(t, dataDir)
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen, _ := relpSeen(t, c)
		if len(seen) >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d lines arrived over RELP in 60s\nrsyslogd: %s\nvigil: %s", len(seen), out, p.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	relpLines(t, file, total/2, total) // written while Vigil dies
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p = startupServe(t, bin, dataDir, relp...)
	c = p.client(t, dataDir)
	deadline = time.Now().Add(90 * time.Second)
	for {
		seen, stored := relpSeen(t, c)
		if len(seen) == total {
			t.Logf("%d lines, %d events stored (%d resent after the kill)", total, stored, stored-total)
			return
		}
		if time.Now().After(deadline) {
			var missing []int
			for i := 0; i < total && len(missing) < 10; i++ {
				if !seen[i] {
					missing = append(missing, i)
				}
			}
			t.Fatalf("%d of %d lines in the log 90s after the restart; first missing %v\nrsyslogd: %s\nvigil: %s", len(seen), total, missing, out, p.stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
