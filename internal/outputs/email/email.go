// Package email is the email output: SMTP submission with STARTTLS (or
// implicit TLS) and authentication, through github.com/emersion/go-smtp's
// client. It never sends over a plaintext connection: the password and
// the alerts are not for the network to read.
//
// Detections the core groups (group_wait) go out in one mail. With
// digest_interval set (a common key of the core, Env.DigestInterval), at
// most one mail per interval leaves: the core holds the alerts of the
// interval unacknowledged and hands them to Send together, so the sender
// keeps no state and a crash (kill -9) before the digest was mailed
// loses nothing: the alerts are delivered again after the restart.
//
// Each mail carries a Message-ID derived from the event ids it lists, so
// a mail repeated after a retry has the same Message-ID and mail systems
// that deduplicate drop it.
package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

// Limits: a subject is at most maxSubject bytes before encoding (a
// digest holds at most outputs.MaxDigest alerts, bounded by the core).
const (
	maxSubject  = 200
	dialTimeout = 30 * time.Second
)

// Options are the email output's own keys.
type Options struct {
	// Host and Port of the submission server (port default 587 for
	// starttls, 465 for tls).
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is starttls (default) or tls (implicit TLS, "SMTPS").
	TLS string `yaml:"tls"`
	// CAFile, if set, is the CA bundle the server certificate is checked
	// against instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// Username and Password (as ${ENV} or PasswordFile) for AUTH PLAIN;
	// no username: no authentication.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// From is the sender address, To the recipients.
	From string   `yaml:"from"`
	To   []string `yaml:"to"`
	// SubjectPrefix starts every subject (default "[Vigil]").
	SubjectPrefix string `yaml:"subject_prefix"`
	// digest_interval is a common key of the core (Env.DigestInterval).
}

// Type is the email output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "email",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
		Groups:     true,
	}
}

type sender struct {
	opts     Options
	addr     string
	from     *mail.Address
	to       []*mail.Address
	password outputs.Secret
	tls      *tls.Config
	env      outputs.Env
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("email: options are %T, not *email.Options", o)
	}
	s := &sender{opts: *opts, env: env}
	if opts.Host == "" {
		return nil, errors.New("host is required")
	}
	switch opts.TLS {
	case "", "starttls":
		s.opts.TLS = "starttls"
		if s.opts.Port == 0 {
			s.opts.Port = 587
		}
	case "tls":
		if s.opts.Port == 0 {
			s.opts.Port = 465
		}
	default:
		return nil, fmt.Errorf("tls %q: must be starttls or tls (mail is never sent in plaintext)", opts.TLS)
	}
	if s.opts.Port < 1 || s.opts.Port > 65535 {
		return nil, fmt.Errorf("port %d: out of range", s.opts.Port)
	}
	s.addr = net.JoinHostPort(opts.Host, strconv.Itoa(s.opts.Port))
	var err error
	if s.tls, err = outhttp.TLSClient(opts.CAFile, opts.Host); err != nil {
		return nil, err
	}
	if s.password, err = outputs.ResolveSecret("password", opts.Password, opts.PasswordFile); err != nil {
		return nil, err
	}
	if (s.password != "") != (opts.Username != "") {
		return nil, errors.New("username and password (or password_file) go together")
	}
	if s.from, err = mail.ParseAddress(opts.From); err != nil {
		return nil, fmt.Errorf("from %q: %w", opts.From, err)
	}
	if len(opts.To) == 0 {
		return nil, errors.New("to: at least one recipient is required")
	}
	for i, t := range opts.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to[%d] %q: %w", i, t, err)
		}
		s.to = append(s.to, a)
	}
	if s.opts.SubjectPrefix == "" {
		s.opts.SubjectPrefix = "[Vigil]"
	}
	if strings.ContainsAny(s.opts.SubjectPrefix, "\r\n") {
		return nil, errors.New("subject_prefix: must be one line")
	}
	if s.env.Now == nil {
		s.env.Now = time.Now
	}
	return s, nil
}

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	var tests, rest []outputs.Message
	for _, m := range msgs {
		if m.Test {
			tests = append(tests, m)
		} else {
			rest = append(rest, m)
		}
	}
	// A test message is never held back by a digest.
	if len(tests) > 0 {
		if err := s.mail(ctx, tests, false); err != nil {
			return err
		}
	}
	if len(rest) == 0 {
		return nil
	}
	// With digest_interval the core hands the whole interval's alerts
	// here at once: one digest mail.
	return s.mail(ctx, rest, s.env.DigestInterval > 0)
}

// Close has nothing to release: every connection ends with its mail.
func (s *sender) Close() error { return nil }

func (s *sender) mail(ctx context.Context, msgs []outputs.Message, digest bool) error {
	return s.mailWith(ctx, msgs, digest, 0)
}

func (s *sender) mailWith(ctx context.Context, msgs []outputs.Message, digest bool, dropped int) error {
	body := s.Compose(msgs, digest, dropped)
	if err := s.transact(ctx, body); err != nil {
		return s.scrub(err)
	}
	s.env.Logger.Debug("email: delivered", "alerts", len(msgs), "digest", digest, "recipients", len(s.to))
	return nil
}

