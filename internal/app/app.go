// Package app assembles a Vigil node from its configuration: the log, the
// hub, ingest, authentication, the HTTP server, and their orderly shutdown.
// It is the composition root: the only package that knows every other one.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/auth/access"
	"github.com/vigil-sec/vigil/internal/config"
	"github.com/vigil-sec/vigil/internal/datadir"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
	"github.com/vigil-sec/vigil/internal/inputs/mapping"
	"github.com/vigil-sec/vigil/internal/inputs/otlp"
	"github.com/vigil-sec/vigil/internal/inputs/syslog"
	"github.com/vigil-sec/vigil/internal/metrics"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/types"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
	"github.com/vigil-sec/vigil/internal/server"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/tlsconfig"
	"github.com/vigil-sec/vigil/internal/transport/natsingest"
	"github.com/vigil-sec/vigil/internal/transport/wsconn"
)

// run assembles and runs the node until ctx ends, then shuts it down in
// order (node.go: the producer-facing inputs first, the log last).
// onListen is called with the bound address once the node is ready.
func (n *Node) run(ctx context.Context, cfg config.Config, logger *slog.Logger, onListen func(addr string)) error {
	// TLS first (SPEC 14): a refused address or a bad certificate fails the
	// start before anything is created.
	tlsSrv, err := startTLS(cfg, logger)
	if err != nil {
		return err
	}
	// A mapping file that does not compile stops the start too, with the
	// file and line of each problem (issue 9).
	maps, err := mapping.Load(cfg.Inputs.Mappings)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if maps != nil {
		logger.Info("input mappings loaded", "file", maps.Path, "mappings", len(maps.Mappings))
	}
	// Issue 10: a broken outputs: entry stops the start, with its index,
	// name and reason, before anything is touched.
	outputDefs, err := outputs.ParseDefinitions(cfg.Outputs, OutputTypes())
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	// Start order (issue 8): bind the port, then lock the data directory,
	// and only then touch it, so that a busy port or a directory in use
	// stops this process before it writes anything. The bound listener is
	// served (and "vigil listening" logged) once the node is ready;
	// connections meanwhile wait in the kernel's backlog.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("app: listen: %w", err)
	}
	defer ln.Close() // on an early return; Serve and Shutdown close it otherwise
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("app: data dir: %w", err)
	}
	// Held for the whole run, with an external NATS too: the directory
	// then holds only the admin token, but two nodes sharing it is still
	// a misconfiguration (docs/operations.md, "Data directory lock").
	dirLock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	defer func() { _ = dirLock.Release(); n.stopped("datadir") }() // after log.Close (deferred later)
	adminToken, tokenPath, created, err := auth.LoadOrCreateAdminToken(cfg.DataDir)
	if err != nil {
		return err
	}
	if created {
		logger.Info("admin token created; keep it secret", "path", tokenPath)
	} else {
		logger.Info("admin token loaded", "path", tokenPath)
	}

	var natsToken string
	if cfg.NATSListen != "" && cfg.NATS == "" {
		var natsTokenPath string
		if natsToken, natsTokenPath, _, err = auth.LoadOrCreateSecretFile(cfg.DataDir, "nats.token", "nats_"); err != nil {
			return err
		}
		logger.Info("embedded NATS listener token", "path", natsTokenPath)
	}
	log, err := store.Open(ctx, store.Config{
		DataDir: cfg.DataDir, NATSURL: cfg.NATS, NodeID: cfg.NodeID,
		Listen: cfg.NATSListen, ListenToken: natsToken, ListenTLS: natsTLS(tlsSrv),
		SyncAlways: cfg.Sync == "always", DedupWindow: cfg.DedupWindow, DedupSnapshotInterval: snapshotInterval(cfg.DedupSnapshotInterval),
		MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes,
		Replicas: cfg.Replicas, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer func() { log.Close(); n.stopped("log") }()
	if log.Embedded() {
		logger.Info("log: embedded NATS JetStream", "dir", cfg.DataDir)
	} else {
		logger.Info("log: external NATS JetStream", "url", redactURL(cfg.NATS))
	}

	// Identity and access (issue 5): admin token, KV-backed API tokens,
	// JWTs, the masking policy, connection limits and revocation.
	if cfg.Access.Limits.MaxSubscriptions == 0 {
		cfg.Access.Limits.MaxSubscriptions = cfg.MaxSubs
	}
	acc, err := access.New(ctx, access.Options{Config: cfg.Access, JetStream: log.JetStream(), Replicas: log.Replicas(), AdminToken: adminToken, Logger: logger})
	if err != nil {
		return err
	}
	policy := acc.HubPolicy()
	h := hub.New(log, hub.Options{QueueSize: cfg.QueueSize, QueueBytes: cfg.QueueKiB << 10, Policy: policy, Logger: logger})
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { wg.Wait(); n.stopped("background") }()
	defer stopRun()
	// The producer-facing inputs stop first at shutdown (no event enters
	// once the rest begins to stop), or here on an early return.
	var inputs stopList
	defer inputs.stop(n)
	hubErr := make(chan error, 1)
	wg.Add(1)
	go func() { // the hub's reader: stopped by stopRun
		defer wg.Done()
		hubErr <- h.Run(runCtx)
	}()
	select {
	case <-h.Started():
	case err := <-hubErr:
		return err
	}
	wg.Add(1)
	go func() { // reports the end of the dedup index rebuild (appends wait for it): stopped by stopRun
		defer wg.Done()
		if info, err := log.WaitDedupIndex(runCtx); err == nil {
			logger.Info("dedup index rebuilt: appends accepted", "ids", info.IDs, "took", info.Took.Round(time.Millisecond), "from_snapshot", info.Snapshot, "ids_from_log", info.Tail)
		}
	}()

	m := metrics.New(h)
	ing := ingest.New(log, cfg.Limits, m)
	// NATS-speaking producers: requests to vigil.ingest.<tenant> take the
	// same ingest path as POST /api/v1/events.
	bridge, err := natsingest.Start(log.Conn(), ing, logger)
	if err != nil {
		return err
	}
	inputs.add("natsingest", func() { _ = bridge.Stop() })
	if u := log.ClientURL(); u != "" {
		logger.Info("embedded NATS listening for producers", "url", u, "subject", natsingest.SubjectPrefix+".<tenant>")
	}
	if err := acc.Metrics.Register(m.Registry); err != nil {
		return err
	}
	// Issue 9: syslog (UDP, TCP, TLS) through the same ingest path; closed
	// (listeners, connections, queued batches appended) before the log.
	if cfg.Syslog.Listen != "" || cfg.Syslog.RELPListen != "" {
		sl, slTLS, err := startSyslog(cfg, maps, ing, m.Registry, logger)
		if err != nil {
			return err
		}
		if slTLS != nil {
			wg.Add(1)
			go func() { // reloads the syslog certificate (SIGHUP, file change): stopped by stopRun
				defer wg.Done()
				slTLS.Run(runCtx)
			}()
		}
		inputs.add("syslog", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := sl.Close(ctx); err != nil {
				logger.Warn("syslog close", "err", err)
			}
		})
	}
	// OTLP/gRPC on its own address: the same handler as POST /v1/logs,
	// stopped (running calls finish) before the log closes.
	if cfg.OTLPGRPCListen != "" {
		g, err := startOTLPGRPC(cfg, tlsSrv, acc.Auth, ing, m.Registry, logger)
		if err != nil {
			return err
		}
		inputs.add("otlp-grpc", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := g.Close(ctx); err != nil {
				logger.Warn("otlp grpc close", "err", err)
			}
		})
	}
	if err := m.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_log_undecodable_total",
		Help: "Stored messages skipped by reads because they are not events (written to vigil.events.> outside the protocol).",
	}, func() float64 { return float64(log.UndecodableSkipped()) })); err != nil {
		return err
	}
	wg.Add(1)
	go func() { // token watcher and revocation enforcer: stopped by stopRun
		defer wg.Done()
		acc.Run(runCtx, h)
	}()

	// Issue 4: live statistics for status, phase 8 and GraphQL metrics,
	// fed by one internal hub client.
	st := stats.New(logger)
	wg.Add(1)
	go func() { // stats' hub client: stopped by stopRun
		defer wg.Done()
		if err := st.Run(runCtx, h); err != nil {
			logger.Warn("stats stopped", "err", err)
		}
	}()

	// Issue 3: the detection engine reads every event through the hub
	// (off the ingest path, sharing the hub's decoded events; it resumes
	// from its KV checkpoint by replaying from the log), keeps detections
	// in a KV bucket and appends detection.* events. Stopped by stopRun.
	// Every node runs an engine; one per stream, elected through a KV
	// lease, evaluates (docs/detections.md, "Fail-over").
	det, err := detect.New(ctx, detect.Options{Source: h.Consumer("detect"), Appender: log, JetStream: log.JetStream(), Replicas: log.Replicas(),
		RulesDir: cfg.Rules, Pipelines: cfg.Pipelines, Placeholders: cfg.SigmaPlaceholders, Limits: cfg.Limits, Logger: logger, NodeID: cfg.NodeID, Log: log,
		ReloadOnSIGHUP: true, RulesPoll: cfg.RulesPoll}) // issue 13: pipelines, placeholders, hot reload
	if err != nil {
		return err
	}
	if err := det.RegisterMetrics(m.Registry); err != nil {
		return err
	}
	wg.Add(1)
	go func() { // the detection engine: stopped by stopRun
		defer wg.Done()
		if err := det.Run(runCtx); err != nil {
			logger.Error("detection engine stopped", "err", err)
		}
	}()

	// Issue 10: outputs, each reading the log through its own durable
	// consumer; dead-letter records take the normal ingest path. Stopped
	// by stopRun, before the log closes.
	outs, err := outputs.NewManager(ctx, outputs.Options{
		JetStream: log.JetStream(), Stream: store.StreamName, SubjectPrefix: store.SubjectPrefix,
		Definitions: outputDefs, PublicURL: cfg.PublicURL, Logger: logger, Registerer: m.Registry,
		DeadLetter: func(ctx context.Context, e *event.Event) error {
			_, err := ing.Publish(ctx, &auth.Principal{ID: "outputs", Name: "outputs", Role: auth.RoleAdmin, Tenant: e.Tenant}, []*event.Event{e})
			return err
		},
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	for _, d := range outputDefs {
		logger.Info("output configured", "output", d.Name, "type", d.Type.Name, "tenants", d.Tenants, "max_age", d.MaxAge)
	}
	wg.Add(1)
	go func() { // the outputs: stopped by stopRun
		defer wg.Done()
		if err := outs.Run(runCtx); err != nil {
			logger.Error("outputs stopped", "err", err)
		}
	}()

	// Idle WebSocket connections wait in one epoll instance instead of a
	// reader goroutine each (SPEC 11 memory per connection); Linux only.
	poller, err := wsconn.NewPoller()
	if err != nil {
		logger.Info("websocket reader: one goroutine per connection", "reason", err)
		poller = nil
	} else {
		wg.Add(1)
		go func() { // the poller: stopped by stopRun, after the connections closed
			defer wg.Done()
			if err := poller.Run(runCtx); err != nil {
				logger.Error("websocket poller stopped", "err", err)
			}
		}()
	}

	handler := server.NewServer(server.Deps{
		Log: log, Hub: h, Ingest: ing, Auth: acc.Auth, Policy: policy, Guard: acc.Limiter, Access: acc, Metrics: m, Logger: logger,
		PingInterval: cfg.PingInterval, MaxSubs: cfg.MaxSubs, MaxMessage: int64(cfg.Limits.MaxEventBytes), Poller: poller,
		Stats:  st,                                             // issue 4
		Detect: det, Detections: server.GraphQLDetections(det), // issue 3
		GraphQLLimits: cfg.GraphQL, // issue 8
		Outputs:       outs,        // issue 10
	})

	addr := ln.Addr().String()
	logger.Info("vigil listening", "addr", addr, "url", urlScheme(tlsSrv)+"://"+addr+"/")
	if onListen != nil {
		onListen(addr)
	}
	if tlsSrv != nil {
		ln = tls.NewListener(ln, tlsSrv.Config())
		wg.Add(1)
		go func() { // reloads the certificate (SIGHUP, file change): stopped by stopRun
			defer wg.Done()
			tlsSrv.Run(runCtx)
		}()
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() { // the HTTP server: stopped by srv.Shutdown below
		defer wg.Done()
		serveErr <- srv.Serve(ln)
	}()

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("app: serve: %w", err)
	case err := <-hubErr:
		_ = srv.Close()
		return err
	}
	logger.Info("shutting down: closing connections with 'going away'")
	inputs.stop(n)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Shutdown()
	h.WaitIdle(shutdownCtx)
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("http shutdown", "err", err)
	}
	n.stopped("http")
	stopRun()
	logger.Info("stopped")
	return nil
}

