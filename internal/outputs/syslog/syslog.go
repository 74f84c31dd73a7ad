// Package syslog is the syslog output: RFC 5424 messages over TCP with
// octet-counting framing (RFC 6587 3.4.1), over TLS (RFC 5425, the same
// framing) or over UDP (RFC 5426, one message per datagram), the message
// body being the event's JSON or an ArcSight CEF record, to forward into
// an existing SIEM.
//
// Syslog has no acknowledgement: a message is "delivered" once written to
// the connection. Before writing on a connection it already used, the
// sender checks that the receiver has not closed it (syslog receivers
// never send anything, so a readable EOF means closed) and reconnects,
// which catches the common loss — writing into a connection the receiver
// dropped while idle. Each message carries the event id as a structured
// data parameter so that the SIEM can drop repeats.
package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// sdID is the structured data element Vigil writes; 32473 is the private
// enterprise number reserved for documentation (RFC 5612).
const sdID = "vigil@32473"

const (
	dialTimeout  = 10 * time.Second
	writeTimeout = 30 * time.Second
	maxBatch     = 100
)

// Options are the syslog output's own keys.
type Options struct {
	// Address is the receiver's host:port.
	Address string `yaml:"address"`
	// Transport is tcp (default), tls or udp.
	Transport string `yaml:"transport"`
	// Format of the message body: json (default, the event as served
	// by the API) or cef.
	Format string `yaml:"format"`
	// Facility by name (default local0).
	Facility string `yaml:"facility"`
	// Hostname and AppName of the RFC 5424 header (default: the host's
	// name and "vigil").
	Hostname string `yaml:"hostname"`
	AppName  string `yaml:"app_name"`
	// CAFile and ServerName check the receiver's certificate (tls).
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	// UDPMaxSize truncates a datagram's message (default 8192 bytes;
	// RFC 5426 3.2: receivers should take 2048, may take more).
	UDPMaxSize int `yaml:"udp_max_size"`
}

var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Type is the syslog output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "syslog",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
	}
}

type sender struct {
	opts     Options
	facility int
	tls      *tls.Config
	env      outputs.Env

	mu   sync.Mutex // one writer on the connection at a time
	conn net.Conn
	used bool // conn has carried a message already
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("syslog: options are %T, not *syslog.Options", o)
	}
	s := &sender{opts: *opts, env: env}
	host, port, err := net.SplitHostPort(opts.Address)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("address %q: must be host:port", opts.Address)
	}
	switch opts.Transport {
	case "":
		s.opts.Transport = "tcp"
	case "tcp", "udp":
	case "tls":
		name := opts.ServerName
		if name == "" {
			name = host
		}
		if s.tls, err = outhttp.TLSClient(opts.CAFile, name); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("transport %q: must be tcp, tls or udp", opts.Transport)
	}
	switch opts.Format {
	case "":
		s.opts.Format = "json"
	case "json", "cef":
	default:
		return nil, fmt.Errorf("format %q: must be json or cef", opts.Format)
	}
	if opts.Facility == "" {
		s.opts.Facility = "local0"
	}
	if s.facility, ok = facilities[s.opts.Facility]; !ok {
		return nil, fmt.Errorf("facility %q: not a syslog facility name (kern, user, ..., authpriv, local0..local7)", opts.Facility)
	}
	if s.opts.Hostname == "" {
		s.opts.Hostname, _ = os.Hostname()
	}
	if s.opts.AppName == "" {
		s.opts.AppName = "vigil"
	}
	if s.opts.UDPMaxSize == 0 {
		s.opts.UDPMaxSize = 8192
	}
	if s.opts.UDPMaxSize < 480 || s.opts.UDPMaxSize > 65000 {
		return nil, fmt.Errorf("udp_max_size %d: must be 480..65000", s.opts.UDPMaxSize)
	}
	if s.env.Now == nil {
		s.env.Now = time.Now
	}
	return s, nil
}

