package hostile

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterNATS is a JetStream cluster of embedded nats-server instances on
// loopback, each with its own store directory, joined by routes (the way
// nats-server's own tests build one: explicit server names, one cluster
// name, every route listed on every server).
type clusterNATS struct {
	t       testing.TB
	opts    []*server.Options
	servers []*server.Server
}

// clusterStartNATS starts n clustered JetStream servers and waits until
// they have elected a meta leader.
func clusterStartNATS(t testing.TB, n int) *clusterNATS {
	t.Helper()
	ports := clusterFreePorts(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &clusterNATS{t: t}
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("vigil-test-n%d", i),
			Host:       "127.0.0.1",
			Port:       -1, // a random client port
			JetStream:  true,
			StoreDir:   t.TempDir(),
			// Small enough for a test box shared with others.
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
			NoSigs:             true,
			NoLog:              true,
			Cluster: server.ClusterOpts{
				Name: "vigil-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.opts = append(c.opts, opts)
		c.servers = append(c.servers, nil)
		c.start(i)
	}
	t.Cleanup(c.shutdownAll)
	clusterCheckFor(t, 20*time.Second, func() error {
		for _, s := range c.servers {
			if s.JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no JetStream meta leader")
	})
	return c
}

// start (re)starts server i with its options: the same name, store
// directory and route port, so a restarted server rejoins with its data.
func (c *clusterNATS) start(i int) {
	c.t.Helper()
	opts := c.opts[i].Clone()
	opts.Port = -1
	s, err := server.NewServer(opts)
	if err != nil {
		c.t.Fatalf("cluster: server %d: %v", i, err)
	}
	go s.Start() // owned by c: stopped by shutdownAll or the test
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("cluster: server %d not ready", i)
	}
	c.servers[i] = s
}

// clusterFreePorts reserves n loopback ports for the cluster routes (the
// routes must be known before the servers start).
func clusterFreePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

func (c *clusterNATS) shutdownAll() {
	for i := range c.servers {
		c.stop(i)
	}
}

// stop shuts server i down and waits until it has stopped.
func (c *clusterNATS) stop(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
}

// url is the client URL of server i.
func (c *clusterNATS) url(i int) string { return c.servers[i].ClientURL() }

// streamLeader returns the index of the server leading stream (global
// account), or -1.
func (c *clusterNATS) streamLeader(stream string) int {
	for i, s := range c.servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// clusterCheckFor polls f until it returns nil or the deadline passes
// (nats-server's checkFor).
func clusterCheckFor(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not within %s: %v", within, err)
}
