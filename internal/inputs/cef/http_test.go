package cef

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// memLog is an ingest.Appender that keeps what it is given (the handler's
// own logic is under test here; test/hostile/cefhttp_test.go runs it over
// a real node and JetStream).
type memLog struct{ events []*event.Event }

func (l *memLog) Append(_ context.Context, evs []*event.Event) ([]domain.Ack, error) {
	acks := make([]domain.Ack, len(evs))
	for i, e := range evs {
		l.events = append(l.events, e)
		acks[i] = domain.Ack{ID: e.ID, Seq: uint64(len(l.events))}
	}
	return acks, nil
}

type cefFixture struct {
	log *memLog
	m   *inputs.Metrics
	h   *Handler
}

func newCEFFixture(lim event.Limits) *cefFixture {
	f := &cefFixture{log: &memLog{}}
	f.m, _ = inputs.NewMetrics(nil)
	f.h = NewHandler(ingest.New(f.log, lim, nil), f.m, nil)
	return f
}

func (f *cefFixture) post(t *testing.T, role auth.Role, ct, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", "/api/v1/inputs/cef", strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req = req.WithContext(auth.WithPrincipal(req.Context(), &auth.Principal{ID: "p", Role: role, Tenant: "acme"}))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func errorsCount(t *testing.T, m *inputs.Metrics, reason string) float64 {
	t.Helper()
	var got dto.Metric
	if err := m.Errors.WithLabelValues(Input, reason).Write(&got); err != nil {
		t.Fatal(err)
	}
	return got.GetCounter().GetValue()
}

const (
	cefLine1 = `CEF:0|Acme|Gateway X|2.1|4625|Failed logon|7|suser=alice src=203.0.113.7 outcome=failure dvchost=gw1 cs1Label=realm cs1=corp`
	// A syslog header before CEF: (ignored), CRLF, escapes in header and extension.
	cefLine2 = "<134>Nov 30 10:00:00 fw1 CEF:0|Acme|Fire\\|wall|1.0|100|Blocked|3|suser=bob src=198.51.100.9 act=Block msg=a\\=b"
)

// TestCEFHTTPGoodLines: two records (one behind a syslog header, CRLF
// endings, blank lines between) become two mapped events, answered with
// the acks; the metrics count them received and stored.
func TestCEFHTTPGoodLines(t *testing.T) {
	f := newCEFFixture(event.DefaultLimits())
	rec := f.post(t, auth.RolePublisher, "text/plain; charset=utf-8", "\n"+cefLine1+"\r\n\r\n  \n"+cefLine2+"\n")
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var ack struct {
		Accepted int `json:"accepted"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ack); err != nil || ack.Accepted != 2 {
		t.Fatalf("answer %s (%v)", rec.Body, err)
	}
	if len(f.log.events) != 2 {
		t.Fatalf("%d events stored, want 2", len(f.log.events))
	}
	a, b := f.log.events[0], f.log.events[1]
	if a.User != "alice" || a.SrcIP != "203.0.113.7" || a.Outcome != "failure" || a.Source != "gw1/cef" ||
		a.Type != "authentication.cef.gateway_x.4625" || a.Severity != event.SeverityHigh || a.Tenant != "acme" {
		t.Errorf("first event %+v", a)
	}
	var data map[string]any
	if err := json.Unmarshal(a.Data, &data); err != nil || data["realm"] != "corp" {
		t.Errorf("first event data %s (%v)", a.Data, err)
	}
	if b.User != "bob" || b.SrcIP != "198.51.100.9" || b.Action != "block" || b.Message != "a=b" || b.Source != "cef" {
		t.Errorf("second event %+v", b)
	}
	if err := json.Unmarshal(b.Data, &data); err != nil || data["cef_product"] != "Fire|wall" {
		t.Errorf("second event data %s (%v)", b.Data, err)
	}
	for name, vec := range map[string]float64{"received": 2, "stored": 2} {
		var got dto.Metric
		c := f.m.Received
		if name == "stored" {
			c = f.m.Stored
		}
		_ = c.WithLabelValues(Input).Write(&got)
		if got.GetCounter().GetValue() != vec {
			t.Errorf("%s = %v, want %v", name, got.GetCounter().GetValue(), vec)
		}
	}
}

// TestCEFHTTPBadLineRefusesAll: a line that is not CEF, or that the parser
// refuses, fails the whole request with 400 naming its line number (blank
// lines counted) and the reason; nothing is stored.
func TestCEFHTTPBadLineRefusesAll(t *testing.T) {
	for _, c := range []struct {
		name, body, want string
	}{
		{"not CEF", cefLine1 + "\n\nhello world\n" + cefLine2, `line 3: no \"CEF:\" in the line`},
		{"short header", cefLine1 + "\n" + cefLine2 + "\nCEF:0|Acme|X|1|2\n", "line 3: cef: header has 4 of its 7"},
		{"bad version", "CEF:7|a|b|c|d|e|1|x=y\n" + cefLine1, `line 1: cef: version \"7\"`},
		{"invalid utf-8", cefLine1 + "\nCEF:0|a|b|c|d|e|1|suser=\xff", "line 2: not valid UTF-8"},
		// Maps, but the event is invalid (a user name longer than
		// max_string_len): the ingest problem names the line too.
		{"invalid event", cefLine1 + "\n\nCEF:0|a|b|c|d|e|1|suser=" + strings.Repeat("u", 9000), "line 3:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newCEFFixture(event.DefaultLimits())
			rec := f.post(t, auth.RolePublisher, "text/plain", c.body)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), c.want) {
				t.Fatalf("HTTP %d %s, want 400 containing %q", rec.Code, rec.Body, c.want)
			}
			if len(f.log.events) != 0 {
				t.Fatalf("%d events stored by a refused request", len(f.log.events))
			}
			reason := "decode"
			if c.name == "invalid event" {
				reason = "invalid"
			}
			if n := errorsCount(t, f.m, reason); n != 1 {
				t.Errorf("errors{%s} = %v, want 1", reason, n)
			}
		})
	}
}

