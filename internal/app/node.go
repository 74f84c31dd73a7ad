package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vigil-sec/vigil/internal/config"
)

// Node is one Vigil node with a lifecycle (as centrifuge's Node or
// nats-server's Server): New builds it from the configuration, Start
// brings it up and returns once it serves, Shutdown stops it.
//
// Shutdown order (TestNodeShutdownOrder): the producer-facing inputs
// (NATS request/reply ingest, syslog) stop first, so no event enters once
// anything else stops; then every connection is closed with "going away"
// and the HTTP server drains (REST ingest included); then the background
// subsystems that read the log (hub reader, detection engine, statistics,
// token enforcer, WebSocket poller, TLS reload); then the log; the data
// directory lock is released last. The node is a list of subsystems
// (app.go, subsystems) started in order and stopped in reverse
// (lifecycle), so this order is the start order reversed.
type Node struct {
	cfg    config.Config
	logger *slog.Logger

	mu      sync.Mutex
	started bool
	addr    string
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns
	err     error         // run's result, set before done closes
	stops   []string      // subsystems in the order they stopped
}

// New returns a node for cfg; nothing is touched before Start. A nil
// logger discards.
func New(cfg config.Config, logger *slog.Logger) *Node {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg, logger: logger, done: make(chan struct{})}
}

// Start brings the node up and returns once it is listening and ready, or
// with the error that stopped the start (nothing is left running then). ctx
// bounds the start only; the node runs until Shutdown (or until it fails:
// Done).
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.started {
		n.mu.Unlock()
		return errors.New("app: node already started")
	}
	n.started = true
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	n.mu.Unlock()

	ready := make(chan string, 1)
	go func() { // the node: ends when Shutdown cancels runCtx (or it fails)
		err := n.run(runCtx, n.cfg, n.logger, func(addr string) { ready <- addr })
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(n.done)
	}()
	select {
	case addr := <-ready:
		n.mu.Lock()
		n.addr = addr
		n.mu.Unlock()
		return nil
	case <-n.done:
		cancel()
		if err := n.Err(); err != nil {
			return err
		}
		return errors.New("app: node stopped during start")
	case <-ctx.Done():
		cancel()
		<-n.done
		return fmt.Errorf("app: start: %w", ctx.Err())
	}
}

// Addr is the bound HTTP address (after Start).
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// Done is closed when the node has stopped: after Shutdown, or on its own
// when a subsystem fails (Err says why).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is why the node stopped on its own (nil after a clean Shutdown).
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Shutdown stops the node in order and waits for it, at most until ctx
// ends (the node bounds each step itself: 10 s for connections and HTTP).
// It returns the error the node stopped with, if any.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	cancel := n.cancel
	n.mu.Unlock()
	if cancel == nil {
		return nil // never started
	}
	cancel()
	select {
	case <-n.done:
		return n.Err()
	case <-ctx.Done():
		return fmt.Errorf("app: shutdown: %w", ctx.Err())
	}
}

// Stopped lists the subsystems in the order they stopped.
func (n *Node) Stopped() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.stops...)
}

func (n *Node) stopped(name string) {
	n.mu.Lock()
	n.stops = append(n.stops, name)
	n.mu.Unlock()
	n.logger.Debug("stopped", "subsystem", name)
}

// Run starts a node and blocks until ctx ends, then shuts it down
// gracefully. onListen, if set, is called with the bound address. It is
// New, Start and Shutdown for callers that need no more.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger, onListen func(addr string)) error {
	n := New(cfg, logger)
	if err := n.Start(ctx); err != nil {
		return err
	}
	if onListen != nil {
		onListen(n.Addr())
	}
	select {
	case <-ctx.Done():
	case <-n.Done():
	}
	return n.Shutdown(context.Background())
}

// subsystem is one part of the node as a start/stop pair. start brings
// it up or fails having started nothing (nil: nothing to start); stop
// takes it down (nil: nothing of its own to stop, as the background
// subsystems that "background" stops together).
type subsystem struct {
	name  string
	start func(ctx context.Context) error
	stop  func()
}

// lifecycle walks a list of subsystems forward to start them and
// backward to stop the ones that started, each stop once.
type lifecycle struct {
	started []subsystem
	stopped bool
}

// start starts subs in order until one fails, and returns its error
// unwrapped (the subsystems' errors name the problem). The ones started
// before stay started: stop takes them down.
func (l *lifecycle) start(ctx context.Context, subs []subsystem) error {
	for _, s := range subs {
		if s.start != nil {
			if err := s.start(ctx); err != nil {
				return err
			}
		}
		l.started = append(l.started, s)
	}
	return nil
}

// stop stops the started subsystems in reverse order, once, and reports
// each that had a stop of its own to stopped.
func (l *lifecycle) stop(stopped func(name string)) {
	if l.stopped {
		return
	}
	l.stopped = true
	for i := len(l.started) - 1; i >= 0; i-- {
		if s := l.started[i]; s.stop != nil {
			s.stop()
			stopped(s.name)
		}
	}
}
