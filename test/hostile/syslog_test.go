package hostile

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// syslogNode starts a node with a syslog listener on a free loopback port
// (free for TCP and UDP) and returns it with that address.
func syslogNode(t *testing.T, configure ...func(*config.Config)) (*testnode.Node, string) {
	t.Helper()
	var addr string
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		pc, err := net.ListenPacket("udp", a)
		ln.Close()
		if err == nil {
			pc.Close()
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("no free TCP+UDP port")
	}
	n := testnode.Start(t, append([]func(*config.Config){func(c *config.Config) { c.Syslog.Listen = addr }}, configure...)...)
	return n, addr
}

// syslogGet GETs path with the admin token and decodes the JSON answer.
func syslogGet(t *testing.T, n *testnode.Node, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

type syslogEvent struct {
	Type, Category, Message, User, SrcIP, Action, Outcome, Source, Tenant string
	Data                                                                  map[string]any
}

func (e *syslogEvent) UnmarshalJSON(b []byte) error {
	var raw struct {
		Type     string         `json:"type"`
		Category string         `json:"category"`
		Message  string         `json:"message"`
		User     string         `json:"user"`
		SrcIP    string         `json:"src_ip"`
		Action   string         `json:"action"`
		Outcome  string         `json:"outcome"`
		Source   string         `json:"source"`
		Tenant   string         `json:"tenant"`
		Data     map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*e = syslogEvent{raw.Type, raw.Category, raw.Message, raw.User, raw.SrcIP, raw.Action, raw.Outcome, raw.Source, raw.Tenant, raw.Data}
	return nil
}

// syslogWaitEvent polls the history until an event satisfies match.
func syslogWaitEvent(t *testing.T, n *testnode.Node, what string, match func(syslogEvent) bool) syslogEvent {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var out struct{ Events []syslogEvent }
		syslogGet(t, n, "/api/v1/events?limit=1000", &out)
		for _, e := range out.Events {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stored event %s within 15s; have %d events: %+v", what, len(out.Events), out.Events)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syslogMetric reads a sample's value from /metrics (0 when absent).
func syslogMetric(t *testing.T, n *testnode.Node, sample string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func syslogWaitMetric(t *testing.T, n *testnode.Node, sample string, min float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for syslogMetric(t, n, sample) < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed below %v (is %v)", sample, min, syslogMetric(t, n, sample))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSyslogBruteForce forwards ten sshd failures for one user from one
// address over TCP (RFC 3164, as rsyslog forwards /var/log/auth.log) and
// expects the built-in brute-force detection.
func TestSyslogBruteForce(t *testing.T) {
	n, addr := syslogNode(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stamp := time.Now().UTC().Format(time.Stamp)
	for i := range 10 {
		fmt.Fprintf(c, "<38>%s web1 sshd[%d]: Failed password for alice from 203.0.113.7 port %d ssh2\n", stamp, 4000+i, 50000+i)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var out struct {
			Detections []struct {
				RuleID string `json:"rule_id"`
				Title  string `json:"title"`
			}
		}
		syslogGet(t, n, "/api/v1/detections", &out)
		got := map[string]bool{}
		for _, d := range out.Detections {
			got[d.RuleID] = true
		}
		if got["SEC-AUTH-002"] && got["SEC-AUTH-003"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no brute-force detections (SEC-AUTH-002 by user, SEC-AUTH-003 by source) within 20s: %+v", out.Detections)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e := syslogWaitEvent(t, n, "ssh failure", func(e syslogEvent) bool { return e.Type == "authentication.ssh.login_failed" })
	if e.User != "alice" || e.SrcIP != "203.0.113.7" || e.Outcome != "failure" || e.Action != "login" || e.Source != "web1/sshd" || e.Tenant != "default" {
		t.Fatalf("event fields: %+v", e)
	}
}

// TestSyslogUnparsed: a line no parser knows is stored as
// system.syslog.unparsed with its raw text; a line that is not syslog at
// all is stored too, and counted.
func TestSyslogUnparsed(t *testing.T) {
	n, addr := syslogNode(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "<14>1 2026-11-30T10:00:00Z host9 myapp 77 ID1 - the cache warmed up in 3s\n")
	fmt.Fprintf(c, "no header at all here\n")
	e := syslogWaitEvent(t, n, "unparsed", func(e syslogEvent) bool { return e.Message == "the cache warmed up in 3s" })
	if e.Type != "system.syslog.unparsed" || e.Category != "system" || e.Data["app_name"] != "myapp" || e.Data["hostname"] != "host9" {
		t.Fatalf("unparsed event: %+v", e)
	}
	e = syslogWaitEvent(t, n, "raw line", func(e syslogEvent) bool { return e.Message == "no header at all here" })
	if e.Type != "system.syslog.unparsed" {
		t.Fatalf("raw line event: %+v", e)
	}
	syslogWaitMetric(t, n, `vigil_input_errors_total{input="syslog",reason="not_syslog"}`, 1)
}

// TestSyslogAllowList: a peer outside the allow-list is refused (TCP
// connection closed, datagram dropped) and counted; nothing is stored.
func TestSyslogAllowList(t *testing.T) {
	n, addr := syslogNode(t, func(c *config.Config) { c.Syslog.Allow = []string{"10.0.0.0/8"} })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "<38>Nov 30 10:00:00 h sshd[1]: Failed password for bob from 198.51.100.1 port 1 ssh2\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("refused connection was not closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("refused connection still open after 10s")
	}
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fmt.Fprintf(u, "<38>Nov 30 10:00:00 h sshd[1]: Failed password for bob from 198.51.100.1 port 1 ssh2")
	syslogWaitMetric(t, n, `vigil_input_errors_total{input="syslog",reason="refused"}`, 2)
	var out struct{ Events []syslogEvent }
	syslogGet(t, n, "/api/v1/events?limit=100", &out)
	for _, e := range out.Events {
		if e.User == "bob" {
			t.Fatalf("a refused peer's message was stored: %+v", e)
		}
	}
}

// TestSyslogOversize: a message longer than the limit closes the TCP
// connection (counted); the connection's earlier messages are kept.
func TestSyslogOversize(t *testing.T) {
	n, addr := syslogNode(t, func(c *config.Config) { c.Syslog.MaxMessageKiB = 4 })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "<13>Nov 30 10:00:00 h app: before the big one\n")
	fmt.Fprintf(c, "<13>Nov 30 10:00:00 h app: %s\n", strings.Repeat("x", 5000))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// EOF or a reset (the server closed with unread bytes) both mean closed.
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("oversize message: connection still open after 10s")
		}
	}
	syslogWaitMetric(t, n, `vigil_input_errors_total{input="syslog",reason="too_large"}`, 1)
	syslogWaitEvent(t, n, "before the big one", func(e syslogEvent) bool { return e.Message == "before the big one" })
}

// TestSyslogLogger sends with util-linux logger: RFC 5424 and RFC 3164,
// over UDP, TCP (newline framing) and TCP with octet counting.
func TestSyslogLogger(t *testing.T) {
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("util-linux logger not installed (apt-get install bsdutils); CI installs it")
	}
	n, addr := syslogNode(t)
	host, port, _ := net.SplitHostPort(addr)
	cases := []struct {
		name string
		args []string
	}{
		{"rfc5424-tcp", []string{"--rfc5424", "-T"}},
		{"rfc5424-tcp-octet", []string{"--rfc5424", "-T", "--octet-count"}},
		{"rfc5424-udp", []string{"--rfc5424", "-d"}},
		{"rfc3164-tcp", []string{"--rfc3164", "-T"}},
		{"rfc3164-udp", []string{"--rfc3164", "-d"}},
	}
	for _, tc := range cases {
		msg := "Accepted publickey for carol-" + tc.name + " from 192.0.2.9 port 22 ssh2"
		args := append([]string{"-n", host, "-P", port, "-t", "sshd", "-p", "auth.info"}, tc.args...)
		out, err := exec.Command(logger, append(args, msg)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: logger: %v: %s", tc.name, err, out)
		}
		e := syslogWaitEvent(t, n, tc.name, func(e syslogEvent) bool { return e.User == "carol-"+tc.name })
		if e.Type != "authentication.ssh.login_succeeded" || e.SrcIP != "192.0.2.9" || e.Outcome != "success" {
			t.Fatalf("%s: %+v", tc.name, e)
		}
	}
}

// TestSyslogTLS: with --syslog-tls-cert/key the TCP port speaks RFC 5425
// (TLS, octet counting), and a plaintext client gets nothing stored.
func TestSyslogTLS(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	n, addr := syslogNode(t, func(c *config.Config) { c.Syslog.TLSCert, c.Syslog.TLSKey = f.CertFile, f.KeyFile })
	c, err := tls.Dial("tcp", addr, f.ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "<86>1 2026-11-30T10:00:00Z web2 sshd 991 - - Accepted password for dave from 192.0.2.44 port 2222 ssh2"
	fmt.Fprintf(c, "%d %s", len(msg), msg)
	e := syslogWaitEvent(t, n, "over TLS", func(e syslogEvent) bool { return e.User == "dave" })
	if e.Type != "authentication.ssh.login_succeeded" || e.SrcIP != "192.0.2.44" || e.Source != "web2/sshd" {
		t.Fatalf("%+v", e)
	}
	// A plaintext sender fails the handshake: its line is not stored.
	p, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fmt.Fprintf(p, "<86>Nov 30 10:00:00 web2 sshd[1]: Accepted password for plain from 192.0.2.45 port 1 ssh2\n")
	_ = p.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, p) // the server answers with a TLS alert and closes
	var out struct{ Events []syslogEvent }
	syslogGet(t, n, "/api/v1/events?limit=100", &out)
	for _, e := range out.Events {
		if e.User == "plain" {
			t.Fatalf("plaintext message stored on the TLS port: %+v", e)
		}
	}
}

// TestSyslogTLSReload: the syslog listener's certificate is replaced when
// its files change (polled every --tls-reload-interval, as the main
// listener's; SIGHUP does the same), without a restart: new connections
// see the new certificate and a connection opened before keeps sending.
func TestSyslogTLSReload(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	n, addr := syslogNode(t, func(c *config.Config) {
		c.Syslog.TLSCert, c.Syslog.TLSKey = f.CertFile, f.KeyFile
		c.TLS.ReloadInterval = 50 * time.Millisecond
	})
	old, err := tls.Dial("tcp", addr, f.ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	next := f.CA.Server(t)
	next.Write(t, f.CertFile, f.KeyFile)
	tlsWaitSerial(t, addr, f.ClientConfig, next.Leaf.SerialNumber.String())
	msg := "<86>1 2026-11-30T10:00:00Z web2 sshd 991 - - Accepted password for erin from 192.0.2.46 port 2222 ssh2"
	fmt.Fprintf(old, "%d %s", len(msg), msg)
	syslogWaitEvent(t, n, "over the connection opened before the reload", func(e syslogEvent) bool { return e.User == "erin" })
}

// TestSyslogMaxConnections: past --syslog-max-connections a new TCP
// connection is closed at once and counted; the open ones keep working.
func TestSyslogMaxConnections(t *testing.T) {
	n, addr := syslogNode(t, func(c *config.Config) { c.Syslog.MaxConnections = 2 })
	var open []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
		fmt.Fprintf(c, "<13>Nov 30 10:00:00 h app: hello from %d\n", i)
		want := fmt.Sprintf("hello from %d", i)
		syslogWaitEvent(t, n, want, func(e syslogEvent) bool { return e.Message == want }) // accepted and served
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection: read data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("third connection still open after 10s")
	}
	syslogWaitMetric(t, n, `vigil_input_errors_total{input="syslog",reason="too_many_connections"}`, 1)
	fmt.Fprintf(open[0], "<13>Nov 30 10:00:00 h app: still here\n")
	syslogWaitEvent(t, n, "still here", func(e syslogEvent) bool { return e.Message == "still here" })
}

// TestSyslogIdleTimeout: a silent TCP connection is closed after
// --syslog-idle-timeout, freeing its slot.
func TestSyslogIdleTimeout(t *testing.T) {
	_, addr := syslogNode(t, func(c *config.Config) { c.Syslog.IdleTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle connection still open after 10s")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}

// TestSyslogCEF: a CEF record inside syslog (UDP) becomes a mapped event.
func TestSyslogCEF(t *testing.T) {
	n, addr := syslogNode(t, func(c *config.Config) { c.Syslog.Tenant = "netops" })
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	fmt.Fprintf(u, `<134>Nov 30 10:00:00 fw1 CEF:0|Acme|Firewall|3.1|4625|Failed logon|7|suser=erin src=203.0.113.70 outcome=failure cs1Label=Rule cs1=deny all\=true msg=bad password`+"\n")
	e := syslogWaitEvent(t, n, "CEF", func(e syslogEvent) bool { return e.User == "erin" })
	if e.Type != "authentication.cef.firewall.4625" || e.User != "erin" || e.SrcIP != "203.0.113.70" || e.Outcome != "failure" ||
		e.Message != "bad password" || e.Data["Rule"] != "deny all=true" || e.Tenant != "netops" {
		t.Fatalf("%+v", e)
	}
}

// TestSyslogRsyslog: a real rsyslog, started with its own configuration,
// follows a file of sshd lines (imfile) and forwards them over TCP with
// omfwd (octet counting, RFC 5424), and the built-in brute-force rule fires.
func TestSyslogRsyslog(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Skip("rsyslogd not installed (apt-get install rsyslog); CI installs it")
	}
	n, addr := syslogNode(t)
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	var lines strings.Builder
	for i := range 10 {
		fmt.Fprintf(&lines, "Failed password for invalid user frank from 198.51.100.23 port %d ssh2\n", 40000+i)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.log"), []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imfile")
input(type="imfile" File=%q Tag="sshd:" Facility="auth" Severity="info")
action(type="omfwd" target=%q port=%q protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
`, dir, filepath.Join(dir, "auth.log"), host, port)
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(rsyslogd, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the rsyslogd this test started
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	e := syslogWaitEvent(t, n, "from rsyslog", func(e syslogEvent) bool { return e.User == "frank" && e.Category == "authentication" })
	if e.Type != "authentication.ssh.login_failed" || e.SrcIP != "198.51.100.23" || e.Outcome != "failure" {
		t.Fatalf("%+v (rsyslogd output: %s)", e, out.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var d struct {
			Detections []struct {
				RuleID string `json:"rule_id"`
			}
		}
		syslogGet(t, n, "/api/v1/detections", &d)
		for _, x := range d.Detections {
			if x.RuleID == "SEC-AUTH-002" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no brute-force detection from rsyslog's lines within 20s: %+v (rsyslogd output: %s)", d.Detections, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSyslogShutdownKeepsWhatWasRead: syslog over TCP is Vigil's once read
// from the socket, so a node stopped right after reading must still append
// every message it read (the listener closes before the log, draining its
// batches).
func TestSyslogShutdownKeepsWhatWasRead(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	n, addr := syslogNode(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	const total = 5000
	var b strings.Builder
	for i := range total {
		fmt.Fprintf(&b, "<14>Nov 30 10:00:00 h app: shutdown line %d\n", i)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	syslogWaitMetric(t, n, `vigil_input_received_total{input="syslog"}`, total)
	n.Stop() // at once: batches may still be queued
	c.Close()
	n.Restart()
	var out struct{ Events []syslogEvent }
	syslogGet(t, n, "/api/v1/events?limit=10000", &out)
	seen := map[string]bool{}
	for _, e := range out.Events {
		if strings.HasPrefix(e.Message, "shutdown line ") {
			seen[e.Message] = true
		}
	}
	if len(seen) != total {
		t.Fatalf("%d of the %d messages read before the shutdown were stored", len(seen), total)
	}
}

// TestSyslogUserMappings: a line of an in-house app, which no built-in
// parser knows, becomes the event its user mapping (--input-mappings, the
// example of docs/inputs.md) says, while a line no mapping claims is still
// stored as system.syslog.unparsed.
func TestSyslogUserMappings(t *testing.T) {
	n, addr := syslogNode(t, func(c *config.Config) {
		c.Inputs.Mappings = filepath.Join("..", "..", "internal", "inputs", "mapping", "testdata", "example.yaml")
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "<38>1 2026-11-30T10:00:00Z shop-1 shopd 12 - - auth failure user=carol ip=198.51.100.23 reason=bad_password\n")
	fmt.Fprintf(c, "<38>1 2026-11-30T10:00:01Z shop-1 shopd 12 - - cart emptied\n")
	e := syslogWaitEvent(t, n, "mapped shopd login", func(e syslogEvent) bool { return e.User == "carol" })
	if e.Type != "authentication.login" || e.SrcIP != "198.51.100.23" || e.Outcome != "failure" || e.Data["reason"] != "bad_password" || e.Data["mapping"] != "shopd-login-failure" {
		t.Fatalf("mapped event: %+v", e)
	}
	e = syslogWaitEvent(t, n, "unmapped shopd line", func(e syslogEvent) bool { return e.Message == "cart emptied" })
	if e.Type != "system.syslog.unparsed" {
		t.Fatalf("a line no mapping claims: %+v", e)
	}
}
