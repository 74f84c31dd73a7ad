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

// node is what the subsystems of one run share: each start sets its part,
// later starts and the stops read it.
type node struct {
	cfg    config.Config
	logger *slog.Logger

	tlsSrv     *tlsconfig.Server
	maps       *mapping.Set
	outputDefs []outputs.Definition
	ln         net.Listener
	dirLock    *datadir.Lock
	adminToken string
	natsToken  string
	log        *store.Log
	acc        *access.Access
	h          *hub.Hub
	hubErr     chan error
	m          *metrics.Metrics
	ing        *ingest.Service
	st         *stats.Stats
	det        *detect.Engine
	outs       *outputs.Manager
	poller     *wsconn.Poller
	srv        *http.Server
	serveErr   chan error
	bridge     *natsingest.Bridge
	syslog     *syslog.Server
	otlp       *otlp.GRPCServer

	// The background subsystems (hub reader, access, stats, detection,
	// outputs, poller, certificate reloads, the HTTP server's Serve) run
	// under runCtx and wg; the "background" subsystem stops them together
	// once connections, HTTP and inputs have stopped.
	runCtx  context.Context
	stopRun context.CancelFunc
	wg      sync.WaitGroup
}

// goBackground runs fn in a goroutine owned by the background subsystem:
// it ends when runCtx is cancelled ("background" stop waits for it).
func (p *node) goBackground(fn func(ctx context.Context)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn(p.runCtx)
	}()
}

// run assembles and runs the node until ctx ends, then shuts it down in
// order (node.go: the producer-facing inputs first, the log last).
// onListen is called with the bound address once the node is ready.
func (n *Node) run(ctx context.Context, cfg config.Config, logger *slog.Logger, onListen func(addr string)) error {
	p := &node{cfg: cfg, logger: logger, hubErr: make(chan error, 1), serveErr: make(chan error, 1)}
	var lc lifecycle
	defer lc.stop(n.stopped) // on an early return; a no-op after the shutdown below
	if err := lc.start(ctx, p.subsystems(onListen)); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-p.serveErr:
		return fmt.Errorf("app: serve: %w", err)
	case err := <-p.hubErr:
		_ = p.srv.Close()
		return err
	}
	logger.Info("shutting down: closing connections with 'going away'")
	lc.stop(n.stopped)
	logger.Info("stopped")
	return nil
}

