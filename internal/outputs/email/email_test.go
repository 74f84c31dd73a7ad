package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

const (
	testUser = "vigil@example.com"
	testPass = "p4ssw0rd-S3CRET"
)

// received is one mail the in-process server accepted, with what the
// session saw: whether TLS was on at MAIL FROM and who authenticated.
type received struct {
	tls      bool
	authUser string
	from     string
	to       []string
	data     []byte
}

// smtpServer is an in-process SMTP submission server (go-smtp) with
// STARTTLS and AUTH PLAIN; it refuses AUTH before TLS
// (AllowInsecureAuth false), as a real submission server does.
type smtpServer struct {
	mu       sync.Mutex
	mails    []received
	rcptCode int // when set, RCPT TO answers this code
	srv      *smtp.Server
	addr     string
	caFile   string
}

type session struct {
	s    *smtpServer
	conn *smtp.Conn
	cur  received
}

func (se *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (se *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != testUser || pass != testPass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication failed"}
		}
		se.cur.authUser = user
		return nil
	}), nil
}
func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.cur.authUser == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	_, se.cur.tls = se.conn.TLSConnectionState()
	se.cur.from = from
	return nil
}
func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.s.mu.Lock()
	code := se.s.rcptCode
	se.s.mu.Unlock()
	if code != 0 {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "not now"}
	}
	se.cur.to = append(se.cur.to, to)
	return nil
}
func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	se.cur.data = b
	se.s.mu.Lock()
	se.s.mails = append(se.s.mails, se.cur)
	se.s.mu.Unlock()
	return nil
}
func (se *session) Reset()        { se.cur = received{authUser: se.cur.authUser} }
func (se *session) Logout() error { return nil }

func startSMTP(t *testing.T, withTLS bool) *smtpServer {
	t.Helper()
	files := tlstest.New(t, t.TempDir())
	s := &smtpServer{caFile: files.CAFile}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	if withTLS {
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{files.Server.TLS}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); s.srv.Serve(l) }()
	t.Cleanup(func() { s.srv.Close(); <-done })
	return s
}

func (s *smtpServer) take() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mails
	s.mails = nil
	return m
}

func (s *smtpServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mails)
}

func newSenderFor(t *testing.T, s *smtpServer, digest time.Duration) (outputs.Sender, *outputtest.LogBuffer) {
	t.Helper()
	host, port, _ := net.SplitHostPort(s.addr)
	var p int
	fmt.Sscan(port, &p)
	t.Setenv("VIGIL_TEST_SMTP_PASS", testPass)
	env, logs := outputtest.Env(t, nil)
	env.DigestInterval = digest // the core's digest_interval
	opts := &Options{Host: host, Port: p, CAFile: s.caFile, Username: testUser, Password: "${VIGIL_TEST_SMTP_PASS}",
		From: "Vigil <vigil@example.com>", To: []string{"soc@example.com", "Oncall <oncall@example.org>"}}
	snd, err := Type().New(opts, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	return snd, logs
}

// parsed is a received mail checked against RFC 5322 / RFC 2045.
type parsed struct {
	header mail.Header
	body   string
}

var messageID = regexp.MustCompile(`^<[0-9a-f]{32}@example\.com>$`)

func parse(t *testing.T, r received) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(r.data)))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v\n%s", err, r.data)
	}
	h := msg.Header
	for _, k := range []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type"} {
		if h.Get(k) == "" {
			t.Errorf("header %s missing", k)
		}
	}
	if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "vigil@example.com" || from.Name != "Vigil" {
		t.Errorf("From %q: %v", h.Get("From"), err)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[0].Address != "soc@example.com" || to[1].Address != "oncall@example.org" {
		t.Errorf("To %q: %v", h.Get("To"), err)
	}
	if d, err := h.Date(); err != nil || !d.Equal(outputtest.Now.Truncate(time.Second)) {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if !messageID.MatchString(h.Get("Message-Id")) {
		t.Errorf("Message-ID %q", h.Get("Message-Id"))
	}
	if h.Get("Content-Transfer-Encoding") != "quoted-printable" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; charset=utf-8") {
		t.Errorf("content headers %v", h)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	h["Subject"] = []string{subj}
	return parsed{header: h, body: string(body)}
}

func TestEmailSTARTTLSAuthAndFormat(t *testing.T) {
	srv := startSMTP(t, true)
	snd, logs := newSenderFor(t, srv, 0)
	m := outputtest.Detection("ev1", "det-1", "active", 3)
	m.Detection.Title = "Brute force é\r\nBcc: evil@example.net"
	if err := snd.Send(context.Background(), []outputs.Message{m}); err != nil {
		t.Fatal(err)
	}
	got := srv.take()
	if len(got) != 1 {
		t.Fatalf("%d mails", len(got))
	}
	r := got[0]
	if !r.tls {
		t.Error("the mail was sent before STARTTLS")
	}
	if r.authUser != testUser || r.from != "vigil@example.com" || strings.Join(r.to, ",") != "soc@example.com,oncall@example.org" {
		t.Errorf("envelope %+v", r)
	}
	p := parse(t, r)
	if p.header.Get("Bcc") != "" || strings.Contains(string(r.data), "\r\nBcc:") {
		t.Error("a title added a header")
	}
	if s := p.header.Get("Subject"); s != "[Vigil] Updated: Brute force é  Bcc: evil@example.net (high)" {
		t.Errorf("Subject %q", s)
	}
	if p.header.Get("X-Vigil-Delivery") != "ev1" || p.header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("headers %v", p.header)
	}
	for _, w := range []string{"Severity: high", "Rule: brute-force", "Count: 3", "MITRE: TA0006, T1110", "Group: user=alice",
		"Event: ev1", "Link: https://vigil.example.com/#/detections/det-1", "rule brute-force, count 3"} {
		if !strings.Contains(p.body, w) {
			t.Errorf("%q missing in the body:\n%s", w, p.body)
		}
	}
	// The same message again (a retry) has the same Message-ID.
	snd.Send(context.Background(), []outputs.Message{m})
	again := srv.take()
	if len(again) != 1 || parse(t, again[0]).header.Get("Message-Id") != p.header.Get("Message-Id") {
		t.Error("a retried mail has another Message-ID")
	}
	if strings.Contains(logs.String(), testPass) {
		t.Error("the password is in the logs")
	}
}

