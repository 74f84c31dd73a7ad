package server

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/dashboard"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
	"github.com/vigil-sec/vigil/internal/inputs/cef"
	"github.com/vigil-sec/vigil/internal/inputs/falco"
	"github.com/vigil-sec/vigil/internal/inputs/otlp"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/compat/dbsec"
	"github.com/vigil-sec/vigil/internal/transport/compat/phase8"
	"github.com/vigil-sec/vigil/internal/transport/compat/wsdetections"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
	"github.com/vigil-sec/vigil/internal/transport/rest"
	"github.com/vigil-sec/vigil/internal/transport/sse"
	"github.com/vigil-sec/vigil/internal/transport/wsnative"
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
	// The dashboard's static files: no token needed to load the page; it
	// asks for one and uses the APIs below like any client.
	mux.Handle("GET /", dashboard.Handler())
	// Issue 11: the console's own endpoints (who the token is; overview
	// counts over the last hour/day read from the log).
	mux.Handle("GET /api/v1/whoami", authed(http.HandlerFunc(dashboard.WhoAmI)))
	mux.Handle("GET /api/v1/stats", authed(&dashboard.Stats{Log: d.Log, Policy: d.Policy}))

	// Core event API (SPEC 3, 5).
	mux.Handle("POST /api/v1/events", authed(http.HandlerFunc(events.Publish)))
	mux.Handle("GET /api/v1/events", authed(http.HandlerFunc(events.History)))
	mux.Handle("GET /api/v1/events/{id}", authed(http.HandlerFunc(events.Get)))
	// Issue 9: inputs from the tools teams already run, through the same
	// ingest path, answered after the append.
	// The input counters are shared with the syslog listener: NewMetrics
	// returns the collectors already registered under their names.
	inputMetrics := d.InputMetrics
	if inputMetrics == nil {
		var reg prometheus.Registerer
		if d.Metrics != nil {
			reg = d.Metrics.Registry
		}
		var err error
		if inputMetrics, err = inputs.NewMetrics(reg); err != nil {
			d.Logger.Error("input metrics not registered", "err", err)
			inputMetrics, _ = inputs.NewMetrics(nil) // unregistered: cannot fail
		}
	}
	mux.Handle("POST /api/v1/inputs/falco", authed(falco.NewHandler(d.Ingest, inputMetrics, d.Logger)))
	mux.Handle("POST /api/v1/inputs/cef", authed(cef.NewHandler(d.Ingest, inputMetrics, d.Logger))) // CEF lines over HTTP
	mux.Handle("POST /v1/logs", authed(otlp.NewHandler(d.Ingest, inputMetrics, d.Logger)))          // OTLP/HTTP's path
	mux.Handle("GET /api/v1/stream", wsnative.Handler(d.wsDeps(), d.MaxSubs))
	mux.Handle("GET /api/v1/stream/sse", authed(sse.Handler(d.Hub, d.Guard, 0, d.PingInterval)))

	// Identity and access (issue 5, SPEC 9): admin-only token management.
	// POST/GET /api/v1/tokens, GET/DELETE /api/v1/tokens/{id}.
	if d.Access != nil {
		d.Access.Register(mux, authed)
	}
	mux.Handle("GET /api/v1/integrity", authed(rest.Integrity(d.Log)))
	// Go profiles for operators (admin of all tenants only: a profile
	// spans every tenant): go tool pprof with the token.
	mux.Handle("GET /debug/pprof/{profile...}", authed(globalAdminOnly(http.HandlerFunc(pprofHandler))))

	// --- Issue 4: source-system dialects, GraphQL and status (SPEC 7.2,
	// 7.3, 8, 10). Owned by internal/transport/compat/phase8, internal/transport/compat/dbsec,
	// internal/transport/graphql and internal/stats; every one is an adapter over the
	// hub, the filter model and the stats fed by d.Stats.
	st := d.Stats
	if st == nil {
		st = stats.New(d.Logger) // not fed by the app: zero counts, still well-formed
	}
	reporter := &stats.Reporter{Stats: st, Hub: d.Hub}
	if d.Detections != nil { // the engine's open-detection counts are authoritative
		reporter.OpenDetections = func(ctx context.Context, p *auth.Principal) (map[string]int64, error) {
			return graphql.OpenDetections(ctx, d.Detections, p)
		}
	}
	if d.Log != nil {
		reporter.Checks = []stats.Check{{Name: "event_log", Probe: d.Log.Ready}}
	}
	mux.Handle("GET /ws/phase8/security", phase8.Handler(phase8.Deps{WS: d.wsDeps(), Status: reporter.Status}))
	dbsec.Register(mux, d.wsDeps()) // the six GET /api/v1/ws/security/* endpoints
	mux.Handle("GET /api/v1/status", authed(reporter))
	mux.Handle("GET /api/v1/schema", authed(phase8.SchemaHandler()))
	gqlDeps := graphql.Deps{
		Hub: d.Hub, Auth: d.Auth, Ingest: d.Ingest, History: events, Events: d.Log, Policy: d.Policy,
		Stats: st, Status: reporter.Status, Detections: d.Detections, Logger: d.Logger, Guard: d.Guard, MaxSubs: d.MaxSubs,
		Limits:       d.GraphQLLimits,
		PingInterval: d.PingInterval, // issue 8: also the stall limit of a subscription's writes
	}
	if d.Access != nil && d.Access.Enforcer != nil {
		// A GraphQL WebSocket is closed with 4001 once its token is
		// revoked or expires, like every other stream.
		gqlDeps.Credentials = d.Access.Enforcer
	}
	gql := graphql.New(gqlDeps)
	// gql authenticates itself (header, ?token= or connectionParams). GET
	// carries queries and the WebSocket upgrade; POST queries/mutations.
	// Their JSON is as strict as ingest's (publishEvent is an ingest path).
	// It reads no more than GraphQL's own body limit (413 beyond it), or
	// the ingest batch limit when that limit is disabled.
	maxGraphQLBody := d.GraphQLLimits.MaxBodyBytes()
	if maxGraphQLBody == 0 {
		maxGraphQLBody = int64(event.DefaultLimits().MaxBatchBytes)
		if d.Ingest != nil {
			maxGraphQLBody = int64(d.Ingest.Limits().MaxBatchBytes)
		}
	}
	strictGQL := strictGraphQL(gql, maxGraphQLBody, d.Auth)
	for _, method := range []string{"POST", "OPTIONS"} {
		mux.Handle(method+" /graphql", strictGQL)
	}
	// Issue 11: a browser asking GET /graphql for HTML gets GraphiQL;
	// every other GET (queries, the WebSocket upgrade) goes to gql.
	mux.Handle("GET /graphql", dashboard.GraphiQL(strictGQL))
	mux.Handle("GET /graphql/schema.graphql", authed(graphql.SchemaHandler()))
	// --- end issue 4.

	// --- Issue 3: detections (SPEC 6, 7.1). Owned by internal/detect and
	// internal/transport/compat/wsdetections. The REST handlers check CanRead /
	// CanUpdateDetections and tenants themselves; /ws/detections is a
	// wsconn dialect over the hub (authenticates itself); the connections
	// API is admin only.
	if d.Detect != nil {
		mux.Handle("GET /api/v1/detections", authed(http.HandlerFunc(d.Detect.HandleList)))
		mux.Handle("GET /api/v1/detections/{id}", authed(http.HandlerFunc(d.Detect.HandleGet)))
		mux.Handle("PATCH /api/v1/detections/{id}", authed(http.HandlerFunc(d.Detect.HandlePatch)))
		mux.Handle("GET /api/v1/rules", authed(http.HandlerFunc(d.Detect.HandleRules)))
		// Issue 13: hot reload.
		mux.Handle("POST /api/v1/rules/reload", authed(http.HandlerFunc(d.Detect.HandleReload)))
		mux.Handle("POST /api/v1/rules/backtest", authed(http.HandlerFunc(d.Detect.HandleBacktest)))
		mux.Handle("GET /api/v1/attack/coverage", authed(http.HandlerFunc(d.Detect.HandleCoverage)))
	}
	mux.Handle("GET /ws/detections", wsdetections.Handler(d.wsDeps()))
	mux.Handle("GET /api/v1/connections", authed(ListConnections(d.Hub)))
	mux.Handle("POST /api/v1/connections/{id}/messages", authed(SendMessage(d.Hub)))
	// --- end issue 3.

	// --- Issue 10: outputs (admin; a tenant admin sees only outputs
	// limited to its tenant). Owned by internal/outputs.
	if d.Outputs != nil {
		mux.Handle("GET /api/v1/outputs", authed(http.HandlerFunc(d.Outputs.HandleList)))
		mux.Handle("POST /api/v1/outputs/{name}/test", authed(http.HandlerFunc(d.Outputs.HandleTest)))
	}
	// --- end issue 10.
}
