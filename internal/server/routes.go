package server

import (
	"net/http"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/rest"
	"github.com/vigil-sec/vigil/internal/sse"
	"github.com/vigil-sec/vigil/internal/wsnative"
)

// addRoutes is the one place every path is registered.
func addRoutes(mux *http.ServeMux, d Deps) {
	authed := func(h http.Handler) http.Handler { return auth.Require(d.Auth, h) }
	events := &rest.Events{Ingest: d.Ingest, Log: d.Log, Policy: d.Policy}

	// Probes and metrics: no token (SPEC 1.4 exempts health checks; the
	// metrics carry counts, never event content).
	mux.HandleFunc("GET /healthz", rest.Health)
	mux.Handle("GET /readyz", rest.Ready(d.Log))
	mux.Handle("GET /metrics", d.Metrics.Handler())
	mux.HandleFunc("GET /api/v1/openapi.json", rest.OpenAPI)

	// Core event API (SPEC 3, 5).
	mux.Handle("POST /api/v1/events", authed(http.HandlerFunc(events.Publish)))
	mux.Handle("GET /api/v1/events", authed(http.HandlerFunc(events.History)))
	mux.Handle("GET /api/v1/events/{id}", authed(http.HandlerFunc(events.Get)))
	mux.Handle("GET /api/v1/stream", wsnative.Handler(d.wsDeps(), d.MaxSubs))
	mux.Handle("GET /api/v1/stream/sse", authed(sse.Handler(d.Hub, d.Guard, 0)))
	mux.Handle("GET /api/v1/integrity", authed(rest.Integrity(d.Log)))
}