// subsystems is the node, in start order; they stop in reverse
// (lifecycle). The order is the contract of issue 8 and node.go:
//   - startup checks first, so a bad configuration touches nothing: TLS and
//     the plaintext checks, mapping and output definitions, then the port
//     is bound, and only then the data directory is locked and touched;
//   - the log, then everything that reads it; the background subsystems
//     stop together after HTTP and before the log;
//   - HTTP (its stop closes every connection with "going away" and drains
//     the server) before the producer-facing inputs, which therefore stop
//     first: no event enters once the rest begins to stop;
//   - serving (and onListen) last, once everything is ready.
func (p *node) subsystems(onListen func(addr string)) []subsystem {
	cfg, logger := p.cfg, p.logger
	subs := []subsystem{
		{name: "tls", start: func(context.Context) error {
			// TLS first (SPEC 14): a refused address or a bad certificate
			// fails the start before anything is created.
			var err error
			p.tlsSrv, err = startTLS(cfg, logger)
			return err
		}},
		{name: "definitions", start: p.startDefinitions},
		{name: "listen", start: func(context.Context) error {
			// Start order (issue 8): bind the port, then lock the data
			// directory, and only then touch it, so that a busy port or a
			// directory in use stops this process before it writes
			// anything. The bound listener is served (and "vigil
			// listening" logged) once the node is ready; connections
			// meanwhile wait in the kernel's backlog.
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return fmt.Errorf("app: listen: %w", err)
			}
			p.ln = ln
			return nil
		}, stop: func() { _ = p.ln.Close() }}, // on an early return; Serve and Shutdown close it otherwise
		{name: "datadir", start: func(context.Context) error {
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return fmt.Errorf("app: data dir: %w", err)
			}
			// Held for the whole run, with an external NATS too: the
			// directory then holds only the admin token, but two nodes
			// sharing it is still a misconfiguration (docs/operations.md,
			// "Data directory lock").
			var err error
			if p.dirLock, err = datadir.Acquire(cfg.DataDir); err != nil {
				return fmt.Errorf("app: %w", err)
			}
			return nil
		}, stop: func() { _ = p.dirLock.Release() }},
		{name: "secrets", start: p.startSecrets},
		{name: "log", start: p.startLog, stop: func() { p.log.Close() }},
		{name: "background", start: func(ctx context.Context) error {
			p.runCtx, p.stopRun = context.WithCancel(context.WithoutCancel(ctx))
			return nil
		}, stop: func() { p.stopRun(); p.wg.Wait() }},
		{name: "access", start: func(ctx context.Context) error {
			// Identity and access (issue 5): admin token, KV-backed API
			// tokens, JWTs, the masking policy, connection limits and
			// revocation.
			if cfg.Access.Limits.MaxSubscriptions == 0 {
				cfg.Access.Limits.MaxSubscriptions = cfg.MaxSubs
			}
			var err error
			p.acc, err = access.New(ctx, access.Options{Config: cfg.Access, JetStream: p.log.JetStream(), Replicas: p.log.Replicas(), AdminToken: p.adminToken, Logger: logger})
			return err
		}},
		{name: "hub", start: p.startHub},
		{name: "ingest", start: p.startIngest},
		{name: "stats", start: func(context.Context) error {
			// Issue 4: live statistics for status, phase 8 and GraphQL
			// metrics, fed by one internal hub client.
			p.st = stats.New(logger)
			p.goBackground(func(ctx context.Context) {
				if err := p.st.Run(ctx, p.h); err != nil {
					logger.Warn("stats stopped", "err", err)
				}
			})
			return nil
		}},
		{name: "detect", start: p.startDetect},
		{name: "settle", start: p.startSettle}, // issue 12 item 8: RSS after a restart (settle.go)
		{name: "outputs", start: p.startOutputs},
		{name: "poller", start: func(context.Context) error {
			// Idle WebSocket connections wait in one epoll instance instead
			// of a reader goroutine each (SPEC 11 memory per connection);
			// Linux only.
			poller, err := wsconn.NewPoller()
			if err != nil {
				logger.Info("websocket reader: one goroutine per connection", "reason", err)
				return nil
			}
			p.poller = poller
			p.goBackground(func(ctx context.Context) { // stopped after the connections closed
				if err := poller.Run(ctx); err != nil {
					logger.Error("websocket poller stopped", "err", err)
				}
			})
			return nil
		}},
		{name: "http", start: p.startHTTP, stop: p.stopHTTP},
		{name: "natsingest", start: p.startNATSIngest, stop: func() { _ = p.bridge.Stop() }},
	}
	if cfg.Syslog.Listen != "" || cfg.Syslog.RELPListen != "" {
		subs = append(subs, subsystem{name: "syslog", start: p.startSyslog, stop: p.stopSyslog})
	}
	if cfg.OTLPGRPCListen != "" {
		subs = append(subs, subsystem{name: "otlp-grpc", start: p.startOTLPGRPC, stop: p.stopOTLPGRPC})
	}
	return append(subs, subsystem{name: "serve", start: func(context.Context) error {
		addr := p.ln.Addr().String()
		logger.Info("vigil listening", "addr", addr, "url", urlScheme(p.tlsSrv)+"://"+addr+"/")
		if onListen != nil {
			onListen(addr)
		}
		ln := p.ln
		if p.tlsSrv != nil {
			ln = tls.NewListener(ln, p.tlsSrv.Config())
		}
		p.goBackground(func(context.Context) { // ends with srv.Shutdown ("http" stop)
			p.serveErr <- p.srv.Serve(ln)
		})
		return nil
	}}) // stopped by "http"
}

