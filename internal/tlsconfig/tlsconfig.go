// Package tlsconfig owns the server side of Vigil's TLS (SPEC 14): loading
// the certificate, its key and the optional client CA; swapping them on
// SIGHUP, on request, or when the files change, without touching the
// connections already open; and the refusal to serve plain HTTP on an
// address other machines can reach.
//
// Every handshake asks for the current configuration (GetConfigForClient
// reads one atomic pointer), so a reload is one pointer swap: connections
// that finished their handshake keep their session, new ones get the new
// certificate. The pointer holds certificate and client CAs together, so
// a rotation of both is never half applied (GetCertificate alone could not
// swap the CAs); crypto/tls re-verifies a resumed session's client chain
// against the current CAs. A reload that fails (unreadable file, bad PEM, key that does
// not match the certificate, CA file without certificates) changes nothing
// and is logged.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options say where the files are and how changes are noticed.
type Options struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes every client present a certificate
	// signed by one of its CAs (tls.RequireAndVerifyClientCert). It adds a
	// requirement: the bearer token is still needed.
	ClientCAFile string
	// PollInterval is how often the files' size and modification time are
	// compared with the last load; 0 disables the polling (SIGHUP and
	// Requests still reload).
	PollInterval time.Duration
	// Requests are reloads asked for in-process, each answered with its
	// result on the channel sent, which must have room for the answer
	// (tests, programs embedding a node: a process-wide SIGHUP cannot
	// address one of several nodes).
	Requests <-chan chan error
	Logger   *slog.Logger
}

// Server holds the current TLS material of one listener.
type Server struct {
	opts    Options
	current atomic.Pointer[loaded]

	mu     sync.Mutex // serializes reloads; guards stamps
	stamps []fileStamp
}

// loaded is one consistent set of certificate, key and client CAs.
type loaded struct {
	config *tls.Config
	leaf   *x509.Certificate
}

type fileStamp struct {
	size    int64
	modTime time.Time
	err     bool
}

// New loads the files once; an error names the file and what is wrong
// with it, so a bad path fails the start with a clear message.
func New(opts Options) (*Server, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tls: --tls-cert and --tls-key must be given together")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	s.stamps = s.stat()
	l, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current.Store(l)
	s.logLoaded("tls certificate loaded", l)
	return s, nil
}

// Config is the listener's configuration: TLS 1.2 at least and the current
// certificate for every handshake. No ALPN protocol is offered, so HTTP
// clients speak HTTP/1.1 (WebSocket upgrades hijack an HTTP/1.1
// connection; an HTTP/2 stream cannot be hijacked), and NATS clients,
// which send no ALPN, can use the same configuration.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.current.Load().config, nil
		},
	}
}

// Leaf is the certificate new connections are given.
func (s *Server) Leaf() *x509.Certificate { return s.current.Load().leaf }

// Reload reads the files again and swaps them in; on error the previous
// certificate stays. SIGHUP, Requests and the file polling all call it.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Stamped before reading: a write that lands during the read changes
	// the stamp again and is picked up by the next poll.
	s.stamps = s.stat()
	l, err := s.load()
	if err != nil {
		return err
	}
	s.current.Store(l)
	return nil
}

// Run reloads on SIGHUP, on Requests and, every PollInterval, when a file
// changed, until ctx ends. The caller owns the goroutine.
func (s *Server) Run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if s.opts.PollInterval > 0 {
		t := time.NewTicker(s.opts.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = s.reloadAndLog("SIGHUP")
		case reply := <-s.opts.Requests:
			reply <- s.reloadAndLog("request")
		case <-tick:
			if s.changed() {
				_ = s.reloadAndLog("file changed")
			}
		}
	}
}

func (s *Server) reloadAndLog(why string) error {
	if err := s.Reload(); err != nil {
		s.opts.Logger.Error("tls reload failed; still serving the previous certificate", "trigger", why, "err", err,
			"serial", s.Leaf().SerialNumber.String())
		return err
	}
	s.logLoaded("tls certificate reloaded", s.current.Load(), "trigger", why)
	return nil
}

