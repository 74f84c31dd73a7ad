package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// TestClientOverTLS: publish over https and subscribe over wss with a CA
// file or a tls.Config; an untrusted server or a refused handshake fails
// at once instead of being retried.
func TestClientOverTLS(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.New(t, dir)
	clients := tlstest.NewCA(t, dir, "clients")
	n := testnode.Start(t, func(c *config.Config) {
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = f.CertFile, f.KeyFile, clients.File
	})
	cfg := &tls.Config{RootCAs: f.CA.Pool(), Certificates: []tls.Certificate{clients.Client(t, "svc").TLS}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// WithCAFile for the server's CA combined with WithTLSConfig for the
	// client certificate.
	c := newClient(t, n, client.WithCAFile(f.CAFile), client.WithTLSConfig(&tls.Config{Certificates: cfg.Certificates}))
	got := make(chan *client.Event, 1)
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	subDone := make(chan error, 1)
	go func() {
		subDone <- c.Subscribe(subCtx, client.SubscribeOptions{Filter: client.Filter{Sources: []string{"tls-client"}}, From: client.Cursor{Seq: 1}},
			func(e *client.Event) error { got <- e; return errors.New("enough") })
	}()
	if _, err := c.Publish(ctx, []*client.Event{{ID: "tls-c-1", Type: "audit.query", Source: "tls-client"}}); err != nil {
		t.Fatalf("publish over https: %v", err)
	}
	select {
	case err := <-subDone:
		if err == nil || err.Error() != "enough" {
			t.Fatalf("subscribe over wss: %v", err)
		}
		if e := <-got; e.ID != "tls-c-1" {
			t.Fatalf("subscribe over wss got %s", e.ID)
		}
	case <-ctx.Done():
		t.Fatal("no event over wss")
	}

	// Untrusted server: no retries (5 with backoff would take seconds).
	start := time.Now()
	untrusted := newClient(t, n, client.WithTLSConfig(&tls.Config{Certificates: cfg.Certificates}))
	var verify *tls.CertificateVerificationError
	if _, err := untrusted.Publish(ctx, []*client.Event{{Type: "audit.query"}}); !errors.As(err, &verify) {
		t.Fatalf("untrusted server: %v", err)
	}
	if err := untrusted.Subscribe(ctx, client.SubscribeOptions{}, func(*client.Event) error { return nil }); !errors.As(err, &verify) {
		t.Fatalf("subscribe to an untrusted server: %v", err)
	}
	// No client certificate: the server refuses the handshake.
	noCert := newClient(t, n, client.WithCAFile(f.CAFile))
	var op *net.OpError
	if _, err := noCert.Publish(ctx, []*client.Event{{Type: "audit.query"}}); !errors.As(err, &op) || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a client certificate: %v", err)
	}
	if err := noCert.Subscribe(ctx, client.SubscribeOptions{}, func(*client.Event) error { return nil }); err == nil || ctx.Err() != nil {
		t.Fatalf("subscribe without a client certificate: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("TLS refusals took %s: they were retried", d)
	}
	if _, err := client.New(n.URL(), "x", client.WithCAFile(dir+"/nope.pem")); err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Fatalf("missing CA file: %v", err)
	}
}