// startDefinitions compiles the mapping file and the outputs: entries; a
// broken one stops the start before anything is touched.
func (p *node) startDefinitions(context.Context) error {
	// A mapping file that does not compile stops the start too, with the
	// file and line of each problem (issue 9).
	maps, err := mapping.Load(p.cfg.Inputs.Mappings)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if maps != nil {
		p.logger.Info("input mappings loaded", "file", maps.Path, "mappings", len(maps.Mappings))
	}
	p.maps = maps
	// Issue 10: a broken outputs: entry stops the start, with its index,
	// name and reason, before anything is touched.
	if p.outputDefs, err = outputs.ParseDefinitions(p.cfg.Outputs, OutputTypes()); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	return nil
}

// startSecrets loads (or creates) the admin token and, for an embedded
// NATS listener, its token.
func (p *node) startSecrets(context.Context) error {
	cfg, logger := p.cfg, p.logger
	adminToken, tokenPath, created, err := auth.LoadOrCreateAdminToken(cfg.DataDir)
	if err != nil {
		return err
	}
	p.adminToken = adminToken
	if created {
		logger.Info("admin token created; keep it secret", "path", tokenPath)
	} else {
		logger.Info("admin token loaded", "path", tokenPath)
	}
	if cfg.NATSListen != "" && cfg.NATS == "" {
		var natsTokenPath string
		if p.natsToken, natsTokenPath, _, err = auth.LoadOrCreateSecretFile(cfg.DataDir, "nats.token", "nats_"); err != nil {
			return err
		}
		logger.Info("embedded NATS listener token", "path", natsTokenPath)
	}
	return nil
}

// startLog opens the log: embedded NATS JetStream, or an external one.
func (p *node) startLog(ctx context.Context) error {
	cfg := p.cfg
	log, err := store.Open(ctx, store.Config{
		DataDir: cfg.DataDir, NATSURL: cfg.NATS, NodeID: cfg.NodeID,
		Listen: cfg.NATSListen, ListenToken: p.natsToken, ListenTLS: natsTLS(p.tlsSrv),
		SyncAlways: cfg.Sync == "always", DedupWindow: cfg.DedupWindow, DedupSnapshotInterval: snapshotInterval(cfg.DedupSnapshotInterval),
		MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes,
		Replicas: cfg.Replicas, Logger: p.logger,
		ReplayCacheBytes: replayBoundBytes(cfg.ReplayCacheMB), ReplayCacheEvents: cfg.ReplayCacheEvents, ReplaySpillBytes: replayBoundBytes(cfg.ReplaySpillMB),
	})
	if err != nil {
		return err
	}
	p.log = log
	if log.Embedded() {
		p.logger.Info("log: embedded NATS JetStream", "dir", cfg.DataDir)
	} else {
		p.logger.Info("log: external NATS JetStream", "url", redactURL(cfg.NATS))
	}
	return nil
}

// startHub starts the hub's reader and waits until it reads; a reader
// that fails later stops the node (run reads hubErr).
func (p *node) startHub(context.Context) error {
	p.h = hub.New(p.log, hub.Options{QueueSize: p.cfg.QueueSize, QueueBytes: p.cfg.QueueKiB << 10, Policy: p.acc.HubPolicy(), Masked: p.acc.HubMasked, Budget: p.acc.Limiter, Logger: p.logger})
	p.goBackground(func(ctx context.Context) { p.hubErr <- p.h.Run(ctx) })
	select {
	case <-p.h.Started():
	case err := <-p.hubErr:
		return err
	}
	p.goBackground(func(ctx context.Context) { // reports the end of the dedup index rebuild (appends wait for it)
		if info, err := p.log.WaitDedupIndex(ctx); err == nil {
			p.logger.Info("dedup index rebuilt: appends accepted", "ids", info.IDs, "took", info.Took.Round(time.Millisecond), "from_snapshot", info.Snapshot, "ids_from_log", info.Tail)
		}
	})
	return nil
}

