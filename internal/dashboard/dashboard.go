// Package dashboard owns the web dashboard served at / (SPEC 10): static
// files embedded in the binary. The page holds no secrets: it asks for a
// token, keeps it in the browser's sessionStorage, and talks to the same
// APIs as every other client (the native WebSocket stream and the
// detections REST API).
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// csp is the Content-Security-Policy of every console page: scripts and
// styles from this origin only (no inline script, no eval, no CDN),
// connections to this origin's APIs and WebSockets, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self' data:; " +
	"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func secure(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
}

func files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Handler serves the console's files (the bundle built from web/).
func Handler() http.Handler {
	srv := http.FileServerFS(files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		srv.ServeHTTP(w, r)
	})
}

// GraphiQL serves the bundled GraphiQL page (static/graphiql.html, its
// script and styles come from Handler) to a browser that asks GET /graphql
// for HTML, and hands every other request — queries, the WebSocket
// upgrade, API clients — to next.
func GraphiQL(next http.Handler) http.Handler {
	page, err := fs.ReadFile(files(), "graphiql.html")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Upgrade") != "" || r.URL.Query().Has("query") ||
			!strings.Contains(r.Header.Get("Accept"), "text/html") {
			next.ServeHTTP(w, r)
			return
		}
		secure(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})
}
