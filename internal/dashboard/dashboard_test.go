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
	for _, asset := range []string{"/app.js", "/app.css"} {
		r, err := http.Get(srv.URL + asset)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("%s: %v %v", asset, err, r.Status)
		}
		r.Body.Close()
	}
}
