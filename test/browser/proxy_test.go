package browser

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/testnode"
)

// TestConsoleKeepsTheTokenOutOfURLs: the console behind a reverse proxy
// that logs every request line, as an access log does. Signing in,
// streaming live events and reconnecting must not put the token in any
// URL the proxy sees (the live stream's WebSocket carries it as a
// subprotocol, REST calls as a bearer header).
func TestConsoleKeepsTheTokenOutOfURLs(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t)
	token := n.AdminToken()
	target, err := url.Parse(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accessLog []string
	rp := httputil.NewSingleHostReverseProxy(target) // forwards WebSocket upgrades too
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accessLog = append(accessLog, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	addr := strings.TrimPrefix(proxy.URL, "http://")

	b.signIn(addr, token)
	b.do("events view", chromedp.Navigate("http://"+addr+"/#/events"), waitFor(`document.querySelector("#filter-form") !== null`, 5*time.Second))
	c, err := client.New(n.URL(), token)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, &client.Event{Type: "audit.query", Message: "through the proxy"})
	b.do("live event through the proxy", waitFor(`document.querySelector("#events").textContent.includes("through the proxy")`, 10*time.Second))

	mu.Lock()
	defer mu.Unlock()
	sawStream := false
	for _, line := range accessLog {
		if strings.Contains(line, token) || strings.Contains(line, "token=") {
			t.Errorf("the proxy logged the token: %s", line)
		}
		sawStream = sawStream || strings.HasPrefix(line, "GET /api/v1/stream")
	}
	if !sawStream {
		t.Fatalf("the live stream did not pass the proxy: %q", accessLog)
	}
}