// TestCEFHTTPRefusals: an empty (or blank) body is 400, a wrong content
// type 415, a viewer 403, a body over the batch limits 413; nothing is
// stored.
func TestCEFHTTPRefusals(t *testing.T) {
	lim := event.DefaultLimits()
	lim.MaxBatchCount = 2
	lim.MaxBatchBytes = 1 << 10
	for _, c := range []struct {
		name, ct, body string
		role           auth.Role
		want           int
		reason         string
	}{
		{"empty", "text/plain", "", auth.RolePublisher, http.StatusBadRequest, "empty"},
		{"blank lines", "text/plain", "\n \r\n\n", auth.RolePublisher, http.StatusBadRequest, "empty"},
		{"json", "application/json", cefLine1, auth.RolePublisher, http.StatusUnsupportedMediaType, "content_type"},
		{"form (curl -d default)", "application/x-www-form-urlencoded", cefLine1, auth.RolePublisher, http.StatusUnsupportedMediaType, "content_type"},
		{"latin1", "text/plain; charset=iso-8859-1", cefLine1, auth.RolePublisher, http.StatusUnsupportedMediaType, "content_type"},
		{"viewer", "text/plain", cefLine1, auth.RoleViewer, http.StatusForbidden, ""},
		{"too many lines", "text/plain", cefLine1 + "\n" + cefLine1 + "\n" + cefLine1, auth.RolePublisher, http.StatusRequestEntityTooLarge, "too_large"},
		{"too many bytes", "text/plain", strings.Repeat(cefLine1[:100]+"\n", 11), auth.RolePublisher, http.StatusRequestEntityTooLarge, "too_large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newCEFFixture(lim)
			rec := f.post(t, c.role, c.ct, c.body)
			if rec.Code != c.want {
				t.Fatalf("HTTP %d %s, want %d", rec.Code, rec.Body, c.want)
			}
			if len(f.log.events) != 0 {
				t.Fatalf("%d events stored by a refused request", len(f.log.events))
			}
			// The count limit names the setting an operator can change.
			if c.name == "too many lines" && !strings.Contains(rec.Body.String(), "more than the limit of 2 (max_batch_events, --max-batch-events)") {
				t.Errorf("too many lines: %s does not name max_batch_events", rec.Body)
			}
			if c.reason != "" {
				if n := errorsCount(t, f.m, c.reason); n != 1 {
					t.Errorf("errors{%s} = %v, want 1", c.reason, n)
				}
			}
		})
	}
}
