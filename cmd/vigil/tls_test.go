package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, stderr, err = tlsCLI(tctx, n, caEnv, "tail", "--json", "--from", "1", "--users", "alice")
	if err != nil || !strings.Contains(out, `"user":"alice"`) {
		t.Fatalf("tail over wss: %v\n%s%s", err, out, stderr)
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
