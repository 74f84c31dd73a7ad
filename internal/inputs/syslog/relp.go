package syslog

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// RELP (the Reliable Event Logging Protocol of rsyslog's omrelp/imrelp,
// specified in librelp's doc/relp.md) carries syslog messages as commands
// the server answers one by one. Vigil answers "200 OK" to a message only
// after the log has acknowledged its event, so rsyslog → Vigil over RELP
// loses nothing across a crash of Vigil: rsyslog resends every command not
// answered when the connection broke.
//
// A frame is TXNR SP COMMAND SP DATALEN [SP DATA] LF: TXNR and DATALEN are
// 1–9 digits, COMMAND 1–32 letters, DATA exactly DATALEN octets.
//
// RELP over TLS (Options.TLS set) is TLS from the first byte, then the same
// frames inside: that is what librelp does for omrelp's tls="on". Its
// relpTcpConnect calls relpTcpConnectTLSInit right after connect() when TLS
// is enabled, with no RELP command before the handshake, and the rsyslog
// documentation of omrelp's and imrelp's "tls" parameter
// (https://www.rsyslog.com/doc/reference/parameters/omrelp-tls.html) says
// client and server must both have it "on" or both "off". No in-band
// upgrade (a "starttls" command) is involved; Vigil still answers any
// command it does not know "500 command not supported".
//
// What works with Debian 12's rsyslog 8.2302 and librelp 1.11
// (test/hostile TestRELPRsyslogTLS): omrelp checking Vigil's certificate
// with tls.caCert and tls.authMode="name" (tls.permittedPeer matched
// against its subjectAltName, then its CN) or "certvalid" (chain only).
// With the gnutls library (librelp's default tls.tlslib) omrelp must also
// have a certificate of its own (tls.myCert, tls.myPrivKey), although
// Vigil asks for none: without one its ClientHello offers TLS 1.3 suites
// but only TLS 1.0–1.2, so no cipher suite matches. With
// tls.tlslib="openssl" it needs none. Anonymous TLS (no tls.authMode)
// does not work: gnutls then offers only anonymous Diffie-Hellman suites,
// which crypto/tls does not have, and openssl without tls.caCert rejects
// Vigil's certificate (and disables the action).

// RELPInput is the metric label of the RELP listener.
const RELPInput = "relp"

// relpFrame is one RELP frame. data is valid until the next read.
type relpFrame struct {
	txnr int
	cmd  string
	data []byte
}

// errRELPFraming is a malformed frame: the connection is closed (the spec:
// "the peer that detects the problem closes the underlying connection").
var errRELPFraming = errors.New("relp: bad framing")

