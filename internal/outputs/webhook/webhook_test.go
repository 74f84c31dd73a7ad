package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/webhook"
)

func newSender(t *testing.T, opts *webhook.Options, now time.Time) outputs.Sender {
	t.Helper()
	s, err := webhook.New(opts, outputs.Env{HTTP: &http.Client{Timeout: 5 * time.Second}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func message() outputs.Message {
	e := &event.Event{ID: "evt-1", Type: "detection.created", Category: event.CategoryDetection, Tenant: "default", Data: []byte(`{"id":"det-1"}`)}
	return outputs.Message{Event: e, Body: e.JSON()}
}

// TestRequestFormat checks the documented request (SPEC 13): POST, the
// event's JSON as body, X-Vigil-Delivery = event id, X-Vigil-Event = type,
// X-Vigil-Signature = t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>."+body)>
// computed here independently of the package, and the extra headers.
func TestRequestFormat(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
	}))
	defer srv.Close()
	secretPath := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(secretPath, []byte("whsec\n"), 0o600)
	t.Setenv("VIGIL_TEST_API_KEY", "k-123")
	s := newSender(t, &webhook.Options{URL: srv.URL + "/hook", SecretFile: secretPath, Headers: map[string]string{"x-api-key": "${VIGIL_TEST_API_KEY}", "X-Team": "soc"}}, now)
	m := message()
	if err := s.Send(context.Background(), []outputs.Message{m}); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/hook" || got.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s %s", got.Method, got.URL.Path, got.Header.Get("Content-Type"))
	}
	if string(body) != string(m.Body) {
		t.Fatalf("body %s, want the event %s", body, m.Body)
	}
	if got.Header.Get("X-Vigil-Delivery") != "evt-1" || got.Header.Get("X-Vigil-Event") != "detection.created" {
		t.Fatalf("headers %v", got.Header)
	}
	mac := hmac.New(sha256.New, []byte("whsec"))
	mac.Write([]byte(strconv.FormatInt(now.Unix(), 10) + "." + string(body)))
	want := "t=1700000000,v1=" + hex.EncodeToString(mac.Sum(nil))
	if sig := got.Header.Get("X-Vigil-Signature"); sig != want {
		t.Fatalf("signature %q, want %q", sig, want)
	}
	if got.Header.Get("X-Api-Key") != "k-123" || got.Header.Get("X-Team") != "soc" {
		t.Fatalf("extra headers %v", got.Header)
	}
	if got.Header.Get("X-Vigil-Test") != "" {
		t.Fatal("a real delivery is marked as a test")
	}
	// Verify accepts it, and refuses a stale timestamp or another body.
	if err := webhook.Verify([]byte("whsec"), want, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := webhook.Verify([]byte("whsec"), want, body, now.Add(time.Hour), 5*time.Minute); err == nil {
		t.Fatal("a replay an hour later verified")
	}
	if err := webhook.Verify([]byte("whsec"), want, append(body, ' '), now, 5*time.Minute); err == nil {
		t.Fatal("a changed body verified")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestStatusesSteerTheRetry: 503 with Retry-After is retried with the
// hint, 400 is permanent, a test message carries X-Vigil-Test.
func TestStatusesSteerTheRetry(t *testing.T) {
	status := 503
	var test string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		test = r.Header.Get("X-Vigil-Test")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(status)
	}))
	defer srv.Close()
	s := newSender(t, &webhook.Options{URL: srv.URL}, time.Now())
	err := s.Send(context.Background(), []outputs.Message{message()})
	var de *outputs.DeliveryError
	if !errors.As(err, &de) || de.Permanent || de.RetryAfter != 7*time.Second {
		t.Fatalf("503: %#v", err)
	}
	status = 400
	if err := s.Send(context.Background(), []outputs.Message{message()}); !outputs.IsPermanent(err) {
		t.Fatalf("400: %v", err)
	}
	status = 204
	tm := outputs.TestMessage("x", "", time.Now())
	if err := s.Send(context.Background(), []outputs.Message{tm}); err != nil || test != "true" {
		t.Fatalf("test message: %v, X-Vigil-Test %q", err, test)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		o    webhook.Options
		want string
	}{
		{webhook.Options{}, "url is missing"},
		{webhook.Options{URL: "ftp://x/"}, "absolute http"},
		{webhook.Options{URL: "http://x/", Secret: "plain"}, "secret must be ${ENV_NAME}"},
		{webhook.Options{URL: "http://x/", Headers: map[string]string{"x-vigil-signature": "forged"}}, "X-Vigil-Signature is set by Vigil"},
	} {
		_, err := webhook.New(&c.o, outputs.Env{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: err %v, want %q", c.o, err, c.want)
		}
	}
}