func TestEmailGroupedAndTest(t *testing.T) {
	srv := startSMTP(t, true)
	snd, _ := newSenderFor(t, srv, 0)
	group := []outputs.Message{outputtest.Detection("ev1", "det-1", "active", 1), outputtest.Detection("ev2", "det-2", "active", 1)}
	if err := snd.Send(context.Background(), group); err != nil {
		t.Fatal(err)
	}
	got := srv.take()
	if len(got) != 1 {
		t.Fatalf("group: %d mails, want 1", len(got))
	}
	p := parse(t, got[0])
	if !strings.HasPrefix(p.header.Get("Subject"), "[Vigil] 2 alerts: ") || !strings.Contains(p.body, "Event: ev1") || !strings.Contains(p.body, "Event: ev2") {
		t.Errorf("group mail %q\n%s", p.header.Get("Subject"), p.body)
	}
	if err := snd.Send(context.Background(), []outputs.Message{outputtest.Test("ev-t")}); err != nil {
		t.Fatal(err)
	}
	got = srv.take()
	if len(got) != 1 {
		t.Fatalf("test: %d mails", len(got))
	}
	p = parse(t, got[0])
	if !strings.Contains(p.header.Get("Subject"), "[TEST]") || !strings.Contains(p.body, "This is a test message") {
		t.Errorf("test mail not labelled: %q\n%s", p.header.Get("Subject"), p.body)
	}
}