func (s *Server) logLoaded(msg string, l *loaded, extra ...any) {
	args := append([]any{"cert", s.opts.CertFile, "subject", l.leaf.Subject.String(),
		"serial", l.leaf.SerialNumber.String(), "not_after", l.leaf.NotAfter.UTC().Format(time.RFC3339)}, extra...)
	if s.opts.ClientCAFile != "" {
		args = append(args, "client_ca", s.opts.ClientCAFile)
	}
	s.opts.Logger.Info(msg, args...)
	if time.Now().After(l.leaf.NotAfter) {
		s.opts.Logger.Warn("tls certificate has expired; clients will refuse it", "cert", s.opts.CertFile,
			"not_after", l.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

func (s *Server) files() []string {
	f := []string{s.opts.CertFile, s.opts.KeyFile}
	if s.opts.ClientCAFile != "" {
		f = append(f, s.opts.ClientCAFile)
	}
	return f
}

// stat follows symbolic links, so a secret volume that swaps a link to a
// new directory counts as a change.
func (s *Server) stat() []fileStamp {
	files := s.files()
	out := make([]fileStamp, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			out[i] = fileStamp{err: true}
			continue
		}
		out[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	}
	return out
}

// changed reports whether a file's size or modification time differ from
// the last load attempt.
func (s *Server) changed() bool {
	now := s.stat()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range now {
		if now[i] != s.stamps[i] {
			return true
		}
	}
	return false
}

func (s *Server) load() (*loaded, error) {
	cert, err := tls.LoadX509KeyPair(s.opts.CertFile, s.opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", s.opts.CertFile, s.opts.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: certificate %s: %w", s.opts.CertFile, err)
		}
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if s.opts.ClientCAFile != "" {
		pem, err := os.ReadFile(s.opts.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificate in the file", s.opts.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return &loaded{config: cfg, leaf: leaf}, nil
}

// CheckListen refuses plain HTTP on an address other machines can reach:
// bearer tokens would cross the network in clear. Loopback is 127.0.0.0/8,
// ::1 and "localhost"; an empty host (":8080") or 0.0.0.0 listens on every
// interface.
func CheckListen(addr string, tlsOn, allowPlaintext bool) error {
	if tlsOn || allowPlaintext {
		return nil
	}
	where, err := exposed("--listen", addr)
	if err != nil || where == "" {
		return err
	}
	return fmt.Errorf("refusing to serve plain HTTP on %s (%s): bearer tokens and events "+
		"would cross the network in clear. Either serve HTTPS with --tls-cert FILE --tls-key FILE "+
		"(VIGIL_TLS_CERT/VIGIL_TLS_KEY, YAML tls.cert/tls.key), or, if a TLS-terminating proxy or a private "+
		"network protects the traffic, say so with --allow-plaintext (VIGIL_ALLOW_PLAINTEXT=true, YAML allow_plaintext: true)",
		addr, where)
}

// CheckNATSListen is CheckListen for the embedded NATS listener
// (--nats-listen): it serves TLS with the HTTP listener's certificate when
// there is one; without, it needs --allow-plaintext off loopback.
func CheckNATSListen(addr string, tlsOn, allowPlaintext bool) error {
	if addr == "" || tlsOn || allowPlaintext {
		return nil
	}
	where, err := exposed("--nats-listen", addr)
	if err != nil || where == "" {
		return err
	}
	return fmt.Errorf("refusing to open the embedded NATS listener on %s (%s) without TLS: its token and the events "+
		"would cross the network in clear. Either serve TLS with --tls-cert FILE --tls-key FILE (the NATS listener "+
		"uses the same certificate), or bind it to loopback (--nats-listen 127.0.0.1:4222), or, if a private network "+
		"protects the traffic, say so with --allow-plaintext (VIGIL_ALLOW_PLAINTEXT=true, YAML allow_plaintext: true)", addr, where)
}

// exposed describes where addr listens if that is not loopback only, or
// returns "".
func exposed(flag, addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s: %q is not host:port: %w", flag, addr, err)
	}
	switch {
	case IsLoopback(host):
		return "", nil
	case host == "" || host == "0.0.0.0" || host == "::":
		return "every interface, not only loopback", nil
	default:
		return host + " is not a loopback address", nil
	}
}

// IsLoopback reports whether host (from host:port) only accepts
// connections from this machine. Other host names are not resolved: a
// name is trusted to be loopback only if it is "localhost".
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 { // fe80::1%eth0
		host = host[:i]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