// relpReader reads RELP frames of at most max data octets.
type relpReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newRELPReader(r io.Reader, max int) *relpReader {
	return &relpReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// buffered reports whether more input is already read: the session then
// keeps collecting before it appends and answers.
func (rr *relpReader) buffered() bool { return rr.r.Buffered() > 0 }

// number reads 1–9 digits ended by sep (or LF when lfOK; ended reports it).
func (rr *relpReader) number(what string, sep byte, lfOK bool) (n int, ended bool, err error) {
	digits := 0
	for {
		c, err := rr.r.ReadByte()
		if err != nil {
			if digits == 0 && what == "transaction number" && errors.Is(err, io.EOF) {
				return 0, false, io.EOF // a clean end between frames
			}
			return 0, false, noEOF(err)
		}
		switch {
		case c >= '0' && c <= '9':
			if digits++; digits > 9 {
				return 0, false, fmt.Errorf("%w: %s longer than 9 digits", errRELPFraming, what)
			}
			n = n*10 + int(c-'0')
		case digits > 0 && c == sep:
			return n, false, nil
		case digits > 0 && lfOK && c == '\n':
			return n, true, nil
		default:
			return 0, false, fmt.Errorf("%w: %s: unexpected byte %q", errRELPFraming, what, c)
		}
	}
}

// next reads one frame.
func (rr *relpReader) next() (relpFrame, error) {
	var f relpFrame
	txnr, _, err := rr.number("transaction number", ' ', false)
	if err != nil {
		return f, err
	}
	f.txnr = txnr
	var cmd [32]byte
	n := 0
	for {
		c, err := rr.r.ReadByte()
		if err != nil {
			return f, noEOF(err)
		}
		if c == ' ' && n > 0 {
			break
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') || n == len(cmd) {
			return f, fmt.Errorf("%w: command: 1 to 32 letters", errRELPFraming)
		}
		cmd[n] = c
		n++
	}
	f.cmd = string(cmd[:n])
	size, ended, err := rr.number("data length", ' ', true)
	if err != nil {
		return f, err
	}
	if ended != (size == 0) {
		return f, fmt.Errorf("%w: data length %d does not match the data", errRELPFraming, size)
	}
	if size > rr.max {
		return f, fmt.Errorf("%w: %d octets of data, more than the limit of %d", ErrTooLarge, size, rr.max)
	}
	if size > 0 {
		if cap(rr.buf) < size {
			rr.buf = make([]byte, size)
		}
		f.data = rr.buf[:size]
		if _, err := io.ReadFull(rr.r, f.data); err != nil {
			return f, noEOF(err)
		}
		if c, err := rr.r.ReadByte(); err != nil || c != '\n' {
			if err != nil {
				return f, noEOF(err)
			}
			return f, fmt.Errorf("%w: no LF after %d octets of data", errRELPFraming, size)
		}
	}
	return f, nil
}

// appendRELP appends the frame "txnr cmd len[ data]\n" to b.
func appendRELP(b []byte, txnr int, cmd, data string) []byte {
	b = strconv.AppendInt(b, int64(txnr), 10)
	b = append(b, ' ')
	b = append(b, cmd...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(data)), 10)
	if data != "" {
		b = append(b, ' ')
		b = append(b, data...)
	}
	return append(b, '\n')
}

// relpOffers is the server's answer to "open": RELP version 0 (what
// librelp speaks), and syslog as the one command it takes.
const relpOffers = "200 OK\nrelp_version=0\nrelp_software=vigil\ncommands=syslog"

// relpPending is a received message not answered yet.
type relpPending struct {
	txnr int
	ev   *event.Event
}

