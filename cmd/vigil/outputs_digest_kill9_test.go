package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// digestSMTP is an in-process SMTP submission server (STARTTLS, AUTH
// PLAIN) that keeps the mails it accepted.
type digestSMTP struct {
	mu    sync.Mutex
	mails [][]byte
}

type digestSession struct {
	s    *digestSMTP
	auth bool
}

func (se *digestSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (se *digestSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "vigil@example.com" || pass != "smtp-pass" {
			return &smtp.SMTPError{Code: 535, Message: "Authentication failed"}
		}
		se.auth = true
		return nil
	}), nil
}
func (se *digestSession) Mail(string, *smtp.MailOptions) error {
	if !se.auth {
		return &smtp.SMTPError{Code: 530, Message: "Authentication required"}
	}
	return nil
}
func (se *digestSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (se *digestSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	se.s.mu.Lock()
	se.s.mails = append(se.s.mails, b)
	se.s.mu.Unlock()
	return nil
}
func (se *digestSession) Reset()        {}
func (se *digestSession) Logout() error { return nil }

// TestOutputsDigestKill9 (issue 10, SPEC 13): an email output with
// digest_interval 15s mails its first detection; three more wait for the
// digest; Vigil is killed with SIGKILL while they wait and restarted on
// the same data directory: the digest listing the three is mailed, once
// the interval since the first mail has passed (the restarted node keeps
// it: not at its start). Before
// the fix the email sender kept them in memory after the core had
// acknowledged them, and the kill lost them.
func TestOutputsDigestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a child vigil process; skipped with -short")
	}
	dir := t.TempDir()
	files := tlstest.New(t, t.TempDir())
	srv := &digestSMTP{}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &digestSession{s: srv}, nil }))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{files.Server.TLS}, MinVersion: tls.VersionTLS12}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = s.Serve(l) }()
	defer func() { s.Close(); <-served }()
	count := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.mails)
	}

	host, port, _ := net.SplitHostPort(l.Addr().String())
	pf := filepath.Join(dir, "smtp.pass")
	_ = os.WriteFile(pf, []byte("smtp-pass\n"), 0o600)
	cfgPath := filepath.Join(dir, "vigil.yaml")
	_ = os.WriteFile(cfgPath, []byte(fmt.Sprintf(`outputs:
  - name: mail
    type: email
    host: %s
    port: %s
    ca_file: %s
    username: vigil@example.com
    password_file: %s
    from: vigil@example.com
    to: [soc@example.com]
    digest_interval: 15s
    group_wait: 300ms
    filter: {categories: [detection]}
`, host, port, files.CAFile, pf)), 0o600)
	dataDir := filepath.Join(dir, "data")
	bin := vigilBin.Path(t)
	cmd, addr := startServe(t, bin, "--data-dir", dataDir, "--config", cfgPath)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New("http://"+addr, strings.TrimSpace(string(token)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	publish := func(ids ...string) {
		t.Helper()
		var batch []map[string]any
		for _, id := range ids {
			batch = append(batch, map[string]any{"id": id, "type": "detection.created", "category": "detection", "severity": "high",
				"data": map[string]any{"id": "d" + id, "rule_id": "r", "title": "t " + id, "status": "active", "count": 1}})
		}
		if err := c.Do(ctx, "POST", "/api/v1/events", batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(d time.Duration, what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			err := cond()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s: %v", what, d, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	publish("dg-1")
	waitFor(15*time.Second, "the first detection mailed", func() error {
		if n := count(); n != 1 {
			return fmt.Errorf("%d mails", n)
		}
		return nil
	})
	firstMailed := time.Now()
	publish("dg-2", "dg-3", "dg-4")
	waitFor(15*time.Second, "the three taken into the digest", func() error {
		var out struct {
			Outputs []struct {
				Delivered int64 `json:"delivered"`
				Pending   int64 `json:"pending"`
			} `json:"outputs"`
		}
		if err := c.Do(ctx, "GET", "/api/v1/outputs", nil, &out); err != nil {
			return err
		}
		if len(out.Outputs) != 1 || out.Outputs[0].Delivered != 1 || out.Outputs[0].Pending != 3 {
			return fmt.Errorf("status %+v", out.Outputs)
		}
		return nil
	})
	// Past group_wait: the sender of the old code had taken them (and the
	// core acknowledged them); the core now holds them unacknowledged.
	time.Sleep(time.Second)
	if n := count(); n != 1 {
		t.Fatalf("%d mails within the digest interval", n)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	cmd, _ = startServe(t, bin, "--data-dir", dataDir, "--config", cfgPath)
	// Redelivered after the consumer's ack wait (5 s), mailed once the
	// interval since the first mail has passed.
	waitFor(30*time.Second, "the pending digest mailed after the restart", func() error {
		if n := count(); n < 2 {
			return fmt.Errorf("%d mails", n)
		}
		return nil
	})
	if gap := time.Since(firstMailed); gap < 15*time.Second-500*time.Millisecond {
		t.Fatalf("the digest was mailed %v after the first mail, within digest_interval 15s", gap)
	}
	srv.mu.Lock()
	last := srv.mails[len(srv.mails)-1]
	n := len(srv.mails)
	srv.mu.Unlock()
	msg, err := mail.ReadMessage(bytes.NewReader(last))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if n != 2 || !strings.HasPrefix(subj, "[Vigil] digest: 3 alerts") {
		t.Fatalf("%d mails, last subject %q: want one digest of the 3 after the restart", n, subj)
	}
	for _, id := range []string{"dg-2", "dg-3", "dg-4"} {
		if !strings.Contains(string(body), "Event: "+id) {
			t.Fatalf("%s missing in the digest:\n%s", id, body)
		}
	}
}
