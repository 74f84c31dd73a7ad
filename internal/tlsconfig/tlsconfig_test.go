package tlsconfig_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/tlsconfig"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// serve accepts TLS connections with s's config and completes their
// handshake; it stops with the test.
func serve(t *testing.T, s *tlsconfig.Server) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.Config())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() { // owned by the test: ends when ln closes
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func serialSeen(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func TestReloadSwapsCertificateAndKeepsOldOnError(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	s, err := tlsconfig.New(tlsconfig.Options{CertFile: f.CertFile, KeyFile: f.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	if got, err := serialSeen(t, addr, f.ClientConfig); err != nil || got != f.Server.Leaf.SerialNumber.String() {
		t.Fatalf("first serial %s, %v", got, err)
	}
	next := f.CA.Server(t)
	next.Write(t, f.CertFile, f.KeyFile)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := serialSeen(t, addr, f.ClientConfig); err != nil || got != next.Leaf.SerialNumber.String() {
		t.Fatalf("after reload serial %s (want %s), %v", got, next.Leaf.SerialNumber, err)
	}

	// A key that does not match, then garbage: both refused, the last good
	// certificate stays.
	other := f.CA.Server(t)
	tlstest.WriteFile(t, f.KeyFile, other.KeyPEM)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	tlstest.WriteFile(t, f.CertFile, []byte("not a certificate"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), f.CertFile) {
		t.Fatalf("bad PEM: %v", err)
	}
	if got, err := serialSeen(t, addr, f.ClientConfig); err != nil || got != next.Leaf.SerialNumber.String() {
		t.Fatalf("after failed reloads serial %s (want %s), %v", got, next.Leaf.SerialNumber, err)
	}
}

func TestPollingReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	s, err := tlsconfig.New(tlsconfig.Options{CertFile: f.CertFile, KeyFile: f.KeyFile, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := serve(t, s)
	next := f.CA.Server(t)
	next.Write(t, f.CertFile, f.KeyFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := serialSeen(t, addr, f.ClientConfig)
		if err == nil && got == next.Leaf.SerialNumber.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was not picked up: serial %s, %v", got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRequestsAreAnswered(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	req := make(chan chan error)
	s, err := tlsconfig.New(tlsconfig.Options{CertFile: f.CertFile, KeyFile: f.KeyFile, Requests: req})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	tlstest.WriteFile(t, f.KeyFile, []byte("garbage"))
	reply := make(chan error, 1)
	req <- reply
	if err := <-reply; err == nil {
		t.Fatal("a reload with a garbage key succeeded")
	}
	if s.Leaf().SerialNumber.Cmp(f.Server.Leaf.SerialNumber) != 0 {
		t.Fatal("the certificate changed after a failed reload")
	}
}

func TestClientCARequiresClientCertificate(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	clientCA := tlstest.NewCA(t, dir, "clients")
	s, err := tlsconfig.New(tlsconfig.Options{CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCAFile: clientCA.File})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	// TLS 1.3: the client learns of the refusal on its first read.
	handshake := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil
		}
		if err != nil && err.Error() == "EOF" {
			return nil // the test server closes after the handshake
		}
		return err
	}
	if err := handshake(f.ClientConfig); err == nil {
		t.Fatal("a client without a certificate completed the handshake")
	}
	stranger := tlstest.NewCA(t, dir, "stranger").Client(t, "mallory")
	cfg := f.ClientConfig.Clone()
	cfg.Certificates = []tls.Certificate{stranger.TLS}
	if err := handshake(cfg); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	cfg.Certificates = []tls.Certificate{clientCA.Client(t, "alice").TLS}
	if err := handshake(cfg); err != nil {
		t.Fatalf("a client with a good certificate: %v", err)
	}
}

func TestNewNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	missing := filepath.Join(dir, "missing.pem")
	for name, o := range map[string]tlsconfig.Options{
		"missing cert":    {CertFile: missing, KeyFile: f.KeyFile},
		"missing key":     {CertFile: f.CertFile, KeyFile: missing},
		"missing CA":      {CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCAFile: missing},
		"key without crt": {KeyFile: f.KeyFile},
	} {
		_, err := tlsconfig.New(o)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if name != "key without crt" && !strings.Contains(err.Error(), missing) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconfig.New(tlsconfig.Options{CertFile: f.CertFile, KeyFile: f.KeyFile, ClientCAFile: empty}); err == nil ||
		!strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("CA file without certificates: %v", err)
	}
}

func TestMinimumVersionIsTLS12(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	s, err := tlsconfig.New(tlsconfig.Options{CertFile: f.CertFile, KeyFile: f.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	old := f.ClientConfig.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := serialSeen(t, addr, old); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

func TestCheckListen(t *testing.T) {
	for addr, refused := range map[string]bool{
		"127.0.0.1:8080": false, "127.1.2.3:0": false, "[::1]:8080": false, "localhost:8080": false, "LOCALHOST:1": false,
		":8080": true, "0.0.0.0:8080": true, "[::]:8080": true, "10.0.0.5:8080": true, "vigil.example.com:443": true,
	} {
		err := tlsconfig.CheckListen(addr, false, false)
		if (err != nil) != refused {
			t.Errorf("%s: refused=%v, want %v (%v)", addr, err != nil, refused, err)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), "--tls-cert") || !strings.Contains(err.Error(), "--allow-plaintext")) {
			t.Errorf("%s: the message does not give both ways out: %v", addr, err)
		}
		if tlsconfig.CheckListen(addr, true, false) != nil || tlsconfig.CheckListen(addr, false, true) != nil {
			t.Errorf("%s: refused with TLS or --allow-plaintext", addr)
		}
	}
	if err := tlsconfig.CheckNATSListen("0.0.0.0:4222", false, false); err == nil || !strings.Contains(err.Error(), "--allow-plaintext") {
		t.Errorf("NATS on every interface: %v", err)
	}
	if tlsconfig.CheckNATSListen("127.0.0.1:4222", false, false) != nil || tlsconfig.CheckNATSListen("", false, false) != nil ||
		tlsconfig.CheckNATSListen("0.0.0.0:4222", false, true) != nil || tlsconfig.CheckNATSListen("0.0.0.0:4222", true, false) != nil {
		t.Error("NATS on loopback, off, with TLS, or allowed was refused")
	}
}