// TestEmailDigest: with digest_interval the core hands the interval's
// alerts to Send together: one digest mail listing them all; a test
// message is never a digest. The sender holds nothing (the core does,
// unacknowledged: TestEmailDigestPendingAtStopIsMailedAfterRestart).
func TestEmailDigest(t *testing.T) {
	srv := startSMTP(t, true)
	snd, _ := newSenderFor(t, srv, 5*time.Minute)
	ctx := context.Background()
	var batch []outputs.Message
	for i := 2; i <= 4; i++ {
		batch = append(batch, outputtest.Detection(fmt.Sprint("ev", i), fmt.Sprint("det-", i), "active", 1))
	}
	if err := snd.Send(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got := srv.take()
	if len(got) != 1 {
		t.Fatalf("%d mails for one digest, want 1", len(got))
	}
	p := parse(t, got[0])
	if !strings.HasPrefix(p.header.Get("Subject"), "[Vigil] digest: 3 alerts") {
		t.Errorf("digest subject %q", p.header.Get("Subject"))
	}
	if !strings.Contains(p.body, "at most one mail every 5m0s") {
		t.Errorf("digest body does not name the interval:\n%s", p.body)
	}
	for i := 2; i <= 4; i++ {
		if !strings.Contains(p.body, fmt.Sprintf("Event: ev%d", i)) {
			t.Errorf("ev%d missing in the digest:\n%s", i, p.body)
		}
	}
	if err := snd.Send(ctx, []outputs.Message{outputtest.Test("ev-t")}); err != nil {
		t.Fatal(err)
	}
	got = srv.take()
	if len(got) != 1 || strings.Contains(parse(t, got[0]).header.Get("Subject"), "digest") {
		t.Fatalf("test message: %d mails, or labelled a digest", len(got))
	}
}

func TestEmailErrors(t *testing.T) {
	ctx := context.Background()
	m := outputtest.Detection("ev1", "det-1", "active", 1)

	// No STARTTLS offered: nothing is sent in plaintext.
	plain := startSMTP(t, false)
	snd, _ := newSenderFor(t, plain, 0)
	err := snd.Send(ctx, []outputs.Message{m})
	if err == nil || plain.count() != 0 {
		t.Fatalf("server without STARTTLS: %v, %d mails", err, plain.count())
	}

	srv := startSMTP(t, true)
	// A temporary refusal (4xx) is retried.
	srv.rcptCode = 451
	snd, logs := newSenderFor(t, srv, 0)
	if err := snd.Send(ctx, []outputs.Message{m}); err == nil || outputs.IsPermanent(err) {
		t.Errorf("451: %v, want a retryable error", err)
	}
	// A permanent one (5xx) is not.
	srv.rcptCode = 550
	if err := snd.Send(ctx, []outputs.Message{m}); !outputs.IsPermanent(err) {
		t.Errorf("550: %v, want a permanent error", err)
	}
	srv.rcptCode = 0

	// A wrong password is permanent and not printed.
	t.Setenv("VIGIL_TEST_SMTP_WRONG", "wr0ng-"+testPass)
	host, port, _ := net.SplitHostPort(srv.addr)
	var p int
	fmt.Sscan(port, &p)
	env, logs2 := outputtest.Env(t, nil)
	bad, err := Type().New(&Options{Host: host, Port: p, CAFile: srv.caFile, Username: testUser, Password: "${VIGIL_TEST_SMTP_WRONG}",
		From: "vigil@example.com", To: []string{"soc@example.com"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	err = bad.Send(ctx, []outputs.Message{m})
	if !outputs.IsPermanent(err) || strings.Contains(err.Error(), testPass) {
		t.Errorf("wrong password: %v", err)
	}
	// An untrusted certificate is refused.
	other, err := Type().New(&Options{Host: host, Port: p, Username: testUser, Password: "${VIGIL_TEST_SMTP_PASS}",
		From: "vigil@example.com", To: []string{"soc@example.com"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Send(ctx, []outputs.Message{m}); err == nil || srv.count() != 0 {
		t.Errorf("untrusted certificate: %v", err)
	}
	// Server down: retried.
	srv.srv.Close()
	if err = snd.Send(ctx, []outputs.Message{m}); err == nil || outputs.IsPermanent(err) {
		t.Errorf("server down: %v", err)
	}
	var de *outputs.DeliveryError
	if !errors.As(err, &de) {
		t.Errorf("not a DeliveryError: %T", err)
	}
	for _, l := range []string{logs.String(), logs2.String()} {
		if strings.Contains(l, testPass) {
			t.Error("the password is in the logs")
		}
	}
}

func TestEmailConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	t.Setenv("VIGIL_TEST_SMTP_PASS", testPass)
	ok := Options{Host: "smtp.example.com", From: "v@example.com", To: []string{"a@example.com"}}
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Host = "" }, "host is required"},
		{func(o *Options) { o.TLS = "none" }, `tls "none": must be starttls or tls`},
		{func(o *Options) { o.Port = 70000 }, "port 70000"},
		{func(o *Options) { o.Username = "u" }, "username and password"},
		{func(o *Options) { o.Password = testPass; o.Username = "u" }, "must be ${ENV_NAME}"},
		{func(o *Options) { o.From = "not an address" }, "from"},
		{func(o *Options) { o.To = nil }, "at least one recipient"},
		{func(o *Options) { o.To = []string{"a@example.com", "bad"} }, "to[1]"},
		{func(o *Options) { o.CAFile = "/nonexistent" }, "ca_file"},
		{func(o *Options) { o.SubjectPrefix = "a\nBcc: x" }, "subject_prefix"},
	} {
		o := ok
		c.mod(&o)
		_, err := Type().New(&o, env)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), testPass) {
			t.Errorf("%+v: %v, want %q", o, err, c.want)
		}
	}
}