// startIngest builds the metrics and the ingest path every input shares,
// and starts the token watcher and revocation enforcer.
func (p *node) startIngest(context.Context) error {
	p.m = metrics.New(p.h)
	p.ing = ingest.New(p.log, p.cfg.Limits, p.m).WithAdmission(&ingest.Admission{
		Head: p.h, MaxLag: p.cfg.IngestMaxDeliveryLag, MaxWait: p.cfg.IngestMaxHold,
	})
	if err := p.acc.Metrics.Register(p.m.Registry); err != nil {
		return err
	}
	log := p.log
	if err := p.m.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_log_undecodable_total",
		Help: "Stored messages skipped by reads because they are not events (written to vigil.events.> outside the protocol).",
	}, func() float64 { return float64(log.UndecodableSkipped()) })); err != nil {
		return err
	}
	if err := p.m.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_tail_local_events_total",
		Help: "Events the hub's tail took straight from this node's acknowledged appends instead of the stream's consumer.",
	}, func() float64 { d, _ := log.LocalTail(); return float64(d) })); err != nil {
		return err
	}
	if err := p.m.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_tail_local_dropped_total",
		Help: "Local copies of appended events the hub's tail dropped because it was busy (the stream's consumer delivered those events instead).",
	}, func() float64 { _, d := log.LocalTail(); return float64(d) })); err != nil {
		return err
	}
	if err := registerReplayCacheMetrics(p.m.Registry, log); err != nil {
		return err
	}
	p.goBackground(func(ctx context.Context) { p.acc.Run(ctx, p.h) }) // token watcher and revocation enforcer
	return nil
}

// startDetect starts the detection engine (issue 3): it reads every event
// through the hub (off the ingest path, sharing the hub's decoded events;
// it resumes from its KV checkpoint by replaying from the log), keeps
// detections in a KV bucket and appends detection.* events. Every node
// runs an engine; one per stream, elected through a KV lease, evaluates
// (docs/detections.md, "Fail-over").
func (p *node) startDetect(ctx context.Context) error {
	cfg := p.cfg
	det, err := detect.New(ctx, detect.Options{Source: p.h.Consumer("detect"), Appender: p.log, JetStream: p.log.JetStream(), Replicas: p.log.Replicas(),
		RulesDir: cfg.Rules, Pipelines: cfg.Pipelines, Placeholders: cfg.SigmaPlaceholders, Limits: cfg.Limits, Logger: p.logger, NodeID: cfg.NodeID, Log: p.log,
		ReloadOnSIGHUP: true, RulesPoll: cfg.RulesPoll, Policy: p.acc.Policy}) // issue 13: pipelines, placeholders, hot reload
	if err != nil {
		return err
	}
	if err := det.RegisterMetrics(p.m.Registry); err != nil {
		return err
	}
	p.det = det
	p.goBackground(func(ctx context.Context) {
		if err := det.Run(ctx); err != nil {
			p.logger.Error("detection engine stopped", "err", err)
		}
	})
	return nil
}

// startOutputs starts the outputs (issue 10), each reading the log through
// its own durable consumer; dead-letter records take the normal ingest
// path.
func (p *node) startOutputs(ctx context.Context) error {
	ing := p.ing
	outs, err := outputs.NewManager(ctx, outputs.Options{
		JetStream: p.log.JetStream(), Stream: store.StreamName, SubjectPrefix: store.SubjectPrefix,
		Definitions: p.outputDefs, PublicURL: p.cfg.PublicURL, Logger: p.logger, Registerer: p.m.Registry,
		Replicas: p.log.Replicas(),
		DeadLetter: func(ctx context.Context, e *event.Event) error {
			_, err := ing.Publish(ctx, &auth.Principal{ID: "outputs", Name: "outputs", Role: auth.RoleAdmin, Tenant: e.Tenant}, []*event.Event{e})
			return err
		},
	})
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	for _, d := range p.outputDefs {
		p.logger.Info("output configured", "output", d.Name, "type", d.Type.Name, "tenants", d.Tenants, "max_age", d.MaxAge)
	}
	p.outs = outs
	p.goBackground(func(ctx context.Context) {
		if err := outs.Run(ctx); err != nil {
			p.logger.Error("outputs stopped", "err", err)
		}
	})
	return nil
}

