package server

import (
	"net/http"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/dbsec"
	"github.com/vigil-sec/vigil/internal/graphql"
	"github.com/vigil-sec/vigil/internal/phase8"
	"github.com/vigil-sec/vigil/internal/rest"
	"github.com/vigil-sec/vigil/internal/sse"
	"github.com/vigil-sec/vigil/internal/stats"
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

	// Identity and access (issue 5, SPEC 9): admin-only token management.
	// POST/GET /api/v1/tokens, GET/DELETE /api/v1/tokens/{id}.
	if d.Access != nil {
		d.Access.Register(mux, authed)
	}
	mux.Handle("GET /api/v1/integrity", authed(rest.Integrity(d.Log)))

	// --- Issue 4: source-system dialects, GraphQL and status (SPEC 7.2,
	// 7.3, 8, 10). Owned by internal/phase8, internal/dbsec,
	// internal/graphql and internal/stats; every one is an adapter over the
	// hub, the filter model and the stats fed by d.Stats.
	st := d.Stats
	if st == nil {
		st = stats.New(d.Logger) // not fed by the app: zero counts, still well-formed
	}
	reporter := &stats.Reporter{Stats: st, Hub: d.Hub}
	if d.Log != nil {
		reporter.Checks = []stats.Check{{Name: "event_log", Probe: d.Log.Ready}}
	}
	mux.Handle("GET /ws/phase8/security", phase8.Handler(phase8.Deps{WS: d.wsDeps(), Status: reporter.Status}))
	dbsec.Register(mux, d.wsDeps()) // the six GET /api/v1/ws/security/* endpoints
	mux.Handle("GET /api/v1/status", authed(reporter))
	mux.Handle("GET /api/v1/schema", authed(phase8.SchemaHandler()))
	mux.Handle("/graphql", graphql.New(graphql.Deps{
		Hub: d.Hub, Auth: d.Auth, Ingest: d.Ingest, History: events, Events: d.Log, Policy: d.Policy,
		Stats: st, Status: reporter.Status, Detections: d.Detections, Logger: d.Logger,
	})) // authenticates itself: header, ?token= or connectionParams
	mux.Handle("GET /graphql/schema.graphql", authed(graphql.SchemaHandler()))
	// --- end issue 4.
}
