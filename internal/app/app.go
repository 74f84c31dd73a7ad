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
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
	"github.com/vigil-sec/vigil/internal/inputs/mapping"
	"github.com/vigil-sec/vigil/internal/inputs/syslog"
	"github.com/vigil-sec/vigil/internal/metrics"
	"github.com/vigil-sec/vigil/internal/natsingest"
	"github.com/vigil-sec/vigil/internal/server"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/tlsconfig"
	"github.com/vigil-sec/vigil/internal/wsconn"
)

// Run starts a node and blocks until ctx ends, then shuts it down
// gracefully. onListen, if set, is called with the bound address.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger, onListen func(addr string)) error {
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
	defer func() { _ = dirLock.Release() }() // after log.Close (deferred later)
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
	defer log.Close()
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
	defer wg.Wait()
	defer stopRun()
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
	defer func() { _ = bridge.Stop() }()
	if u := log.ClientURL(); u != "" {
		logger.Info("embedded NATS listening for producers", "url", u, "subject", natsingest.SubjectPrefix+".<tenant>")
	}
	if err := acc.Metrics.Register(m.Registry); err != nil {
		return err
	}
	// Issue 9: syslog (UDP, TCP, TLS) through the same ingest path; closed
	// (listeners, connections, queued batches appended) before the log.
	if cfg.Syslog.Listen != "" {
		sl, err := startSyslog(cfg, maps, ing, m.Registry, logger)
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := sl.Close(ctx); err != nil {
				logger.Warn("syslog close", "err", err)
			}
		}()
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
		RulesDir: cfg.Rules, Limits: cfg.Limits, Logger: logger, NodeID: cfg.NodeID, Log: log})
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
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.Shutdown()
	h.WaitIdle(shutdownCtx)
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("http shutdown", "err", err)
	}
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

// startSyslog starts the syslog listener of cfg.Syslog.
func startSyslog(cfg config.Config, maps *mapping.Set, ing *ingest.Service, reg prometheus.Registerer, logger *slog.Logger) (*syslog.Server, error) {
	allow, err := cfg.Syslog.AllowPrefixes()
	if err != nil {
		return nil, err
	}
	im, err := inputs.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("app: input metrics: %w", err)
	}
	var tlsCfg *tls.Config
	if cfg.Syslog.TLSCert != "" {
		ts, err := tlsconfig.New(tlsconfig.Options{CertFile: cfg.Syslog.TLSCert, KeyFile: cfg.Syslog.TLSKey, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("app: syslog tls: %w", err)
		}
		tlsCfg = ts.Config()
	}
	// User-defined mappings run before the built-in parsers (docs/inputs.md).
	var mappers []inputs.Mapper
	if maps != nil {
		mappers = append(mappers, maps)
	}
	sl, err := syslog.Start(syslog.Options{
		Listen: cfg.Syslog.Listen, Tenant: cfg.Syslog.Tenant, Allow: allow, TLS: tlsCfg, Mappers: mappers,
		MaxMessage: cfg.Syslog.MaxMessageKiB << 10, MaxConns: cfg.Syslog.MaxConnections, IdleTimeout: cfg.Syslog.IdleTimeout,
		Ingest: ing, Metrics: im, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	attrs := []any{"tcp", sl.Addr().String(), "tenant", cfg.Syslog.Tenant, "tls", tlsCfg != nil}
	if u := sl.UDPAddr(); u != nil {
		attrs = append(attrs, "udp", u.String())
	}
	if len(allow) == 0 {
		if host, _, _ := net.SplitHostPort(sl.Addr().String()); !tlsconfig.IsLoopback(host) {
			logger.Warn("syslog listening off loopback without an allow-list: any peer can write events (set --syslog-allow)")
		}
	}
	logger.Info("syslog listening", attrs...)
	return sl, nil
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
