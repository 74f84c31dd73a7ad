// Package syslog receives syslog over UDP, TCP and TLS (RFC 5424 and RFC
// 3164 messages; RFC 6587 octet-counting or newline framing; RFC 5425 TLS)
// and publishes each message as an event through the one ingest path
// (issue 9). Messages are decoded with github.com/leodido/go-syslog and
// mapped by an inputs.Chain: the caller's mappers first, then the built-in
// CEF and Linux authentication parsers; a message no mapper claims is
// stored as system.syslog.unparsed with its raw text.
//
// Syslog has no acknowledgement: a UDP datagram may be lost anywhere, and
// a TCP message is Vigil's once read from the socket (it is then batched,
// up to BatchSize events or BatchWait, and appended).
package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
	"github.com/vigil-sec/vigil/internal/inputs/authlog"
	"github.com/vigil-sec/vigil/internal/inputs/cef"
)

// Publisher is the ingest path (ingest.Service).
type Publisher interface {
	Publish(ctx context.Context, p *auth.Principal, events []*event.Event) ([]domain.Ack, error)
	Limits() event.Limits
}

// Options configure a listener. Zero limits take the defaults.
type Options struct {
	Listen string // host:port for UDP and TCP (port 0: one free port for both)
	Tenant string // the tenant every event is stamped with (default "default")
	// Allow lists the peers that may send; empty allows every peer. A
	// refused TCP connection is closed at once, a refused datagram dropped;
	// both are counted (reason "refused").
	Allow []netip.Prefix
	// TLS, when set, serves RFC 5425 syslog over TLS on the TCP port and
	// opens no UDP socket (a plaintext side door would defeat it).
	TLS *tls.Config
	// Mappers run before the built-in ones (user-defined mappings).
	Mappers []inputs.Mapper
	// Location is the zone RFC 3164 timestamps are read in (nil: UTC).
	Location *time.Location
	// RELPListen, when set, also serves RELP (rsyslog's omrelp) on this
	// TCP address: each message is answered after it is in the log.
	// Listen may then be empty (RELP only). With TLS set, RELP is served
	// over TLS from the first byte (omrelp's tls="on"), never in clear.
	RELPListen string

	MaxMessage  int           // bytes per message (default 64 KiB); longer: counted, TCP connection closed
	MaxConns    int           // concurrent TCP connections (default 1000)
	IdleTimeout time.Duration // a TCP connection silent this long is closed (default 5m)
	BatchSize   int           // events per append (default 500)
	BatchWait   time.Duration // longest wait to fill a batch (default 10ms)

	Ingest  Publisher
	Metrics *inputs.Metrics // nil: unregistered metrics
	Logger  *slog.Logger
}

// Defaults of Options.
const (
	DefaultMaxMessage  = 64 << 10
	DefaultMaxConns    = 1000
	DefaultIdleTimeout = 5 * time.Minute
	DefaultBatchSize   = 500
	DefaultBatchWait   = 10 * time.Millisecond
	publishers         = 4 // concurrent appends: batches from many connections overlap the log's latency
)

// Builtin returns the built-in mappers, in the order the chain tries them:
// CEF first (a CEF line is unambiguous), then the Linux authentication
// parsers (sshd, sudo, PAM).
func Builtin() []inputs.Mapper {
	return append([]inputs.Mapper{cef.Mapper{}}, authlog.Mappers()...)
}

// Server is a running syslog listener. Stop it with Close.
type Server struct {
	opts  Options
	chain inputs.Chain
	p     *auth.Principal
	log   *slog.Logger
	m     *inputs.Metrics

	tcp  net.Listener // nil when only RELP is served
	udp  net.PacketConn
	relp net.Listener

	events chan *event.Event
	abort  chan struct{} // closed when Close gives up waiting: blocked senders drop

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	readers sync.WaitGroup // accept loop, connections, UDP reader
	pubs    sync.WaitGroup // publishers
}

