package email

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/store"
)

// TestEmailDigestPendingAtStopIsMailedAfterRestart (issue 10, SPEC 13
// "nothing lost"): an email output with digest_interval mails its first
// detection; the next ones wait for the interval, held by the core
// unacknowledged (kept in progress past several ack waits, never
// redelivered meanwhile); the node stops while the mail server refuses
// mail, as a crash would end it before the digest; a new manager on the
// same durable consumer mails the pending digest with all of them, once
// the interval since the first mail has passed (not at once: the last
// digest's time is kept with the consumer).
// Before the fix the sender kept the pending alerts itself after the core
// had acknowledged them: they were lost.
func TestEmailDigestPendingAtStopIsMailedAfterRestart(t *testing.T) {
	srv := startSMTP(t, true)
	lg, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	ing := ingest.New(lg, event.DefaultLimits(), nil)
	admin := &auth.Principal{ID: "admin", Role: auth.RoleAdmin, Tenant: auth.AllTenants}
	publish := func(id string) {
		t.Helper()
		data, _ := json.Marshal(outputs.Detection{ID: "det-" + id, RuleID: "r", Title: "Brute force " + id, Severity: "high", Status: "active", Count: 1})
		e := &event.Event{ID: id, Type: "detection.created", Category: event.CategoryDetection, Severity: event.SeverityHigh,
			Source: "vigil-detect", Message: "m", Data: data}
		if _, err := ing.Publish(context.Background(), admin, []*event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := net.SplitHostPort(srv.addr)
	t.Setenv("VIGIL_TEST_SMTP_PASS", testPass)
	src := fmt.Sprintf(`- name: mail
  type: email
  host: %s
  port: %s
  ca_file: %s
  username: %s
  password: ${VIGIL_TEST_SMTP_PASS}
  from: vigil@example.com
  to: [soc@example.com]
  digest_interval: 8s
  group_wait: 300ms
  filter: {categories: [detection]}
`, host, port, srv.caFile, testUser)
	var nodes []yaml.Node
	if err := yaml.Unmarshal([]byte(src), &nodes); err != nil {
		t.Fatal(err)
	}
	defs, err := outputs.ParseDefinitions(nodes, []outputs.Type{Type()})
	if err != nil {
		t.Fatal(err)
	}
	const ackWait = time.Second
	start := func() func() {
		m, err := outputs.NewManager(context.Background(), outputs.Options{
			JetStream: lg.JetStream(), Stream: store.StreamName, SubjectPrefix: store.SubjectPrefix, Definitions: defs,
			DeadLetter: func(context.Context, *event.Event) error { return nil },
			AckWait:    ackWait, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Run(ctx) }()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	consumer := func() *struct{ ackPending, redelivered, pending int } {
		t.Helper()
		c, err := lg.JetStream().Consumer(context.Background(), store.StreamName, outputs.ConsumerName("mail"))
		if err != nil {
			t.Fatal(err)
		}
		ci, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return &struct{ ackPending, redelivered, pending int }{ci.NumAckPending, ci.NumRedelivered, int(ci.NumPending)}
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
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	stop := start()
	publish("ev-1")
	waitFor(10*time.Second, "the first detection mailed", func() error {
		if n := srv.count(); n != 1 {
			return fmt.Errorf("%d mails", n)
		}
		return nil
	})
	srv.take()
	firstMailed := time.Now()
	for _, id := range []string{"ev-2", "ev-3", "ev-4"} {
		publish(id)
	}
	waitFor(10*time.Second, "the digest's detections taken by the output", func() error {
		if c := consumer(); c.pending != 0 || c.ackPending != 3 {
			return fmt.Errorf("consumer %+v", *c)
		}
		return nil
	})
	// Past group_wait and three ack waits: still held by the core,
	// unacknowledged, never redelivered, not mailed (the interval is 8 s).
	time.Sleep(3 * ackWait)
	if c := consumer(); c.ackPending != 3 || c.redelivered != 0 {
		t.Fatalf("consumer %+v: want the 3 detections held unacknowledged and not redelivered", *c)
	}
	if n := srv.count(); n != 0 {
		t.Fatalf("%d mails within the digest interval", n)
	}
	srv.mu.Lock()
	srv.rcptCode = 451 // whatever tries to mail at the stop fails, as a crash would
	srv.mu.Unlock()
	stop()
	srv.mu.Lock()
	srv.rcptCode = 0
	srv.mu.Unlock()
	if n := srv.count(); n != 0 {
		t.Fatalf("%d mails at the stop", n)
	}

	start()
	waitFor(10*time.Second, "the pending digest mailed after the restart", func() error {
		if n := srv.count(); n == 0 {
			return fmt.Errorf("%d mails", n)
		}
		return nil
	})
	got := srv.take()
	if len(got) != 1 {
		t.Fatalf("%d mails after the restart, want the one digest", len(got))
	}
	// Not at the restart: the interval runs from the first mail, across
	// the restart (the consumer keeps when the last digest went out).
	if gap := time.Since(firstMailed); gap < 8*time.Second-500*time.Millisecond {
		t.Fatalf("the digest was mailed %v after the first mail, within digest_interval 8s", gap)
	}
	// parse checks the headers against the fixed clock of the sender
	// tests; this one runs on the wall clock: subject and body only.
	msg, err := mail.ReadMessage(bytes.NewReader(got[0].data))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if !strings.HasPrefix(subj, "[Vigil] digest: 3 alerts") {
		t.Fatalf("subject %q", subj)
	}
	for _, id := range []string{"ev-2", "ev-3", "ev-4"} {
		if !strings.Contains(string(body), "Event: "+id) {
			t.Fatalf("%s missing in the digest:\n%s", id, body)
		}
	}
	waitFor(5*time.Second, "the digest acknowledged", func() error {
		if c := consumer(); c.ackPending != 0 {
			return fmt.Errorf("consumer %+v", *c)
		}
		return nil
	})
}
