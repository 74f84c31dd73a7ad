// Package testnode runs a real Vigil node (app.Run: embedded JetStream in a
// temporary directory, HTTP on a loopback port) for tests in other
// packages, and stops it when the test ends. It is imported only by tests.
package testnode

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
)

// Node is a running (or stopped) Vigil node.
type Node struct {
	t       testing.TB
	Config  config.Config
	cancel  context.CancelFunc
	done    chan error
	running bool
	reload  chan chan error // TLS reload requests (Config.TLS.Reload)
}

// Start runs a node on a free loopback port; change cfg before it starts
// with the optional configure function.
func Start(t testing.TB, configure ...func(*config.Config)) *Node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := config.Defaults()
	cfg.Listen, cfg.DataDir = addr, t.TempDir()
	for _, f := range configure {
		f(&cfg)
	}
	n := &Node{t: t, Config: cfg}
	if cfg.TLS.Enabled() && cfg.TLS.Reload == nil {
		n.reload = make(chan chan error)
		n.Config.TLS.Reload = n.reload
	}
	n.Restart()
	t.Cleanup(n.Stop)
	return n
}

// Restart starts the node again on the same address and data directory.
func (n *Node) Restart() {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	ready := make(chan struct{})
	go func() { // owned by the node: ends when Stop cancels ctx
		n.done <- app.Run(ctx, n.Config, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string) { close(ready) })
	}()
	select {
	case <-ready:
		n.running = true
	case err := <-n.done:
		n.t.Fatalf("testnode: %v", err)
	case <-time.After(30 * time.Second):
		n.t.Fatal("testnode: did not start within 30s")
	}
}

// Stop shuts the node down gracefully and waits for it.
func (n *Node) Stop() {
	if !n.running {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		n.t.Errorf("testnode: %v", err)
	}
	n.running = false
}

// Addr is host:port; URL is http://host:port.
func (n *Node) Addr() string { return n.Config.Listen }

// URL is the node's base URL: https://host:port when it serves TLS.
func (n *Node) URL() string {
	if n.Config.TLS.Enabled() {
		return "https://" + n.Config.Listen
	}
	return "http://" + n.Config.Listen
}

// ReloadTLS reloads the node's certificate as SIGHUP does (a test cannot
// signal one node of a process) and returns the reload's result.
func (n *Node) ReloadTLS() error {
	n.t.Helper()
	if n.reload == nil {
		n.t.Fatal("testnode: ReloadTLS on a node without TLS")
	}
	reply := make(chan error, 1)
	select {
	case n.reload <- reply:
	case <-time.After(10 * time.Second):
		n.t.Fatal("testnode: the TLS reloader did not take the request within 10s")
	}
	return <-reply
}

// AdminToken reads the admin token the node wrote on first start.
func (n *Node) AdminToken() string {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Config.DataDir, "admin.token"))
	if err != nil {
		n.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