// Start binds the TCP (and, without TLS, UDP) socket on opts.Listen and
// starts serving. The goroutines it starts end in Close.
func Start(opts Options) (*Server, error) {
	if opts.Ingest == nil {
		return nil, errors.New("syslog: no ingest service")
	}
	if opts.Tenant == "" {
		opts.Tenant = "default"
	}
	if !event.ValidTenant(opts.Tenant) {
		return nil, fmt.Errorf("syslog: tenant %q: must be letters, digits, '-' or '_'", opts.Tenant)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.MaxMessage, DefaultMaxMessage)
	def(&opts.MaxConns, DefaultMaxConns)
	def(&opts.BatchSize, DefaultBatchSize)
	if lim := opts.Ingest.Limits().MaxBatchCount; lim > 0 && opts.BatchSize > lim {
		opts.BatchSize = lim
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.BatchWait <= 0 {
		opts.BatchWait = DefaultBatchWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Metrics == nil {
		opts.Metrics, _ = inputs.NewMetrics(nil) // unregistered: cannot fail
	}
	s := &Server{
		opts:   opts,
		chain:  append(append(inputs.Chain{}, opts.Mappers...), Builtin()...),
		log:    opts.Logger,
		m:      opts.Metrics,
		events: make(chan *event.Event, 4*opts.BatchSize),
		abort:  make(chan struct{}),
		conns:  map[net.Conn]struct{}{},
	}
	if opts.Listen == "" && opts.RELPListen == "" {
		return nil, errors.New("syslog: neither a syslog nor a RELP address to listen on")
	}
	id := "syslog:"
	if opts.Listen != "" {
		if err := s.bind(); err != nil {
			return nil, err
		}
		id += s.tcp.Addr().String()
	}
	if opts.RELPListen != "" {
		ln, err := net.Listen("tcp", opts.RELPListen)
		if err != nil {
			if s.tcp != nil {
				s.tcp.Close()
			}
			if s.udp != nil {
				s.udp.Close()
			}
			return nil, fmt.Errorf("syslog: listen relp %s: %w", opts.RELPListen, err)
		}
		if opts.TLS != nil {
			// The same configuration as the syslog TLS listener: one
			// certificate, and its reloads apply to both (see relpTLS).
			ln = tls.NewListener(ln, opts.TLS)
		}
		s.relp = ln
		id += " relp:" + ln.Addr().String()
	}
	s.p = &auth.Principal{ID: id, Name: "syslog listener", Role: auth.RolePublisher, Tenant: opts.Tenant}
	for range publishers {
		s.pubs.Add(1)
		go s.publish() // ends when Close closes s.events
	}
	if s.tcp != nil {
		s.readers.Add(1)
		go s.accept(s.tcp, Input, s.serveConn) // ends when Close closes the listener
	}
	if s.relp != nil {
		s.readers.Add(1)
		go s.accept(s.relp, RELPInput, s.serveRELP) // ends when Close closes the listener
	}
	if s.udp != nil {
		s.readers.Add(1)
		go s.readUDP() // ends when Close closes the socket
	}
	return s, nil
}

// bind opens TCP, then UDP on the same port (with port 0, the port TCP
// got; retried a few times if another process holds that UDP port).
func (s *Server) bind() error {
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", s.opts.Listen)
		if err != nil {
			return fmt.Errorf("syslog: listen tcp %s: %w", s.opts.Listen, err)
		}
		if s.opts.TLS != nil {
			s.tcp = tls.NewListener(ln, s.opts.TLS)
			return nil
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			s.tcp, s.udp = ln, pc
			return nil
		}
		ln.Close()
		_, port, _ := net.SplitHostPort(s.opts.Listen)
		if port != "0" || attempt >= 5 {
			return fmt.Errorf("syslog: listen udp %s: %w", s.opts.Listen, err)
		}
	}
}

// Addr is the bound TCP address (the UDP one has the same port), nil when
// only RELP is served.
func (s *Server) Addr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// RELPAddr is the bound RELP address, nil without RELP.
func (s *Server) RELPAddr() net.Addr {
	if s.relp == nil {
		return nil
	}
	return s.relp.Addr()
}

// UDPAddr is the bound UDP address, nil with TLS.
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// Close stops accepting, closes every connection, appends what was already
// read (waiting until ctx ends at most) and returns once every goroutine
// has ended.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if s.tcp != nil {
		s.tcp.Close()
	}
	if s.relp != nil {
		s.relp.Close()
	}
	if s.udp != nil {
		s.udp.Close()
	}
	done := make(chan struct{})
	go func() { // ends when readers and publishers have (abort bounds both)
		s.readers.Wait()
		close(s.events)
		s.pubs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		close(s.abort)
		<-done
		return fmt.Errorf("syslog: close: %w (messages still queued were dropped)", ctx.Err())
	}
}

