package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// tlsCLI runs a vigil command in-process with the given environment on top
// of VIGIL_SERVER and VIGIL_DATA_DIR pointing at n.
func tlsCLI(ctx context.Context, n *testnode.Node, extra map[string]string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if v, ok := extra[k]; ok {
			return v
		}
		switch k {
		case "VIGIL_SERVER":
			return n.URL()
		case "VIGIL_DATA_DIR":
			return n.Config.DataDir
		}
		return ""
	}
	err := run(ctx, args, env{getenv: getenv, stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return out.String(), errb.String(), err
}

func TestCLIOverHTTPSWithCAFile(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	n := testnode.Start(t, func(c *config.Config) { c.TLS.Cert, c.TLS.Key = f.CertFile, f.KeyFile })
	if !strings.HasPrefix(n.URL(), "https://") {
		t.Fatalf("node URL %s", n.URL())
	}
	file := filepath.Join(dir, "events.ndjson")
	if err := os.WriteFile(file, []byte(`{"type":"authentication.login","user":"alice","severity":"high"}
{"type":"audit.query","user":"bob"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Without the CA the server's certificate is not trusted.
	if _, _, err := tlsCLI(ctx, n, nil, "publish", file); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("publish without --ca-file: %v, want a certificate error", err)
	}
	out, stderr, err := tlsCLI(ctx, n, nil, "publish", "--ca-file", f.CAFile, file)
	if err != nil || !strings.Contains(out, "total: 2 events") {
		t.Fatalf("publish --ca-file: %v\n%s%s", err, out, stderr)
	}
	// VIGIL_CA_FILE, and tail over wss.
	caEnv := map[string]string{"VIGIL_CA_FILE": f.CAFile}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tail := &tlsStopOn{want: `"user":"alice"`, stop: cancel}
	var tailErr bytes.Buffer
	getenv := func(k string) string {
		return map[string]string{"VIGIL_SERVER": n.URL(), "VIGIL_DATA_DIR": n.Config.DataDir, "VIGIL_CA_FILE": f.CAFile}[k]
	}
	err = run(tctx, []string{"tail", "--json", "--from", "1", "--users", "alice"},
		env{getenv: getenv, stdin: strings.NewReader(""), stdout: tail, stderr: &tailErr})
	if err != nil || !tail.seen {
		t.Fatalf("tail over wss: %v\n%s%s", err, tail.buf.String(), tailErr.String())
	}
	if out, stderr, err = tlsCLI(ctx, n, caEnv, "verify"); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify over https: %v\n%s%s", err, out, stderr)
	}
	if out, stderr, err = tlsCLI(ctx, n, caEnv, "token", "list"); err != nil {
		t.Fatalf("token list over https: %v\n%s%s", err, out, stderr)
	}
	if _, _, err := tlsCLI(ctx, n, nil, "publish", "--ca-file", filepath.Join(dir, "missing.pem"), file); err == nil ||
		!strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("a missing --ca-file: %v", err)
	}
}

// tlsStopOn collects a command's output and calls stop once want appears.
type tlsStopOn struct {
	buf  bytes.Buffer
	want string
	stop func()
	seen bool
}

func (w *tlsStopOn) Write(p []byte) (int, error) {
	n, err := w.buf.Write(p)
	if !w.seen && strings.Contains(w.buf.String(), w.want) {
		w.seen = true
		w.stop()
	}
	return n, err
}

func TestCLIClientCertificate(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	clients := tlstest.NewCA(t, dir, "clients")
	n := testnode.Start(t, func(c *config.Config) {
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = f.CertFile, f.KeyFile, clients.File
	})
	cert, key := filepath.Join(dir, "alice.pem"), filepath.Join(dir, "alice-key.pem")
	clients.Client(t, "alice").Write(t, cert, key)
	ctx := context.Background()
	if _, _, err := tlsCLI(ctx, n, map[string]string{"VIGIL_CA_FILE": f.CAFile}, "verify"); err == nil {
		t.Fatal("verify without a client certificate succeeded")
	}
	out, stderr, err := tlsCLI(ctx, n, map[string]string{"VIGIL_CA_FILE": f.CAFile, "VIGIL_CLIENT_CERT": cert, "VIGIL_CLIENT_KEY": key}, "verify")
	if err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify with a client certificate: %v\n%s%s", err, out, stderr)
	}
	if _, _, err := tlsCLI(ctx, n, nil, "verify", "--ca-file", f.CAFile, "--client-cert", cert); err == nil ||
		!strings.Contains(err.Error(), "--client-key") {
		t.Fatalf("--client-cert without --client-key: %v", err)
	}
}

func TestServeRefusesPlaintextOffLoopback(t *testing.T) {
	var out, errb bytes.Buffer
	data := filepath.Join(t.TempDir(), "data")
	err := run(context.Background(), []string{"serve", "--listen", "0.0.0.0:0", "--data-dir", data},
		env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	if err == nil {
		t.Fatal("serve --listen 0.0.0.0:0 without TLS started")
	}
	for _, want := range []string{"0.0.0.0:0", "--tls-cert", "--allow-plaintext"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
}

// TestServeReloadsCertificateOnSIGHUP runs `vigil serve` as a child
// process with file polling off, rotates its certificate, sends SIGHUP,
// and checks that new connections get the new certificate while a
// subscription opened before keeps streaming.
func TestServeReloadsCertificateOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and signals a child vigil process; skipped with -short")
	}
	dir := t.TempDir()
	bin := vigilBin.Path(t)
	f := tlstest.New(t, dir)
	dataDir := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--tls-cert", f.CertFile, "--tls-key", f.KeyFile, "--tls-reload-interval", "0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	addrCh, reloaded := make(chan string, 1), make(chan string, 4)
	go func() { // drains the child's log until it exits
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := addrLine.FindStringSubmatch(line); m != nil {
				addrCh <- m[1]
			}
			if strings.Contains(line, "tls certificate reloaded") || strings.Contains(line, "tls reload failed") {
				reloaded <- line
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(60 * time.Second):
		t.Fatal("vigil serve did not log its address within 60s")
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New("https://"+addr, strings.TrimSpace(string(token)), client.WithCAFile(f.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan string, 16)
	subDone := make(chan error, 1)
	go func() {
		subDone <- c.Subscribe(ctx, client.SubscribeOptions{Filter: client.Filter{Sources: []string{"hup"}}, From: client.Cursor{Seq: 1},
			OnState: func(connected bool, err error) {
				if !connected {
					got <- "disconnected: " + err.Error()
				}
			}},
			func(e *client.Event) error { got <- e.ID; return nil })
	}()
	publish := func(id string) {
		t.Helper()
		if _, err := c.Publish(ctx, []*client.Event{{ID: id, Type: "audit.query", Source: "hup"}}); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		select {
		case g := <-got:
			if g != id {
				t.Fatalf("subscription got %q, want %s", g, id)
			}
		case err := <-subDone:
			t.Fatalf("subscription ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("%s not delivered", id)
		}
	}
	publish("hup-1")

	serial := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, f.ClientConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	next := f.CA.Server(t)
	next.Write(t, f.CertFile, f.KeyFile)
	if s := serial(); s != f.Server.Leaf.SerialNumber.String() {
		t.Fatalf("the certificate changed before SIGHUP (polling is off): %s", s)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-reloaded:
		if !strings.Contains(line, "tls certificate reloaded") || !strings.Contains(line, "trigger=SIGHUP") {
			t.Fatalf("after SIGHUP: %s", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no reload logged within 30s of SIGHUP")
	}
	if s := serial(); s != next.Leaf.SerialNumber.String() {
		t.Fatalf("after SIGHUP new connections see serial %s, want %s", s, next.Leaf.SerialNumber)
	}
	publish("hup-2") // on the subscription opened before the reload: no disconnect in between
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the server died: %v", err)
	}
	cancel()
	if err := <-subDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("subscription: %v", err)
	}
}
