package hostile

// Issue 8 item 12 (SPEC 14): TLS, secure by default. A node serves HTTPS
// with --tls-cert/--tls-key; ingest, the native WebSocket stream (wss),
// SSE and GraphQL (POST and graphql-transport-ws) work over it; a plain
// HTTP request to the TLS port is refused; the certificate is swapped on
// reload (SIGHUP's path) and on file change while an open WebSocket keeps
// streaming; --tls-client-ca adds a client-certificate requirement to the
// token; plain HTTP off loopback is refused at start unless
// --allow-plaintext; a bad certificate path fails the start; the embedded
// NATS listener serves TLS with the same certificate.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nats-io/nats.go"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// tlsStart runs a node serving HTTPS with f's server certificate.
func tlsStart(t *testing.T, f *tlstest.Files, configure ...func(*config.Config)) *testnode.Node {
	t.Helper()
	return testnode.Start(t, append([]func(*config.Config){func(c *config.Config) {
		c.TLS.Cert, c.TLS.Key = f.CertFile, f.KeyFile
		c.TLS.ReloadInterval = 0 // reloads only when a test asks, unless it sets one
	}}, configure...)...)
}

// tlsHTTP is an HTTP client with cfg and no connection reuse, so every
// request makes a fresh handshake.
func tlsHTTP(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// tlsServerSerial handshakes with addr and returns the serial of the
// certificate the server presented.
func tlsServerSerial(addr string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// tlsWaitSerial polls new handshakes until the server presents want.
func tlsWaitSerial(t *testing.T, addr string, cfg *tls.Config, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := tlsServerSerial(addr, cfg)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still see serial %s (%v), want %s", got, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tlsRequest(t *testing.T, hc *http.Client, method, url, token, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return hc.Do(req)
}

// tlsPublish posts one event over HTTPS and fails the test unless it is
// acknowledged.
func tlsPublish(t *testing.T, hc *http.Client, n *testnode.Node, id, source string) {
	t.Helper()
	resp, err := tlsRequest(t, hc, "POST", n.URL()+"/api/v1/events", n.AdminToken(),
		fmt.Sprintf(`{"id":%q,"type":"audit.query","source":%q}`, id, source))
	if err != nil {
		t.Fatalf("publish over https: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("publish over https: HTTP %d %s", resp.StatusCode, b)
	}
}

// tlsWS is a wss:// client of the native protocol.
type tlsWS struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
}

func tlsDialWS(t *testing.T, url, token string, cfg *tls.Config, protocols ...string) (*tlsWS, error) {
	t.Helper()
	d := ws.Dialer{TLSConfig: cfg, Timeout: 5 * time.Second, Protocols: protocols,
		Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})}
	conn, br, _, err := d.Dial(context.Background(), "wss"+strings.TrimPrefix(url, "https"))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	c := &tlsWS{t: t, conn: conn, r: conn}
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	return c, nil
}

func (c *tlsWS) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Fatalf("wss write: %v", err)
	}
}

// read returns the next text message (answering pings).
func (c *tlsWS) read() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := wsutil.ReadServerText(struct {
		io.Reader
		io.Writer
	}{c.r, c.conn})
	if err != nil {
		c.t.Fatalf("wss read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("wss message %s: %v", b, err)
	}
	return m
}

// readType skips messages until one of type typ.
func (c *tlsWS) readType(typ string) map[string]any {
	c.t.Helper()
	for {
		if m := c.read(); m["type"] == typ {
			return m
		}
	}
}