func (s *Server) allowed(addr net.Addr) bool {
	if len(s.opts.Allow) == 0 {
		return true
	}
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.opts.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// accept serves the connections of ln with serve (its goroutine, one per
// connection, ends at EOF, an error, the idle timeout or Close); input is
// the metric label.
func (s *Server) accept(ln net.Listener, input string, serve func(net.Conn)) {
	defer s.readers.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			// EMFILE and the like: back off instead of spinning.
			s.m.Error(s.log, input, "accept", 1, input+": accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !s.allowed(c.RemoteAddr()) {
			s.m.Error(s.log, input, "refused", 1, input+": connection refused: peer not in the allow-list", "peer", c.RemoteAddr().String())
			c.Close()
			continue
		}
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			c.Close()
			continue
		case len(s.conns) >= s.opts.MaxConns:
			s.mu.Unlock()
			s.m.Error(s.log, input, "too_many_connections", 1, input+": connection closed: too many connections", "peer", c.RemoteAddr().String(), "max", s.opts.MaxConns)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.readers.Add(1)
		go serve(c)
	}
}

// connDone ends the bookkeeping of a served connection: it leaves the
// open set, is closed, and its reader is accounted done (last, so that
// Close waiting on readers sees the set already without it).
func (s *Server) connDone(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	s.readers.Done()
}

func (s *Server) serveConn(c net.Conn) {
	defer s.connDone(c)
	remote := c.RemoteAddr().String()
	// Handshake first, so that a failed one is counted as such rather
	// than as bad framing on the first read.
	if tc, ok := c.(*tls.Conn); ok && !s.handshake(tc, Input, remote) {
		return
	}
	p := NewParser(s.opts.Location)
	fr := NewFrameReader(c, s.opts.MaxMessage)
	for {
		if err := c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout)); err != nil {
			return
		}
		b, err := fr.Next()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case errors.Is(err, ErrTooLarge):
				s.m.Received.WithLabelValues(Input).Inc()
				s.m.Dropped.WithLabelValues(Input).Inc()
				s.m.Error(s.log, Input, "too_large", 1, "syslog: connection closed: message longer than the limit", "peer", remote, "max_bytes", s.opts.MaxMessage, "err", err)
			case errors.As(err, &ne) && ne.Timeout():
				s.log.Debug("syslog: idle connection closed", "peer", remote, "idle", s.opts.IdleTimeout)
			default:
				s.m.Error(s.log, Input, "framing", 1, "syslog: connection closed: bad framing", "peer", remote, "err", err)
			}
			return
		}
		if len(b) == 0 {
			continue // an empty octet-counted frame carries nothing
		}
		if !s.handle(p, b, remote) {
			return
		}
	}
}

func (s *Server) readUDP() {
	defer s.readers.Done()
	buf := make([]byte, s.opts.MaxMessage+1)
	p := NewParser(s.opts.Location)
	for {
		n, addr, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.m.Error(s.log, Input, "udp_read", 1, "syslog: udp read", "err", err)
			continue
		}
		if !s.allowed(addr) {
			s.m.Error(s.log, Input, "refused", 1, "syslog: datagram dropped: peer not in the allow-list", "peer", addr.String())
			continue
		}
		if n > s.opts.MaxMessage {
			s.m.Received.WithLabelValues(Input).Inc()
			s.m.Dropped.WithLabelValues(Input).Inc()
			s.m.Error(s.log, Input, "too_large", 1, "syslog: datagram dropped: longer than the limit", "peer", addr.String(), "max_bytes", s.opts.MaxMessage)
			continue
		}
		// A datagram may carry a trailing newline (logger -d adds none,
		// some devices do).
		b := trimTrailer(buf[:n])
		if len(b) == 0 {
			continue
		}
		if !s.handle(p, b, addr.String()) {
			return
		}
	}
}

