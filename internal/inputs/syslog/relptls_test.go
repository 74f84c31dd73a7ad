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
func relpTLSServer(t *testing.T, g *gatedLog, files *tlstest.Files) (*Server, *tlsconfig.Server) {
	t.Helper()
	ts, err := tlsconfig.New(tlsconfig.Options{CertFile: files.CertFile, KeyFile: files.KeyFile})
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
	deadline := time.Now().Add(5 * time.Second)
	for counter(t, s.m.Errors.WithLabelValues(RELPInput, "tls_handshake")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("tls_handshake errors: %v, want 1", counter(t, s.m.Errors.WithLabelValues(RELPInput, "tls_handshake")))
		}
		time.Sleep(10 * time.Millisecond)
	}
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

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