// transact runs one SMTP session: TLS, AUTH, MAIL, RCPT, DATA, QUIT.
func (s *sender) transact(ctx context.Context, msg []byte) error {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("email: connecting to %s: %w", s.addr, err)
	}
	// The SMTP client has no context: a cancelled context or its deadline
	// ends the connection's I/O.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Minute)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var c *smtp.Client
	if s.opts.TLS == "tls" {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("email: TLS with %s: %w", s.addr, err)
		}
		c = smtp.NewClient(tc)
	} else {
		// NewClientStartTLS fails if the server does not offer STARTTLS:
		// no fallback to plaintext.
		if c, err = smtp.NewClientStartTLS(conn, s.tls); err != nil {
			conn.Close()
			return fmt.Errorf("email: STARTTLS with %s: %w", s.addr, err)
		}
	}
	defer func() { _ = c.Close() }() // after Quit, or abandoning a failed session
	if s.opts.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return outputs.Permanent(fmt.Errorf("email: %s offers no AUTH but a username is configured", s.addr))
		}
		if err := c.Auth(sasl.NewPlainClient("", s.opts.Username, s.password.Reveal())); err != nil {
			return fmt.Errorf("email: AUTH as %s: %w", s.opts.Username, err)
		}
	}
	to := make([]string, len(s.to))
	for i, a := range s.to {
		to[i] = a.Address
	}
	if err := c.SendMail(s.from.Address, to, bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("email: sending: %w", err)
	}
	// The server accepted the mail at the end of DATA; a failed QUIT
	// does not make it undelivered.
	_ = c.Quit()
	return nil
}

// scrub classifies err (an SMTP 5xx reply is permanent, RFC 5321 4.2.1;
// anything else is retried) and removes the password from its text.
func (s *sender) scrub(err error) error {
	var se *smtp.SMTPError
	permanent := outputs.IsPermanent(err) || (errors.As(err, &se) && se.Code >= 500)
	text := err.Error()
	if p := s.password.Reveal(); p != "" {
		text = strings.ReplaceAll(text, p, "[redacted]")
	}
	return &outputs.DeliveryError{Err: errors.New(text), Permanent: permanent}
}

// Compose builds the RFC 5322 message for msgs.
func (s *sender) Compose(msgs []outputs.Message, digest bool, dropped int) []byte {
	now := s.env.Now()
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		ids = append(ids, outhttp.EventID(m))
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	domain := "vigil.invalid"
	if i := strings.LastIndexByte(s.from.Address, '@'); i >= 0 {
		domain = s.from.Address[i+1:]
	}
	to := make([]string, len(s.to))
	for i, a := range s.to {
		to[i] = a.String()
	}
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", s.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", s.subject(msgs, digest, dropped, now)))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(sum[:16])+"@"+domain+">")
	if len(msgs) == 1 {
		header("X-Vigil-Delivery", oneLine(ids[0]))
	}
	header("Auto-Submitted", "auto-generated") // RFC 3834: no vacation replies
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(s.text(msgs, digest, dropped))) // into a bytes.Buffer: cannot fail
	_ = qp.Close()
	return b.Bytes()
}

func (s *sender) subject(msgs []outputs.Message, digest bool, dropped int, now time.Time) string {
	var subj string
	switch {
	case digest:
		subj = "digest: " + alerts(len(msgs)+dropped)
		if len(msgs) > 0 {
			subj += ": " + outhttp.Title(msgs[0])
			if len(msgs) > 1 {
				subj += ", …"
			}
		}
	case len(msgs) == 1:
		word := outhttp.StepOf(msgs[0]).String()
		subj = word + ": " + outhttp.Title(msgs[0]) + " (" + outhttp.Severity(msgs[0]) + ")"
		if msgs[0].Test {
			subj = "[TEST] " + word + ": " + msgs[0].Text
		}
	default:
		subj = fmt.Sprintf("%d alerts: %s, …", len(msgs), outhttp.Title(msgs[0]))
		if msgs[0].Test {
			subj = "[TEST] " + subj
		}
	}
	return outhttp.Truncate(s.opts.SubjectPrefix+" "+oneLine(subj), maxSubject)
}

func (s *sender) text(msgs []outputs.Message, digest bool, dropped int) string {
	var b strings.Builder
	if digest {
		fmt.Fprintf(&b, "Vigil digest: %s fired (at most one mail every %v).\n\n", alerts(len(msgs)+dropped), s.env.DigestInterval)
	}
	for i, m := range msgs {
		if i > 0 {
			b.WriteString("\n----------------------------------------\n\n")
		}
		if m.Test {
			b.WriteString("[TEST] This is a test message from Vigil, not an alert.\n\n")
		}
		b.WriteString(outhttp.StepOf(m).String() + ": " + oneLine(outhttp.Title(m)) + "\n\n")
		line := func(k, v string) {
			if v != "" {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		line("Severity", outhttp.Severity(m))
		if d := m.Detection; d != nil {
			line("Rule", d.RuleID)
			line("Status", d.Status)
			line("Count", strconv.Itoa(d.Count))
			line("Group", d.GroupKey)
			line("MITRE", strings.Join(append(append([]string{}, d.MitreTactics...), d.MitreTechniques...), ", "))
		}
		if ev := m.Event; ev != nil {
			line("Type", ev.Type)
			line("User", ev.User)
			line("Source IP", ev.SrcIP)
			line("Tenant", ev.Tenant)
			line("Event", ev.ID)
			line("Time", ev.Time.UTC().Format(time.RFC3339))
		}
		line("Link", outhttp.ConsoleLink(s.env.PublicURL, m))
		if m.Text != "" {
			b.WriteString("\n" + m.Text + "\n")
		}
	}
	if dropped > 0 {
		fmt.Fprintf(&b, "\n… and %d more not listed (see the console).\n", dropped)
	}
	return b.String()
}

func alerts(n int) string {
	if n == 1 {
		return "1 alert"
	}
	return strconv.Itoa(n) + " alerts"
}

// oneLine keeps a header value on one line: a title must not add headers.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
