package outhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
)

var now = time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)

func TestRetryAfter(t *testing.T) {
	clock := func() time.Time { return now }
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"12", 12 * time.Second},
		{" 3 ", 3 * time.Second},
		{"999999999999", MaxRetryAfter},
		{"99999999999999999999999", 0}, // overflows: ignored
		{"Mon, 30 Nov 2026 17:00:30 GMT", 30 * time.Second},
		{"Mon, 30 Nov 2026 16:00:00 GMT", 0}, // in the past
		{"Mon, 30 Nov 2027 17:00:00 GMT", MaxRetryAfter},
		{"soon", 0},
	} {
		if got := RetryAfter(c.in, clock); got != c.want {
			t.Errorf("%q: %v, want %v", c.in, got, c.want)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Mon, 30 Nov 2026 17:00:30 GMT")
	f.Fuzz(func(t *testing.T, s string) {
		d := RetryAfter(s, func() time.Time { return now })
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("%q: %v", s, d)
		}
	})
}

// TestDoHidesTheURL: a webhook URL is a credential (Slack, Teams); a
// transport error must not print it.
func TestDoHidesTheURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused
	secretURL := "http://" + addr + "/services/T000/B000/XXXXSECRETXXXX"
	_, err = Do(context.Background(), &http.Client{}, nil, Request{Method: "POST", URL: secretURL, What: "slack webhook"})
	if err == nil || outputs.IsPermanent(err) {
		t.Fatalf("refused connection: %v, want a retryable error", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("the URL is in the error: %v", err)
	}
}

func TestDoLimitsAndScrubs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		w.Write([]byte("key s3cr3t-value is wrong\n" + strings.Repeat("x", 5000)))
	}))
	defer srv.Close()
	_, err := Do(context.Background(), srv.Client(), nil, Request{Method: "POST", URL: srv.URL, What: "t",
		Secrets: []outputs.Secret{"s3cr3t-value"}})
	var de *outputs.DeliveryError
	if !errors.As(err, &de) || !de.Permanent {
		t.Fatalf("401: %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") || len(err.Error()) > 300 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q", err)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("héllo", 2); got != "h" {
		t.Errorf("%q", got)
	}
	if got := Truncate("abc", 5); got != "abc" {
		t.Errorf("%q", got)
	}
}

func TestRequiredSecret(t *testing.T) {
	if _, err := RequiredSecret("api_key", "", ""); err == nil || err.Error() != "api_key or api_key_file is required" {
		t.Fatalf("missing: %v", err)
	}
	t.Setenv("VIGIL_TEST_REQUIRED_SECRET", "k")
	if s, err := RequiredSecret("api_key", "${VIGIL_TEST_REQUIRED_SECRET}", ""); err != nil || s.Reveal() != "k" {
		t.Fatalf("set: %q %v", s.Reveal(), err)
	}
}

func TestStepOf(t *testing.T) {
	det := func(status string, count int) outputs.Message {
		return outputs.Message{Detection: &outputs.Detection{ID: "d", Status: status, Count: count}, Event: &event.Event{Type: "detection.updated", Category: event.CategoryDetection}}
	}
	for _, c := range []struct {
		m    outputs.Message
		want string
	}{
		{outputs.Message{Test: true}, "Test"},
		{outputs.Message{Event: &event.Event{Type: "auth.login_failed"}}, "Event"},
		{det("active", 1), "New detection"},
		{det("active", 3), "Updated"},
		{det("investigating", 3), "Investigating"},
		{det("resolved", 3), "Resolved"},
		{det("false_positive", 3), "False positive"},
	} {
		if got := StepOf(c.m).String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.m.Detection, got, c.want)
		}
	}
}

func TestPageActions(t *testing.T) {
	det := func(status string) outputs.Message {
		return outputs.Message{Detection: &outputs.Detection{ID: "d", Status: status, Count: 2}}
	}
	for _, c := range []struct {
		m    outputs.Message
		want []PageAction
	}{
		{outputs.Message{Test: true, Event: &event.Event{ID: "e"}}, []PageAction{PageTrigger, PageResolve}},
		{outputs.Message{Event: &event.Event{ID: "e"}}, []PageAction{PageTrigger}},
		{det("active"), []PageAction{PageTrigger}},
		{det("investigating"), []PageAction{PageAcknowledge}},
		{det("resolved"), []PageAction{PageResolve}},
		{det("false_positive"), []PageAction{PageResolve}},
	} {
		got := PageActions(c.m)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%+v: %v, want %v", c.m.Detection, got, c.want)
		}
	}
}