// startTLS loads the HTTPS certificate (the embedded NATS listener uses it
// too), or checks that plain HTTP and plain NATS stay on loopback unless
// --allow-plaintext says otherwise.
func startTLS(cfg config.Config, logger *slog.Logger) (*tlsconfig.Server, error) {
	if err := tlsconfig.CheckListen(cfg.Listen, cfg.TLS.Enabled(), cfg.AllowPlaintext); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if cfg.NATS == "" {
		if err := tlsconfig.CheckNATSListen(cfg.NATSListen, cfg.TLS.Enabled(), cfg.AllowPlaintext); err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
	}
	if !cfg.TLS.Enabled() {
		return nil, nil
	}
	srv, err := tlsconfig.New(tlsconfig.Options{CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key, ClientCAFile: cfg.TLS.ClientCA,
		PollInterval: cfg.TLS.ReloadInterval, Requests: cfg.TLS.Reload, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	return srv, nil
}

// startSyslog starts the syslog listener of cfg.Syslog. The TLS server it
// returns (nil without TLS) reloads the certificate when its Run goes:
// on SIGHUP and when the files change, polled as often as the main
// listener's (--tls-reload-interval).
func startSyslog(cfg config.Config, maps *mapping.Set, ing *ingest.Service, reg prometheus.Registerer, logger *slog.Logger) (*syslog.Server, *tlsconfig.Server, error) {
	allow, err := cfg.Syslog.AllowPrefixes()
	if err != nil {
		return nil, nil, err
	}
	loc, err := cfg.Syslog.Location()
	if err != nil {
		return nil, nil, err
	}
	im, err := inputs.NewMetrics(reg)
	if err != nil {
		return nil, nil, fmt.Errorf("app: input metrics: %w", err)
	}
	var tlsCfg *tls.Config
	var ts *tlsconfig.Server
	if cfg.Syslog.TLSCert != "" {
		ts, err = tlsconfig.New(tlsconfig.Options{CertFile: cfg.Syslog.TLSCert, KeyFile: cfg.Syslog.TLSKey,
			PollInterval: cfg.TLS.ReloadInterval, Logger: logger.With("listener", "syslog")})
		if err != nil {
			return nil, nil, fmt.Errorf("app: syslog tls: %w", err)
		}
		tlsCfg = ts.Config()
	}
	// User-defined mappings run before the built-in parsers (docs/inputs.md).
	var mappers []inputs.Mapper
	if maps != nil {
		mappers = append(mappers, maps)
	}
	sl, err := syslog.Start(syslog.Options{
		Listen: cfg.Syslog.Listen, Tenant: cfg.Syslog.Tenant, Allow: allow, TLS: tlsCfg, Mappers: mappers, Location: loc, RELPListen: cfg.Syslog.RELPListen,
		MaxMessage: cfg.Syslog.MaxMessageKiB << 10, MaxConns: cfg.Syslog.MaxConnections, IdleTimeout: cfg.Syslog.IdleTimeout,
		Ingest: ing, Metrics: im, Logger: logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("app: %w", err)
	}
	attrs := []any{"tenant", cfg.Syslog.Tenant, "tls", tlsCfg != nil}
	var addrs []net.Addr
	for _, a := range []struct {
		name string
		addr net.Addr
	}{{"tcp", sl.Addr()}, {"udp", sl.UDPAddr()}, {"relp", sl.RELPAddr()}} {
		if a.addr != nil {
			attrs = append(attrs, a.name, a.addr.String())
			addrs = append(addrs, a.addr)
		}
	}
	for _, a := range addrs {
		if host, _, _ := net.SplitHostPort(a.String()); len(allow) == 0 && !tlsconfig.IsLoopback(host) {
			logger.Warn("syslog listening off loopback without an allow-list: any peer can write events (set --syslog-allow)")
			break
		}
	}
	logger.Info("syslog listening", attrs...)
	return sl, ts, nil
}

// startOTLPGRPC starts the OTLP/gRPC listener: TLS with the main
// listener's certificate (and its reloads) when one is set; plaintext off
// loopback needs --allow-plaintext, as for the main listener.
func startOTLPGRPC(cfg config.Config, tlsSrv *tlsconfig.Server, authn auth.Authenticator, ing *ingest.Service, reg prometheus.Registerer, logger *slog.Logger) (*otlp.GRPCServer, error) {
	if host, _, err := net.SplitHostPort(cfg.OTLPGRPCListen); err != nil {
		return nil, fmt.Errorf("app: --otlp-grpc-listen %q: %w", cfg.OTLPGRPCListen, err)
	} else if tlsSrv == nil && !cfg.AllowPlaintext && !tlsconfig.IsLoopback(host) {
		return nil, fmt.Errorf("app: refusing to serve OTLP/gRPC in plaintext on %s: bearer tokens and logs would cross the network "+
			"in clear; serve TLS with --tls-cert/--tls-key (the gRPC listener uses the same certificate) or say --allow-plaintext", cfg.OTLPGRPCListen)
	}
	im, err := inputs.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("app: input metrics: %w", err)
	}
	var tc *tls.Config
	if tlsSrv != nil {
		// gRPC needs ALPN "h2", which the HTTP listener does not offer.
		base := tlsSrv.Config()
		tc = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				c, err := base.GetConfigForClient(hello)
				if err != nil || c == nil {
					return c, err
				}
				c = c.Clone()
				c.NextProtos = []string{"h2"}
				return c, nil
			}}
	}
	g, err := otlp.StartGRPC(otlp.GRPCOptions{Listen: cfg.OTLPGRPCListen, TLS: tc}, authn, otlp.NewHandler(ing, im, logger))
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	logger.Info("otlp grpc listening", "addr", g.Addr().String(), "tls", tc != nil)
	return g, nil
}

// natsTLS is the embedded NATS listener's TLS: the HTTP listener's
// configuration (same certificate, reloads and client CA).
func natsTLS(tlsSrv *tlsconfig.Server) *tls.Config {
	if tlsSrv == nil {
		return nil
	}
	return tlsSrv.Config()
}

func urlScheme(tlsSrv *tlsconfig.Server) string {
	if tlsSrv != nil {
		return "https"
	}
	return "http"
}

func redactURL(u string) string {
	for i := 0; i+3 <= len(u); i++ {
		if u[i:i+3] == "://" {
			rest := u[i+3:]
			for j := 0; j < len(rest); j++ {
				if rest[j] == '@' {
					return u[:i+3] + "***@" + rest[j+1:]
				}
				if rest[j] == '/' {
					break
				}
			}
		}
	}
	return u
}

// snapshotInterval maps --dedup-snapshot-interval to the store's: 0 (only
// at a clean stop) is negative there, where 0 means its default.
func snapshotInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// OutputTypes are the output types a node knows (issue 10): each type's
// package offers its Type; there is no package-level registry.
func OutputTypes() []outputs.Type {
	return append([]outputs.Type{webhook.Type()}, types.Types()...)
}
