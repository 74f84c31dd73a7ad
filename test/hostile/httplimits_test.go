package hostile

// What an unknown or hostile HTTP client can make a node hold, found by
// an audit of resource limits: an idle keep-alive connection was never
// closed (10,000 of them took the node to its descriptor limit), a body
// sent but for its last byte was held for ever (2,000 anonymous GraphQL
// POSTs held 2.4 GB: the body was read before the token was checked),
// and nothing bounded the bodies read at once. Over a real node, with
// raw TCP clients.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// rawRequest opens a connection to n and writes head (a request line and
// headers, without the blank line) followed by body.
func rawRequest(t *testing.T, n *testnode.Node, head, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+"\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return c
}

// answerWithin reads c's response (status line) within d; "" when the
// server closed the connection without one.
func answerWithin(t *testing.T, c net.Conn, d time.Duration) (status string, after time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("no answer and no close within %v", d)
		}
		return "", time.Since(start)
	}
	resp.Body.Close()
	return resp.Status, time.Since(start)
}

func TestHTTPIdleKeepAliveClosed(t *testing.T) {
	n := testnode.Start(t, func(c *config.Config) { c.HTTPIdleTimeout = time.Second })
	c := rawRequest(t, n, "GET /healthz HTTP/1.1\r\nHost: vigil\r\n", "")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the idle keep-alive connection was not closed: %v after %v", err, time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("closed after %v, idle timeout 1s", took)
	}
}

func TestHTTPSlowBodyIsCut(t *testing.T) {
	n := testnode.Start(t, func(c *config.Config) { c.HTTPBodyTimeout = time.Second })
	// All but the last bytes of a publish, then nothing.
	c := rawRequest(t, n, fmt.Sprintf("POST /api/v1/events HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n", n.AdminToken()), `{"type":"authentication.login"`)
	status, after := answerWithin(t, c, 10*time.Second)
	if after > 5*time.Second {
		t.Fatalf("the stalled body was held %v (answer %q), body timeout 1s", after, status)
	}
	t.Logf("stalled body: %q after %v", status, after.Round(time.Millisecond))
}

func TestHTTPBodyBudget(t *testing.T) {
	n := testnode.Start(t, func(c *config.Config) {
		c.MaxBatchMiB, c.HTTPBodyBudgetMiB = 1, 1
		c.Limits.MaxBatchBytes = 1 << 20
		c.HTTPBodyTimeout = 30 * time.Second
	})
	// One request announcing the whole budget holds it while it trickles.
	hold := rawRequest(t, n, fmt.Sprintf("POST /api/v1/events HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", n.AdminToken(), 1<<20), "[")
	time.Sleep(200 * time.Millisecond) // let the server start reading it (the order matters, not a duration)
	ev := `{"type":"authentication.login","user":"u"}`
	next := rawRequest(t, n, fmt.Sprintf("POST /api/v1/events HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", n.AdminToken(), len(ev)), ev)
	status, after := answerWithin(t, next, 15*time.Second)
	if !strings.HasPrefix(status, "503") {
		t.Fatalf("a publish while the body budget is taken: %q after %v, want 503", status, after)
	}
	hold.Close() // the budget is released when its handler ends
	clusterCheckFor(t, 10*time.Second, func() error {
		again := rawRequest(t, n, fmt.Sprintf("POST /api/v1/events HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", n.AdminToken(), len(ev)), ev)
		if status, _ := answerWithin(t, again, 10*time.Second); !strings.HasPrefix(status, "200") {
			return fmt.Errorf("after the holder left: %q", status)
		}
		return nil
	})
}

func TestGraphQLPostAuthenticatedBeforeItsBody(t *testing.T) {
	n := testnode.Start(t)
	// A body announced and never sent: answered at once, not read.
	c := rawRequest(t, n, "POST /graphql HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n", "")
	status, after := answerWithin(t, c, 10*time.Second)
	if !strings.HasPrefix(status, "401") || after > 2*time.Second {
		t.Fatalf("anonymous GraphQL POST: %q after %v, want 401 at once", status, after)
	}
	c = rawRequest(t, n, "POST /graphql HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer vgt_wrong\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n", "")
	if status, after = answerWithin(t, c, 10*time.Second); !strings.HasPrefix(status, "401") || after > 2*time.Second {
		t.Fatalf("GraphQL POST with a wrong token: %q after %v, want 401 at once", status, after)
	}
}