// serveRELP runs one RELP session: messages are collected while more input
// is buffered (up to BatchSize or half the batch byte limit), appended in
// one batch, and each answered in order once the log has acknowledged it.
func (s *Server) serveRELP(c net.Conn) {
	defer s.connDone(c)
	remote := c.RemoteAddr().String()
	if tc, ok := c.(*tls.Conn); ok && !s.handshake(tc, RELPInput, remote) {
		return
	}
	rr := newRELPReader(c, s.opts.MaxMessage)
	p := NewParser(s.opts.Location)
	var (
		out     []byte
		pending []relpPending
		size    int // data octets pending
		open    bool
	)
	maxBytes := s.opts.Ingest.Limits().MaxBatchBytes / 2
	for {
		if err := c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout)); err != nil {
			return
		}
		f, err := rr.next()
		if err != nil {
			s.relpEnd(remote, err)
			return
		}
		switch f.cmd {
		case "open":
			if open {
				out = appendRELP(out, f.txnr, "rsp", "500 protocol error: connection already open")
				_, _ = c.Write(out)
				s.m.Error(s.log, RELPInput, "protocol", 1, "relp: second open on a session", "peer", remote)
				return
			}
			if !bytes.Contains(f.data, []byte("relp_version")) {
				out = appendRELP(out, f.txnr, "rsp", "500 no relp_version offer")
				_, _ = c.Write(out)
				s.m.Error(s.log, RELPInput, "protocol", 1, "relp: open without relp_version", "peer", remote)
				return
			}
			open = true
			out = appendRELP(out, f.txnr, "rsp", relpOffers)
		case "syslog":
			if !open {
				s.m.Error(s.log, RELPInput, "protocol", 1, "relp: syslog before open", "peer", remote)
				return
			}
			s.m.Received.WithLabelValues(RELPInput).Inc()
			start := time.Now()
			msg, ok := p.Parse(trimTrailer(f.data), remote)
			if !ok {
				s.m.Error(s.log, RELPInput, "not_syslog", 1, "relp: message without a valid <PRI> header, stored as raw text", "peer", remote)
			}
			ev := s.chain.Map(&msg)
			s.fit(ev)
			s.m.ParseTime.WithLabelValues(RELPInput).Observe(time.Since(start).Seconds())
			pending = append(pending, relpPending{f.txnr, ev})
			size += len(f.data)
		case "close":
			if out, err = s.relpAppend(out, pending); err != nil {
				s.relpEnd(remote, err)
				return
			}
			out = appendRELP(out, f.txnr, "rsp", "")
			_, _ = c.Write(out)
			return
		default:
			out = appendRELP(out, f.txnr, "rsp", "500 command not supported")
		}
		if len(pending) > 0 && (!rr.buffered() || len(pending) >= s.opts.BatchSize || size >= maxBytes) {
			if out, err = s.relpAppend(out, pending); err != nil {
				s.relpEnd(remote, err)
				return
			}
			clear(pending)
			pending, size = pending[:0], 0
		}
		if len(out) > 0 && !rr.buffered() {
			if err := c.SetWriteDeadline(time.Now().Add(s.opts.IdleTimeout)); err != nil {
				return
			}
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// relpAppend appends the pending messages' events and adds their answers
// to out in order: 200 for each event the log acknowledged, 500 with the
// reason for an event validation refused (never stored; rsyslog reports
// it). Any other failure returns an error and no answer: the connection is
// closed and rsyslog sends the unanswered messages again.
func (s *Server) relpAppend(out []byte, pending []relpPending) ([]byte, error) {
	if len(pending) == 0 {
		return out, nil
	}
	batch := make([]*event.Event, len(pending))
	for i, p := range pending {
		batch[i] = p.ev
	}
	refused, _, err := s.publishValid(RELPInput, batch)
	if err != nil {
		return out, fmt.Errorf("relp: append: %w", err)
	}
	for i, p := range pending {
		if r, ok := refused[i]; ok {
			out = appendRELP(out, p.txnr, "rsp", "500 event refused: "+strings.ReplaceAll(r, "\n", " "))
			continue
		}
		out = appendRELP(out, p.txnr, "rsp", "200 OK")
	}
	return out, nil
}

// relpEnd counts and logs why a session ended; a clean close or the
// server's own shutdown is not an error.
func (s *Server) relpEnd(remote string, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.Is(err, ErrTooLarge):
		s.m.Dropped.WithLabelValues(RELPInput).Inc()
		s.m.Error(s.log, RELPInput, "too_large", 1, "relp: connection closed: message longer than the limit", "peer", remote, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		s.log.Debug("relp: idle connection closed", "peer", remote, "idle", s.opts.IdleTimeout)
	case errors.Is(err, errRELPFraming), errors.Is(err, io.ErrUnexpectedEOF):
		s.m.Error(s.log, RELPInput, "framing", 1, "relp: connection closed: bad framing", "peer", remote, "err", err)
	default:
		s.m.Error(s.log, RELPInput, "append", 1, "relp: connection closed unanswered (the sender resends)", "peer", remote, "err", err)
	}
}

// handshake runs the TLS handshake of a connection to input's listener
// (RFC 5425 syslog or RELP) within the idle timeout (here, in the
// connection's goroutine, so a slow or silent peer holds up nobody else);
// false, counted as "tls_handshake", when it fails: a cleartext client, a
// client that does not trust the certificate, or one that offers no
// cipher suite Vigil has.
func (s *Server) handshake(c *tls.Conn, input, remote string) bool {
	if err := c.SetDeadline(time.Now().Add(s.opts.IdleTimeout)); err != nil {
		return false
	}
	if err := c.Handshake(); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			s.m.Error(s.log, input, "tls_handshake", 1, input+": connection closed: TLS handshake failed", "peer", remote, "err", err)
		}
		return false
	}
	return c.SetDeadline(time.Time{}) == nil
}