func (c *tlsWS) serial() string {
	c.t.Helper()
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		c.t.Fatalf("wss connection is a %T, not TLS", c.conn)
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// tlsSubscribe opens a native wss subscription to source's events.
func tlsSubscribe(t *testing.T, n *testnode.Node, cfg *tls.Config, source string) *tlsWS {
	t.Helper()
	c, err := tlsDialWS(t, n.URL()+"/api/v1/stream", n.AdminToken(), cfg)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	c.send(map[string]any{"op": "subscribe", "id": "s", "filter": map[string]any{"sources": []string{source}}, "from": "latest"})
	c.readType("subscribed")
	return c
}

func tlsEventID(t *testing.T, m map[string]any) string {
	t.Helper()
	ev, _ := m["event"].(map[string]any)
	id, _ := ev["id"].(string)
	return id
}

func TestTLSServesIngestStreamsAndGraphQL(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	n := tlsStart(t, f)
	if !strings.HasPrefix(n.URL(), "https://") {
		t.Fatalf("testnode URL %s", n.URL())
	}
	hc := tlsHTTP(f.ClientConfig)
	const source = "tls-all"

	// Native WebSocket over TLS (a *tls.Conn cannot wait in the epoll
	// poller: it must get a reader goroutine and still read every message).
	wsc := tlsSubscribe(t, n, f.ClientConfig, source)
	wsc.send(map[string]any{"op": "ping"})
	wsc.readType("pong")
	// Two messages in one TLS record: after the first, the second waits
	// decrypted inside the *tls.Conn, where epoll on the socket cannot see
	// it; only a reader that keeps reading the TLS connection answers both.
	var two []byte
	for i := 0; i < 2; i++ {
		frame := ws.NewTextFrame([]byte(`{"op":"ping"}`))
		frame = ws.MaskFrameInPlace(frame)
		b, err := ws.CompileFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		two = append(two, b...)
	}
	if _, err := wsc.conn.Write(two); err != nil {
		t.Fatal(err)
	}
	wsc.readType("pong")
	wsc.readType("pong")

	// SSE over TLS.
	resp, err := tlsRequest(t, &http.Client{Transport: hc.Transport}, "GET", n.URL()+"/api/v1/stream/sse?sources="+source, n.AdminToken(), "")
	if err != nil {
		t.Fatalf("sse over https: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("sse over https: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sse := bufio.NewReader(resp.Body)

	// GraphQL subscription over wss (graphql-transport-ws).
	gql, err := tlsDialWS(t, n.URL()+"/graphql", n.AdminToken(), f.ClientConfig, "graphql-transport-ws")
	if err != nil {
		t.Fatalf("graphql wss dial: %v", err)
	}
	gql.send(map[string]any{"type": "connection_init", "payload": map[string]any{}})
	gql.readType("connection_ack")
	gql.send(map[string]any{"id": "g", "type": "subscribe", "payload": map[string]any{
		"query": `subscription { events(filter: {sources: ["` + source + `"]}, fromSeq: 1) { id } }`}})

	// The GraphQL subscription registers asynchronously; replaying from
	// seq 1 makes it see the event whenever it gets there.
	tlsPublish(t, hc, n, "tls-all-1", source)
	if m := wsc.readType("event"); tlsEventID(t, m) != "tls-all-1" {
		t.Fatalf("wss got %v", m)
	}
	for data := ""; !strings.Contains(data, "tls-all-1"); {
		line, err := sse.ReadString('\n')
		if err != nil {
			t.Fatalf("sse read: %v", err)
		}
		data, _ = strings.CutPrefix(line, "data: ")
	}
	for {
		m := gql.read()
		if m["type"] == "next" {
			if !strings.Contains(fmt.Sprint(m["payload"]), "tls-all-1") {
				t.Fatalf("graphql next: %v", m)
			}
			break
		}
		if m["type"] != "ping" {
			t.Fatalf("graphql over wss: %v", m)
		}
	}

	// GraphQL over HTTPS POST.
	resp2, err := tlsRequest(t, hc, "POST", n.URL()+"/graphql", n.AdminToken(), `{"query":"{ event(id: \"tls-all-1\") { id source } }"}`)
	if err != nil {
		t.Fatalf("graphql over https: %v", err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 200 || !strings.Contains(string(b), `"source":"tls-all"`) {
		t.Fatalf("graphql over https: HTTP %d %s", resp2.StatusCode, b)
	}

	// The Go client over https with the CA, and without it.
	c, err := client.New(n.URL(), n.AdminToken(), client.WithCAFile(f.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(context.Background(), []*client.Event{{ID: "tls-client-1", Type: "audit.query", Source: source}}); err != nil {
		t.Fatalf("client over https: %v", err)
	}
	if m := wsc.readType("event"); !strings.HasPrefix(tlsEventID(t, m), "tls-") {
		t.Fatalf("wss got %v", m)
	}
	noCA, err := client.New(n.URL(), n.AdminToken(), client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	var unknown *tls.CertificateVerificationError
	if _, err := noCA.Publish(context.Background(), []*client.Event{{Type: "audit.query"}}); err == nil || !errors.As(err, &unknown) {
		t.Fatalf("client without the CA: %v, want an unknown-authority error", err)
	}

	// Plain HTTP to the TLS port is refused before any handler runs.
	plain, err := tlsRequest(t, &http.Client{Timeout: 10 * time.Second}, "POST", "http://"+n.Addr()+"/api/v1/events", n.AdminToken(),
		`{"id":"tls-plain","type":"audit.query","source":"tls-all"}`)
	if err != nil {
		t.Fatalf("plain HTTP to the TLS port: %v, want net/http's 400 answer", err)
	}
	b, _ = io.ReadAll(plain.Body)
	plain.Body.Close()
	if plain.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
		t.Fatalf("plain HTTP to the TLS port: HTTP %d %s", plain.StatusCode, b)
	}
	if resp, err := tlsRequest(t, hc, "GET", n.URL()+"/api/v1/events/tls-plain", n.AdminToken(), ""); err != nil || resp.StatusCode != 404 {
		t.Fatalf("the plain-HTTP event was stored? %v %v", resp, err)
	}

	// The dashboard's WebSocket: a browser on https://host:port sends that
	// Origin, which is same-origin over TLS too.
	browser := ws.Dialer{TLSConfig: f.ClientConfig, Timeout: 5 * time.Second,
		Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {n.URL()}})}
	bc, _, _, err := browser.Dial(context.Background(), "wss://"+n.Addr()+"/api/v1/stream?token="+n.AdminToken())
	if err != nil {
		t.Fatalf("dashboard-style wss upgrade with Origin %s: %v", n.URL(), err)
	}
	bc.Close()

	// HTTP/2 is not negotiated: WebSocket upgrades need HTTP/1.1.
	h2 := f.ClientConfig.Clone()
	h2.NextProtos = []string{"h2", "http/1.1"}
	if tc, err := tls.Dial("tcp", n.Addr(), h2); err != nil {
		t.Fatalf("handshake offering h2: %v", err)
	} else {
		if p := tc.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Errorf("ALPN negotiated %q", p)
		}
		tc.Close()
	}

	// TLS 1.1 is refused.
	old := f.ClientConfig.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := tlsServerSerial(n.Addr(), old); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

func TestTLSReloadKeepsOpenWebSocket(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	n := tlsStart(t, f)
	hc := tlsHTTP(f.ClientConfig)
	const source = "tls-reload"
	oldSerial := f.Server.Leaf.SerialNumber.String()
	wsc := tlsSubscribe(t, n, f.ClientConfig, source)
	if wsc.serial() != oldSerial {
		t.Fatalf("wss serial %s, want %s", wsc.serial(), oldSerial)
	}

	// Rotate: new files, then the reload SIGHUP triggers.
	next := f.CA.Server(t)
	next.Write(t, f.CertFile, f.KeyFile)
	if err := n.ReloadTLS(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	newSerial := next.Leaf.SerialNumber.String()
	if got, err := tlsServerSerial(n.Addr(), f.ClientConfig); err != nil || got != newSerial {
		t.Fatalf("after reload new connections see serial %s (%v), want %s", got, err, newSerial)
	}
	// The connection opened before the reload is the same one and streams.
	tlsPublish(t, hc, n, "tls-reload-1", source)
	if m := wsc.readType("event"); tlsEventID(t, m) != "tls-reload-1" || wsc.serial() != oldSerial {
		t.Fatalf("old wss after reload: %v serial %s", m, wsc.serial())
	}

	// A reload that fails keeps the certificate in use.
	tlstest.WriteFile(t, f.KeyFile, f.CA.Server(t).KeyPEM) // key of another certificate
	if err := n.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("reload with a mismatched key: %v", err)
	}
	tlstest.WriteFile(t, f.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"))
	if err := n.ReloadTLS(); err == nil {
		t.Fatal("reload with a broken certificate succeeded")
	}
	if got, err := tlsServerSerial(n.Addr(), f.ClientConfig); err != nil || got != newSerial {
		t.Fatalf("after failed reloads new connections see %s (%v), want %s", got, err, newSerial)
	}
	tlsPublish(t, hc, n, "tls-reload-2", source)
	if m := wsc.readType("event"); tlsEventID(t, m) != "tls-reload-2" {
		t.Fatalf("old wss after failed reload: %v", m)
	}
}

func TestTLSReloadOnFileChange(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	n := tlsStart(t, f, func(c *config.Config) { c.TLS.ReloadInterval = 50 * time.Millisecond })
	hc := tlsHTTP(f.ClientConfig)
	const source = "tls-poll"
	wsc := tlsSubscribe(t, n, f.ClientConfig, source)
	next := f.CA.Server(t)
	next.Write(t, f.CertFile, f.KeyFile)
	tlsWaitSerial(t, n.Addr(), f.ClientConfig, next.Leaf.SerialNumber.String())
	tlsPublish(t, hc, n, "tls-poll-1", source)
	if m := wsc.readType("event"); tlsEventID(t, m) != "tls-poll-1" || wsc.serial() != f.Server.Leaf.SerialNumber.String() {
		t.Fatalf("old wss after the file-change reload: %v serial %s", m, wsc.serial())
	}
}

func TestTLSClientCertificateAddsToToken(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	clients := tlstest.NewCA(t, dir, "clients")
	n := tlsStart(t, f, func(c *config.Config) { c.TLS.ClientCA = clients.File })

	// No client certificate: the handshake fails (TLS 1.3 reports it on
	// the first read, so go through a request).
	if resp, err := tlsRequest(t, tlsHTTP(f.ClientConfig), "GET", n.URL()+"/api/v1/events?limit=1", n.AdminToken(), ""); err == nil {
		resp.Body.Close()
		t.Fatalf("without a client certificate: HTTP %d", resp.StatusCode)
	}
	// A certificate from another CA: refused too.
	stranger := f.ClientConfig.Clone()
	stranger.Certificates = []tls.Certificate{tlstest.NewCA(t, dir, "stranger").Client(t, "mallory").TLS}
	if resp, err := tlsRequest(t, tlsHTTP(stranger), "GET", n.URL()+"/api/v1/events?limit=1", n.AdminToken(), ""); err == nil {
		resp.Body.Close()
		t.Fatalf("with a certificate of another CA: HTTP %d", resp.StatusCode)
	}
	// A good certificate without a token: the token is still required.
	good := f.ClientConfig.Clone()
	good.Certificates = []tls.Certificate{clients.Client(t, "alice").TLS}
	hc := tlsHTTP(good)
	resp, err := tlsRequest(t, hc, "GET", n.URL()+"/api/v1/events?limit=1", "", "")
	if err != nil {
		t.Fatalf("with a good certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("certificate without token: HTTP %d, want 401", resp.StatusCode)
	}
	// Certificate and token: ingest and wss work.
	wsc := tlsSubscribe(t, n, good, "tls-mtls")
	tlsPublish(t, hc, n, "tls-mtls-1", "tls-mtls")
	if m := wsc.readType("event"); tlsEventID(t, m) != "tls-mtls-1" {
		t.Fatalf("wss with a client certificate: %v", m)
	}
	if _, err := tlsDialWS(t, n.URL()+"/api/v1/stream", n.AdminToken(), f.ClientConfig); err == nil {
		t.Fatal("wss without a client certificate was upgraded")
	}
}

// tlsRun runs app.Run with cfg; it returns Run's error if the node did not
// start, or the address it listened on (the node is stopped when the test
// ends).
func tlsRun(t *testing.T, cfg config.Config) (string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	listening := make(chan string, 1)
	go func() { // owned by the test: ends when cancel stops the node
		done <- app.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(a string) { listening <- a })
	}()
	select {
	case err := <-done:
		cancel()
		return "", err
	case addr := <-listening:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node stopped with: %v", err)
			}
		})
		return addr, nil
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("app.Run neither failed nor listened within 30s")
		return "", nil
	}
}

func TestTLSPlaintextRefusedOffLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		cfg := config.Defaults()
		cfg.Listen, cfg.DataDir = listen, filepath.Join(t.TempDir(), "data")
		_, err := tlsRun(t, cfg)
		if err == nil {
			t.Fatalf("%s without TLS: started", listen)
		}
		for _, want := range []string{"plain HTTP", listen, "--tls-cert", "--allow-plaintext"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: the refusal does not say %q: %v", listen, want, err)
			}
		}
		if _, statErr := os.Stat(cfg.DataDir); !os.IsNotExist(statErr) {
			t.Errorf("%s: the refused start created the data directory (%v)", listen, statErr)
		}
	}

	// The embedded NATS listener has no TLS: the same refusal.
	cfg := config.Defaults()
	cfg.DataDir, cfg.Listen, cfg.NATSListen = t.TempDir(), "127.0.0.1:0", "0.0.0.0:0"
	if _, err := tlsRun(t, cfg); err == nil || !strings.Contains(err.Error(), "--allow-plaintext") {
		t.Fatalf("--nats-listen 0.0.0.0:0 without --allow-plaintext: %v", err)
	}

	// --allow-plaintext: it starts and answers plain HTTP.
	cfg = config.Defaults()
	cfg.Listen, cfg.DataDir, cfg.AllowPlaintext = "0.0.0.0:0", t.TempDir(), true
	addr, err := tlsRun(t, cfg)
	if err != nil {
		t.Fatalf("with --allow-plaintext: %v", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz with --allow-plaintext: HTTP %d", resp.StatusCode)
	}

	// With TLS, 0.0.0.0 is fine.
	f := tlstest.New(t, t.TempDir())
	cfg = config.Defaults()
	cfg.Listen, cfg.DataDir, cfg.TLS.Cert, cfg.TLS.Key = "0.0.0.0:0", t.TempDir(), f.CertFile, f.KeyFile
	if addr, err = tlsRun(t, cfg); err != nil {
		t.Fatalf("0.0.0.0 with TLS: %v", err)
	}
	_, port, _ = net.SplitHostPort(addr)
	if _, err := tlsServerSerial("127.0.0.1:"+port, f.ClientConfig); err != nil {
		t.Fatalf("0.0.0.0 with TLS: handshake %v", err)
	}
}

func TestTLSBadCertificateFailsStart(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	missing := filepath.Join(dir, "nope.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "other-key.pem")
	tlstest.WriteFile(t, otherKey, f.CA.Server(t).KeyPEM)
	for name, c := range map[string]struct{ cert, key, ca, want string }{
		"missing cert":   {missing, f.KeyFile, "", missing},
		"missing key":    {f.CertFile, missing, "", missing},
		"garbage cert":   {garbage, f.KeyFile, "", garbage},
		"mismatched key": {f.CertFile, otherKey, "", "private key does not match"},
		"missing CA":     {f.CertFile, f.KeyFile, missing, missing},
		"garbage CA":     {f.CertFile, f.KeyFile, garbage, garbage},
	} {
		cfg := config.Defaults()
		cfg.Listen, cfg.DataDir = "127.0.0.1:0", filepath.Join(t.TempDir(), "data")
		cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA = c.cert, c.key, c.ca
		_, err := tlsRun(t, cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
		if _, statErr := os.Stat(cfg.DataDir); !os.IsNotExist(statErr) {
			t.Errorf("%s: the failed start created the data directory (%v)", name, statErr)
		}
	}
}

func TestTLSEmbeddedNATSListener(t *testing.T) {
	f := tlstest.New(t, t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	n := tlsStart(t, f, func(c *config.Config) { c.NATSListen = natsAddr })
	b, err := os.ReadFile(filepath.Join(n.Config.DataDir, "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))

	// Plain NATS is refused by the TLS listener.
	if nc, err := nats.Connect("nats://"+natsAddr, nats.Token(token), nats.Timeout(5*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a plain NATS connection was accepted")
	}
	// TLS with the CA: an ingest request is answered.
	nc, err := nats.Connect("tls://"+natsAddr, nats.Token(token), nats.Secure(f.ClientConfig), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS over TLS: %v", err)
	}
	defer nc.Close()
	msg, err := nc.Request("vigil.ingest.default", []byte(`{"id":"tls-nats-1","type":"audit.query","source":"tls-nats"}`), 10*time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"accepted":1`) {
		t.Fatalf("ingest over NATS TLS: %v %s", err, tlsMsgData(msg))
	}
	// With TLS the listener may face the network (a free port: NATS
	// reads port 0 as its default, 4222). The port is free when picked,
	// not necessarily when the node binds it: other test processes bind
	// ports meanwhile (a CI run waited 30 s on one taken in between), so
	// a port found taken is picked again.
	for try := 1; ; try++ {
		if ln, err = net.Listen("tcp", "0.0.0.0:0"); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ln.Close()
		cfg := config.Defaults()
		cfg.DataDir, cfg.Listen, cfg.NATSListen, cfg.TLS.Cert, cfg.TLS.Key = t.TempDir(), "127.0.0.1:0", "0.0.0.0:"+port, f.CertFile, f.KeyFile
		_, err := tlsRun(t, cfg)
		if err != nil && strings.Contains(err.Error(), "address already in use") && try < 3 {
			continue
		}
		if err != nil {
			t.Fatalf("--nats-listen 0.0.0.0 with TLS: %v", err)
		}
		return
	}
}

func tlsMsgData(m *nats.Msg) string {
	if m == nil {
		return ""
	}
	return string(m.Data)
}
