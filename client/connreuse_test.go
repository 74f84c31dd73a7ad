package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestConcurrentPublishersReuseConnections: a Client shared by 20
// publishers keeps a connection per publisher between requests instead
// of closing all but net/http's default 2 after each answer (which cost
// the server an accept and a close per request). The connections are
// counted by a loopback TCP relay in front of a real node.
func TestConcurrentPublishersReuseConnections(t *testing.T) {
	n := testnode.Start(t)
	relay, opened := countingRelay(t, n.Addr())
	c, err := client.New("http://"+relay, n.AdminToken())
	if err != nil {
		t.Fatal(err)
	}
	// Paced publishers all wait between their requests, as vigil bench's
	// do: every connection is idle at once, and a pool of 2 idle ones
	// closes the other 18.
	const publishers, rounds = 20, 10
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		errs := make(chan error, publishers)
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Publish(context.Background(), []*client.Event{{Type: "audit.query", User: "bob"}}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	t.Logf("%d requests opened %d connections", publishers*rounds, opened.Load())
	// At most one connection per publisher (a few more if a request
	// finds every idle one taken for a moment); without reuse it is
	// close to one per request (200).
	if got := opened.Load(); got > 2*publishers {
		t.Fatalf("%d requests from %d publishers opened %d connections, want at most %d", publishers*rounds, publishers, got, 2*publishers)
	}
}

// countingRelay forwards loopback TCP connections to target and counts
// them. It stops with the test.
func countingRelay(t *testing.T, target string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			opened.Add(1)
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
	return ln.Addr().String(), &opened
}
