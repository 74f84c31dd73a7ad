// Package server owns Vigil's HTTP surface: NewServer takes every
// dependency and registers every route in one place (routes.go), so the
// whole API can be read in one file. Handlers live in their transport
// packages; this package only wires them to paths and middleware.
package server

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/auth/access"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
	"github.com/vigil-sec/vigil/internal/metrics"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// Deps are the server's dependencies, built by the caller (internal/app).
type Deps struct {
	Log          *store.Log
	Hub          *hub.Hub
	Ingest       *ingest.Service
	Auth         auth.Authenticator
	Policy       hub.Policy
	Guard        wsconn.Guard   // connection and message limits; nil: none
	Access       *access.Access // token API (issue 5); nil: no /api/v1/tokens
	Metrics      *metrics.Metrics
	Logger       *slog.Logger
	PingInterval time.Duration
	MaxSubs      int
	MaxMessage   int64
	// Poller waits on idle WebSocket connections (epoll, run by the app);
	// nil: one reader goroutine per connection.
	Poller *wsconn.Poller
	// Issue 4: Stats feeds status, phase 8 and GraphQL metrics (run by the
	// app; nil gives zero counts); Detections backs the GraphQL detection
	// queries (nil until internal/detect offers a service).
	Stats      *stats.Stats
	Detections graphql.Detections
	// Issue 3: the detection engine (REST detections and rules); nil: the
	// detection routes are not registered.
	Detect *detect.Engine
	// Issue 8: GraphQL's per-operation limits (zero values: defaults).
	GraphQLLimits graphql.Limits
	// Issue 9: the input counters shared by every input (syslog, OTLP,
	// Falco); nil: addRoutes makes them and registers them on Metrics.
	InputMetrics *inputs.Metrics
	// Issue 10: the outputs (GET /api/v1/outputs, POST .../{name}/test);
	// nil: the routes are not registered.
	Outputs *outputs.Manager
}

// NewServer returns the HTTP handler for every Vigil endpoint.
func NewServer(d Deps) http.Handler {
	if d.Policy == nil {
		d.Policy = hub.DefaultPolicy
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	addRoutes(mux, d)
	return recoverPanics(d.Logger, mux)
}

// recoverPanics turns a handler panic into a 500 and a log line instead of
// a dropped connection with no trace.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("handler panic", "path", r.URL.Path, "panic", v)
				auth.WriteErr(w, domain.Errorf(domain.KindInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (d Deps) wsDeps() wsconn.Deps {
	return wsconn.Deps{Hub: d.Hub, Auth: d.Auth, Guard: d.Guard, Logger: d.Logger,
		PingInterval: d.PingInterval, MaxMessage: d.MaxMessage, Delivered: d.Metrics.Delivered, Poller: d.Poller}
}

// globalAdminOnly refuses every principal but an admin of all tenants:
// what it guards spans every tenant (a heap profile holds any tenant's
// events; a goroutine dump names every connection).
func globalAdminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := auth.FromContext(r.Context()); !ok || !p.IsGlobalAdmin() {
			auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "an admin of all tenants is required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pprofHandler serves net/http/pprof's profiles without registering them
// on the default mux.
func pprofHandler(w http.ResponseWriter, r *http.Request) {
	switch name := r.PathValue("profile"); name {
	case "":
		pprof.Index(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}
