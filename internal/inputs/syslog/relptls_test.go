package syslog

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-sec/vigil/internal/tlsconfig"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// relpTLSServer starts a RELP listener (and a syslog TLS one on the side)
// serving the certificate of files through tlsconfig, as the app does.
// clientCA, when set, is the CA file clients' certificates must chain to.
func relpTLSServer(t *testing.T, g *gatedLog, files *tlstest.Files, clientCA ...string) (*Server, *tlsconfig.Server) {
	t.Helper()
	opts := tlsconfig.Options{CertFile: files.CertFile, KeyFile: files.KeyFile}
	if len(clientCA) > 0 {
		opts.ClientCAFile = clientCA[0]
	}
	ts, err := tlsconfig.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Options{Listen: "127.0.0.1:0", RELPListen: "127.0.0.1:0", TLS: ts.Config(), Ingest: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, ts
}

func relpDialTLS(t *testing.T, s *Server, cfg *tls.Config) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", s.RELPAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// TestRELPOverTLS: with a TLS configuration the RELP listener speaks TLS
// from the first byte (omrelp's tls="on"); a session over it is answered
// 200 OK only after the append, as in clear.
func TestRELPOverTLS(t *testing.T) {
	files := tlstest.New(t, t.TempDir())
	g := &gatedLog{gate: make(chan struct{})}
	s, _ := relpTLSServer(t, g, files)
	if s.UDPAddr() != nil {
		t.Fatal("a UDP socket is open next to TLS")
	}
	c, r := relpDialTLS(t, s, files.ClientConfig)
	fmt.Fprintf(c, "1 open 14 relp_version=0\n")
	if f := relpRead(t, r); f.txnr != 1 || f.cmd != "rsp" || !strings.HasPrefix(string(f.data), "200 OK\n") {
		t.Fatalf("open answered %d %s %q", f.txnr, f.cmd, f.data)
	}
	m := "<13>Nov 30 10:00:00 h app: over tls"
	fmt.Fprintf(c, "2 syslog %d %s\n", len(m), m)
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := r.Peek(1); err == nil {
		t.Fatal("an answer arrived before the log acknowledged the append")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	g.gate <- struct{}{}
	if f := relpRead(t, r); f.txnr != 2 || f.cmd != "rsp" || string(f.data) != "200 OK" {
		t.Fatalf("syslog answered %d %s %q", f.txnr, f.cmd, f.data)
	}
	fmt.Fprintf(c, "3 close 0\n")
	if f := relpRead(t, r); f.txnr != 3 || f.cmd != "rsp" || len(f.data) != 0 {
		t.Fatalf("close answered %d %s %q", f.txnr, f.cmd, f.data)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stored) != 1 || g.stored[0].Message != "over tls" {
		t.Fatalf("stored %d events", len(g.stored))
	}
}

// TestRELPOverTLSRefusesCleartext: a cleartext RELP client gets no answer
// from the TLS listener (its "open" is not a TLS ClientHello), nothing is
// stored and the failed handshake is counted.
func TestRELPOverTLSRefusesCleartext(t *testing.T) {
	files := tlstest.New(t, t.TempDir())
	g := &gatedLog{gate: make(chan struct{}, 1)}
	g.gate <- struct{}{} // an append, were one to happen, would not block
	s, _ := relpTLSServer(t, g, files)
	c, r := relpDial(t, s)
	m := "<13>Nov 30 10:00:00 h app: in clear"
	fmt.Fprintf(c, "1 open 14 relp_version=0\n2 syslog %d %s\n3 close 0\n", len(m), m)
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("cleartext client: %v, want the connection closed", err)
	}
	if strings.Contains(string(b), "rsp") || strings.Contains(string(b), "200") {
		t.Fatalf("cleartext client answered %q", b)
	}
	waitCounter(t, s.m.Errors.WithLabelValues(RELPInput, "tls_handshake"), 1)
	if n := counter(t, s.m.Received.WithLabelValues(RELPInput)); n != 0 {
		t.Fatalf("%v messages received in clear", n)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stored) != 0 {
		t.Fatalf("%d events stored from a cleartext client", len(g.stored))
	}
}

// TestRELPOverTLSReload: the RELP listener serves the certificate the
// syslog TLS configuration holds now: after a reload, new connections get
// the new one (connections already open keep theirs).
func TestRELPOverTLSReload(t *testing.T) {
	files := tlstest.New(t, t.TempDir())
	g := &gatedLog{gate: make(chan struct{})}
	s, ts := relpTLSServer(t, g, files)
	serial := func(addr string) string {
		c, err := tls.Dial("tcp", addr, files.ClientConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got, want := serial(s.RELPAddr().String()), files.Server.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("RELP serves serial %s, want %s", got, want)
	}
	next := files.CA.Server(t)
	next.Write(t, files.CertFile, files.KeyFile)
	if err := ts.Reload(); err != nil {
		t.Fatal(err)
	}
	want := next.Leaf.SerialNumber.String()
	for name, addr := range map[string]string{"relp": s.RELPAddr().String(), "syslog": s.Addr().String()} {
		if got := serial(addr); got != want {
			t.Fatalf("%s serves serial %s after the reload, want %s", name, got, want)
		}
	}
}

// TestRELPOverTLSClientCertificates: with a client CA, a RELP client
// without a certificate signed by it is refused at the handshake (nothing
// stored); one with such a certificate is served.
func TestRELPOverTLSClientCertificates(t *testing.T) {
	dir := t.TempDir()
	files := tlstest.New(t, dir)
	clients := tlstest.NewCA(t, dir, "senders-ca")
	g := &gatedLog{gate: make(chan struct{}, 1)}
	s, _ := relpTLSServer(t, g, files, clients.File)
	m := "<13>Nov 30 10:00:00 h app: client certificate"
	session := fmt.Sprintf("1 open 14 relp_version=0\n2 syslog %d %s\n3 close 0\n", len(m), m)

	for name, certs := range map[string][]tls.Certificate{
		"no certificate":              nil,
		"a certificate of another CA": {files.CA.Client(t, "stranger").TLS},
		"syslog port, no certificate": nil, // the RFC 5425 listener has the same configuration
	} {
		cfg := files.ClientConfig.Clone()
		cfg.Certificates = certs
		addr := s.RELPAddr().String()
		if strings.HasPrefix(name, "syslog") {
			addr = s.Addr().String()
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil { // TLS 1.3: the client learns of the refusal on its first read
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(c, session)
			var b []byte
			b, err = io.ReadAll(c)
			c.Close()
			if len(b) > 0 {
				t.Fatalf("%s: answered %q", name, b)
			}
		}
		if err == nil {
			t.Fatalf("%s: served", name)
		}
	}
	waitCounter(t, s.m.Errors.WithLabelValues(RELPInput, "tls_handshake"), 2)

	cfg := files.ClientConfig.Clone()
	cfg.Certificates = []tls.Certificate{clients.Client(t, "rsyslog").TLS}
	c, r := relpDialTLS(t, s, cfg)
	g.gate <- struct{}{}
	fmt.Fprint(c, session)
	for _, want := range []string{"200 OK", "200 OK", ""} {
		if f := relpRead(t, r); !strings.HasPrefix(string(f.data), want) {
			t.Fatalf("answered %d %s %q, want %q", f.txnr, f.cmd, f.data, want)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stored) != 1 || g.stored[0].Message != "client certificate" {
		t.Fatalf("stored %d events", len(g.stored))
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// waitCounter waits up to 5 s for c to reach want (the server counts a
// failed handshake after the client has seen it fail).
func waitCounter(t *testing.T, c prometheus.Counter, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for counter(t, c) != want {
		if time.Now().After(deadline) {
			t.Fatalf("counter at %v, want %v", counter(t, c), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSyslogTLSHandshakeFailureCounted: a cleartext client on the RFC 5425
// listener is counted as a failed TLS handshake, not as bad framing.
func TestSyslogTLSHandshakeFailureCounted(t *testing.T) {
	files := tlstest.New(t, t.TempDir())
	g := &gatedLog{gate: make(chan struct{}, 1)}
	g.gate <- struct{}{}
	s, _ := relpTLSServer(t, g, files)
	c, err := net.DialTimeout("tcp", s.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "<13>Nov 30 10:00:00 h app: in clear\n")
	_, _ = io.ReadAll(c)
	waitCounter(t, s.m.Errors.WithLabelValues(Input, "tls_handshake"), 1)
	if n := counter(t, s.m.Errors.WithLabelValues(Input, "framing")); n != 0 {
		t.Fatalf("counted as bad framing %v times", n)
	}
}