func trimTrailer(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

// handle decodes and maps one message and queues its event; false when
// the server is aborting.
func (s *Server) handle(p *Parser, b []byte, remote string) bool {
	s.m.Received.WithLabelValues(Input).Inc()
	start := time.Now()
	msg, ok := p.Parse(b, remote)
	if !ok {
		// Not syslog at all: still stored (system.syslog.unparsed with the
		// raw line), and counted so the operator can fix the sender.
		s.m.Error(s.log, Input, "not_syslog", 1, "syslog: message without a valid <PRI> header, stored as raw text", "peer", remote)
	}
	ev := s.chain.Map(&msg)
	s.fit(ev)
	s.m.ParseTime.WithLabelValues(Input).Observe(time.Since(start).Seconds())
	select {
	case s.events <- ev:
		return true
	case <-s.abort:
		s.m.Dropped.WithLabelValues(Input).Inc()
		return false
	}
}

// fit shortens a message longer than the event limit (a 60 KiB line is a
// valid syslog message but not a valid event string) instead of losing
// the whole event; data.truncated says so.
func (s *Server) fit(ev *event.Event) {
	max := s.opts.Ingest.Limits().MaxStringLen
	if max <= 0 || len(ev.Message) <= max {
		return
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(ev.Message[cut]) {
		cut--
	}
	ev.Message = ev.Message[:cut]
	ev.Tags = append(ev.Tags, "truncated")
}

// publish batches queued events (up to BatchSize, or what arrived within
// BatchWait of the first) and appends them through ingest.
func (s *Server) publish() {
	defer s.pubs.Done()
	batch := make([]*event.Event, 0, s.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		ev, ok := <-s.events
		if !ok {
			return
		}
		batch = append(batch[:0], ev)
		timer.Reset(s.opts.BatchWait)
	fill:
		for len(batch) < s.opts.BatchSize {
			select {
			case ev, ok := <-s.events:
				if !ok {
					break fill
				}
				batch = append(batch, ev)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		s.append(batch)
		clear(batch) // drop references for the GC
	}
}

// append publishes a batch. An invalid event (too large, a mapper's bad
// field) must not take the others down: they are appended without it.
func (s *Server) append(batch []*event.Event) {
	if _, lost, err := s.publishValid(Input, batch); err != nil {
		s.m.Dropped.WithLabelValues(Input).Add(float64(lost))
		s.m.Error(s.log, Input, "append", lost, "syslog: append failed, events lost", "events", lost, "err", err)
	}
}

// publishValid appends batch through ingest. When validation refuses some
// events (named by index), they are counted as dropped, logged, and the
// others appended without them; refused maps each left-out index of batch
// to its reason. err is set when the log did not take the unstored others;
// what that means is the caller's (syslog loses them, RELP leaves them
// unanswered so the sender resends).
func (s *Server) publishValid(input string, batch []*event.Event) (refused map[int]string, unstored int, err error) {
	idx := make([]int, len(batch)) // position in the batch sent → position in batch
	for i := range idx {
		idx[i] = i
	}
	for attempt := 0; len(batch) > 0; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		acks, err := s.opts.Ingest.Publish(ctx, s.p, batch)
		cancel()
		if err == nil {
			s.m.Stored.WithLabelValues(input).Add(float64(len(acks)))
			return refused, 0, nil
		}
		var be *event.BatchError
		if !errors.As(err, &be) || be.TooLarge || attempt > 0 {
			return refused, len(batch), err
		}
		bad := map[int]string{}
		for _, pr := range be.Problems {
			bad[pr.Index] = strings.TrimSpace(pr.Field + " " + pr.Reason)
		}
		refused = map[int]string{}
		keepB, keepI := batch[:0:0], idx[:0:0]
		for j, ev := range batch {
			if r, ok := bad[j]; ok {
				refused[idx[j]] = r
				continue
			}
			keepB, keepI = append(keepB, ev), append(keepI, idx[j])
		}
		batch, idx = keepB, keepI
		s.m.Dropped.WithLabelValues(input).Add(float64(len(refused)))
		s.m.Error(s.log, input, "invalid_event", len(refused), input+": events refused by validation", "first", describe(be))
	}
	return refused, 0, nil
}

func describe(be *event.BatchError) string {
	if len(be.Problems) == 0 {
		return be.Error()
	}
	p := be.Problems[0]
	return strings.TrimSpace(fmt.Sprintf("%s %s", p.Field, p.Reason))
}