// MaxBatch lets the core hand several messages per Send: they are written
// in one go on one connection.
func (s *sender) MaxBatch() int { return maxBatch }

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Transport == "udp" {
		return s.sendUDP(ctx, msgs)
	}
	var frames []byte
	for _, m := range msgs {
		line := s.Format(m)
		frames = strconv.AppendInt(frames, int64(len(line)), 10)
		frames = append(frames, ' ')
		frames = append(frames, line...)
	}
	if s.conn != nil && s.used && !alive(s.conn) {
		s.closeConn()
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(writeTimeout)
	}
	s.conn.SetWriteDeadline(deadline)
	if _, err := s.conn.Write(frames); err != nil {
		s.closeConn()
		return fmt.Errorf("syslog: writing to %s: %w", s.opts.Address, err)
	}
	s.used = true
	s.env.Logger.Debug("syslog: delivered", "messages", len(msgs), "first_event_id", outhttp.EventID(msgs[0]))
	return nil
}

func (s *sender) sendUDP(ctx context.Context, msgs []outputs.Message) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("syslog: %s: %w", s.opts.Address, err)
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, m := range msgs {
		line := s.Format(m)
		if len(line) > s.opts.UDPMaxSize {
			line = line[:s.opts.UDPMaxSize]
		}
		if _, err := conn.Write(line); err != nil {
			return fmt.Errorf("syslog: sending to %s: %w", s.opts.Address, err)
		}
	}
	return nil
}

func (s *sender) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("syslog: connecting to %s: %w", s.opts.Address, err)
	}
	if s.tls != nil {
		tc := tls.Client(conn, s.tls)
		hctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			conn.Close()
			return fmt.Errorf("syslog: TLS with %s: %w", s.opts.Address, err)
		}
		conn = tc
	}
	s.conn, s.used = conn, false
	return nil
}

// alive reports whether the receiver has kept conn open: a syslog
// receiver sends nothing, so a read that does not time out at once means
// EOF or a reset.
func alive(conn net.Conn) bool {
	conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := conn.Read(b[:])
	conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, io.EOF)
}

func (s *sender) closeConn() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeConn()
	return nil
}

// Severity is the RFC 5424 severity of a SPEC severity.
func Severity(sev string) int {
	switch sev {
	case "critical":
		return 2
	case "high":
		return 3
	case "medium":
		return 4
	case "low":
		return 5
	default:
		return 6
	}
}

// Format renders m as one RFC 5424 message:
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
func (s *sender) Format(m outputs.Message) []byte {
	sev := outhttp.Severity(m)
	ts := s.env.Now()
	typ := ""
	if m.Event != nil {
		ts = m.Event.Time
		typ = m.Event.Type
	}
	b := make([]byte, 0, 512+len(m.Body))
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.facility*8+Severity(sev)), 10)
	b = append(b, ">1 "...)
	b = append(b, ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00")...)
	b = append(b, ' ')
	b = append(b, headerField(s.opts.Hostname, 255)...)
	b = append(b, ' ')
	b = append(b, headerField(s.opts.AppName, 48)...)
	b = append(b, " - "...)
	b = append(b, headerField(typ, 32)...)
	b = append(b, " ["+sdID...)
	param := func(k, v string) {
		if v != "" {
			b = append(b, ' ')
			b = append(b, k...)
			b = append(b, `="`...)
			b = append(b, sdValue(v)...)
			b = append(b, '"')
		}
	}
	param("event_id", outhttp.EventID(m))
	if m.Event != nil {
		param("tenant", m.Event.Tenant)
	}
	param("severity", sev)
	if d := m.Detection; d != nil {
		param("detection_id", d.ID)
		param("status", d.Status)
	}
	if m.Test {
		param("test", "true")
	}
	b = append(b, "] "...)
	if s.opts.Format == "cef" {
		b = append(b, CEF(m)...)
	} else {
		b = append(b, m.Body...)
	}
	return b
}

// headerField keeps an RFC 5424 header field to PRINTUSASCII (33..126)
// and its maximum length; an empty one is the NILVALUE "-".
func headerField(v string, max int) string {
	var b strings.Builder
	for i := 0; i < len(v) && b.Len() < max; i++ {
		if c := v[i]; c >= 33 && c <= 126 {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdValue escapes a PARAM-VALUE: '"', '\' and ']' get a backslash
// (RFC 5424 6.3.3).
func sdValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(strings.ToValidUTF8(v, "\uFFFD"))
}
