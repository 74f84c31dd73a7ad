package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestConsolePageIsStrict: the page is served with a CSP that allows
// scripts from the origin only, and the page itself has no inline script
// or style the policy would have to allow, and loads nothing from a CDN.
func TestConsolePageIsStrict(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Fatalf("CSP = %q", csp)
	}
	page := string(body)
	if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`).MatchString(page) || strings.Contains(page, " style=") {
		t.Fatalf("index.html has inline script or style:\n%s", page)
	}
	if strings.Contains(page, "//cdn") || strings.Contains(page, "https://") {
		t.Fatalf("index.html loads from another origin:\n%s", page)
	}
	for _, asset := range []string{"/early.js", "/app.js", "/app.css", "/graphiql.js", "/graphiql.css"} {
		r, err := http.Get(srv.URL + asset)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("%s: %v %v", asset, err, r.Status)
		}
		r.Body.Close()
	}
}

// TestGraphiQLOnlyForBrowsers: GET /graphql serves GraphiQL to a browser
// asking for HTML, with the strict CSP; queries, WebSocket upgrades and
// API clients reach the GraphQL handler.
func TestGraphiQLOnlyForBrowsers(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "api") })
	srv := httptest.NewServer(GraphiQL(api))
	defer srv.Close()
	get := func(query string, hdr map[string]string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/graphql"+query, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b), res.Header.Get("Content-Security-Policy")
	}
	html := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	if body, csp := get("", html); !strings.Contains(body, `<script src="/graphiql.js">`) || !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("browser got %q (CSP %q)", body, csp)
	}
	for name, c := range map[string]struct {
		q   string
		hdr map[string]string
	}{
		"api client": {"", map[string]string{"Accept": "application/json"}},
		"query":      {"?query=%7B__typename%7D", html},
		"upgrade":    {"", map[string]string{"Accept": "text/html", "Upgrade": "websocket"}},
	} {
		if body, _ := get(c.q, c.hdr); body != "api" {
			t.Errorf("%s: got %q, want the API handler", name, body)
		}
	}
}