// startHTTP builds the HTTP server (served by the "serve" step) and
// starts the certificate reloads.
func (p *node) startHTTP(context.Context) error {
	cfg, logger := p.cfg, p.logger
	handler := server.NewServer(server.Deps{
		Log: p.log, Hub: p.h, Ingest: p.ing, Auth: p.acc.Auth, Policy: p.acc.HubPolicy(), Guard: p.acc.Limiter, Access: p.acc, Metrics: p.m, Logger: logger,
		PingInterval: cfg.PingInterval, MaxSubs: cfg.MaxSubs, MaxMessage: int64(cfg.Limits.MaxEventBytes), Poller: p.poller,
		Stats:  p.st,                                               // issue 4
		Detect: p.det, Detections: server.GraphQLDetections(p.det), // issue 3
		GraphQLLimits: cfg.GraphQL, // issue 8
		Outputs:       p.outs,      // issue 10
	})
	if p.tlsSrv != nil {
		p.goBackground(p.tlsSrv.Run) // reloads the certificate (SIGHUP, file change)
	}
	// Every resource an unknown client can hold is bounded: headers
	// (ReadHeaderTimeout, MaxHeaderBytes), an idle keep-alive connection
	// (IdleTimeout), a request body's time and the bodies read at once
	// (BodyGuard); streams have their own limits (docs/security.md).
	guard := server.BodyGuard{Timeout: cfg.HTTPBodyTimeout, Budget: int64(cfg.HTTPBodyBudgetMiB) << 20, MaxBody: int64(cfg.Limits.MaxBatchBytes)}
	p.srv = &http.Server{Handler: guard.Wrap(handler), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: cfg.HTTPIdleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	return nil
}

// maxHeaderBytes bounds a request's header block (net/http's default is
// 1 MiB): a query-string filter or token has no use for more than this.
const maxHeaderBytes = 256 << 10

// stopHTTP closes every connection with "going away" and drains the HTTP
// server (REST ingest included), 10 s at most.
func (p *node) stopHTTP() {
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.h.Shutdown()
	p.h.WaitIdle(shutdownCtx)
	if err := p.srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.logger.Warn("http shutdown", "err", err)
	}
}

// startNATSIngest serves NATS-speaking producers: requests to
// vigil.ingest.<tenant> take the same ingest path as POST /api/v1/events.
func (p *node) startNATSIngest(context.Context) error {
	bridge, err := natsingest.Start(p.log.Conn(), p.ing, p.logger)
	if err != nil {
		return err
	}
	p.bridge = bridge
	if u := p.log.ClientURL(); u != "" {
		p.logger.Info("embedded NATS listening for producers", "url", u, "subject", natsingest.SubjectPrefix+".<tenant>")
	}
	return nil
}

// startSyslog starts syslog (UDP, TCP, TLS, RELP; issue 9) through the
// same ingest path, if configured.
func (p *node) startSyslog(context.Context) error {
	sl, slTLS, err := startSyslog(p.cfg, p.maps, p.ing, p.m.Registry, p.logger)
	if err != nil {
		return err
	}
	p.syslog = sl
	if slTLS != nil {
		p.goBackground(slTLS.Run) // reloads the syslog certificate (SIGHUP, file change)
	}
	return nil
}

// stopSyslog closes the listeners and connections and appends the queued
// batches, before the log closes.
func (p *node) stopSyslog() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.syslog.Close(ctx); err != nil {
		p.logger.Warn("syslog close", "err", err)
	}
}

// startOTLPGRPC starts OTLP/gRPC on its own address, if configured: the
// same handler as POST /v1/logs.
func (p *node) startOTLPGRPC(context.Context) error {
	g, err := startOTLPGRPC(p.cfg, p.tlsSrv, p.acc.Auth, p.ing, p.m.Registry, p.logger)
	if err != nil {
		return err
	}
	p.otlp = g
	return nil
}

// stopOTLPGRPC stops the gRPC listener (running calls finish) before the
// log closes.
func (p *node) stopOTLPGRPC() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.otlp.Close(ctx); err != nil {
		p.logger.Warn("otlp grpc close", "err", err)
	}
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
		ts, err = tlsconfig.New(tlsconfig.Options{CertFile: cfg.Syslog.TLSCert, KeyFile: cfg.Syslog.TLSKey, ClientCAFile: cfg.Syslog.TLSClientCA,
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
	attrs := []any{"tenant", cfg.Syslog.Tenant, "tls", tlsCfg != nil, "client_certificates", cfg.Syslog.TLSClientCA != ""}
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
