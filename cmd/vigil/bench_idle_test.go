package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testkit"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestBenchIdleAcrossClusterNodes is the CI-sized form of issue 12 item 7
// (scripts/idle-100k.sh is the full one): three Vigil nodes on a
// three-server JetStream cluster, `vigil bench --idle` spreads 300
// connections over them from two processes and two source addresses, and
// one event published on the second node must reach every connection.
func TestBenchIdleAcrossClusterNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS servers, three nodes and a bench: skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("binds 127.0.0.2 and 127.0.0.3, which only Linux routes to loopback by default")
	}
	urls := benchIdleStartNATSCluster(t)
	first := testnode.Start(t, func(c *config.Config) { c.NATS, c.NodeID = urls[0], "idle-1" })
	nodes := []*testnode.Node{first}
	for i := 1; i < 3; i++ {
		// The bench uses one token for every node: give each node the
		// first one's admin token (it reads admin.token from its data dir).
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(first.AdminToken()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, testnode.Start(t, func(c *config.Config) {
			c.NATS, c.NodeID, c.DataDir = urls[i], fmt.Sprintf("idle-%d", i+1), dir
		}))
	}
	var servers []string
	for _, n := range nodes {
		servers = append(servers, n.URL())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vigilBin.Path(t), "bench", "--server", first.URL(), "--data-dir", first.Config.DataDir,
		"--servers", strings.Join(servers, ","), "--idle", "300", "--procs", "2", "--source-ips", "127.0.0.2-127.0.0.3",
		"--probe-node", "2", "--probe-wait", "20s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vigil bench: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "reached 300 of 300 connections") {
		t.Errorf("the probe did not reach every connection:\n%s", out)
	}
	for _, s := range servers {
		// Each node's row: its URL and the 100 connections opened to it.
		if !strings.Contains(string(out), fmt.Sprintf("%-28s %8d", s, 100)) {
			t.Errorf("no row with 100 connections for %s:\n%s", s, out)
		}
	}
	t.Logf("%s", out)
}

// TestBenchIdleSourceAddresses: each connection is made from the source
// address --source-ips gives it (round-robin), so one machine can open
// more than the ~28,000 connections one address has ports for.
func TestBenchIdleSourceAddresses(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("binds 127.0.0.2-127.0.0.4, which only Linux routes to loopback by default")
	}
	n := testnode.Start(t)
	ips, err := parseSourceIPs("127.0.0.2-127.0.0.3, 127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	cfg := idleConfig{n: 6, servers: []string{n.URL()}, sourceIPs: ips, procs: 1, runID: "source-test"}
	g, err := dialIdle(t.Context(), cfg, n.AdminToken(), nil, 0, cfg.n, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	for k, c := range g.conns {
		got := c.conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
		if want := ips[k%len(ips)]; got != want {
			t.Errorf("connection %d from %s, want %s", k, got, want)
		}
	}
}

// TestParseSourceIPs: lists and ranges, and a clear error for a bad one.
func TestParseSourceIPs(t *testing.T) {
	got, err := parseSourceIPs("127.0.0.254-127.0.1.1,10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1", "10.0.0.1"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != netip.MustParseAddr(want[i]) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"127.0.0.9-127.0.0.2", "127.0.0.1-::1", "127.0.0.x", "10.0.0.0-10.2.0.0"} {
		if _, err := parseSourceIPs(bad); err == nil || !strings.Contains(err.Error(), "--source-ips") {
			t.Errorf("parseSourceIPs(%q): %v, want an error naming --source-ips", bad, err)
		}
	}
}

// benchIdleStartNATSCluster starts three clustered JetStream servers on
// loopback (as test/hostile's clusterStartNATS does; test helpers of
// another package cannot be imported) and returns their client URLs once
// they have a meta leader.
func benchIdleStartNATSCluster(t *testing.T) []string {
	t.Helper()
	var routes []string
	var lns []net.Listener
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		routes = append(routes, "nats-route://"+ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close() // the route ports must be known before the servers start
	}
	var servers []*server.Server
	var urls []string
	for i := range 3 {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("idle-n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
			NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "idle-test", Host: "127.0.0.1", Port: lns[i].Addr().(*net.TCPAddr).Port},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start() // owned by the test: shut down by its cleanup
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats server %d not ready", i)
		}
		servers = append(servers, s)
		urls = append(urls, s.ClientURL())
	}
	testkit.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader")
	})
	return urls
}

// TestBenchIdleNamesTheRefusingServer: with --servers, a server that
// refuses connections is the one the error names, not --server's.
func TestBenchIdleNamesTheRefusingServer(t *testing.T) {
	n := testnode.Start(t)
	closed := "http://" + cliClosedAddr(t)
	code, _, errOut := cliExitEnv(cliNodeVars(n), "bench", "--idle", "10", "--servers", n.URL()+","+closed)
	if code == 0 || !strings.Contains(errOut, "cannot connect to "+closed) {
		t.Fatalf("exit %d, want an error naming %s:\n%s", code, closed, errOut)
	}
}

// TestBenchIdleInProcess: one process, one server, two source addresses:
// the single-server memory line and every connection reached by the probe.
func TestBenchIdleInProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("binds 127.0.0.2 and 127.0.0.3, which only Linux routes to loopback by default")
	}
	n := testnode.Start(t)
	code, out, errOut := cliExitEnv(cliNodeVars(n), "bench", "--idle", "2000", "--source-ips", "127.0.0.2-127.0.0.3")
	if code != 0 || !strings.Contains(out, "idle connections: 2000 open; server memory") || !strings.Contains(out, "reached 2000 of 2000 connections") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}
