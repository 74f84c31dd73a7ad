package otlp

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// TestRefusalsLoggedAtBoundedRate: 20 undecodable requests are all
// counted but only the first 3 are logged (then one per 10 s).
func TestRefusalsLoggedAtBoundedRate(t *testing.T) {
	var logs bytes.Buffer
	m, _ := inputs.NewMetrics(nil)
	h := NewHandler(ingest.New(nil, event.DefaultLimits(), nil), m, slog.New(slog.NewTextHandler(&logs, nil)))
	pub := &auth.Principal{ID: "p", Role: auth.RolePublisher, Tenant: "acme"}
	for range 20 {
		req := httptest.NewRequest("POST", "/v1/logs", strings.NewReader(`{"resourceLogs":7}`))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(auth.WithPrincipal(req.Context(), pub))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("HTTP %d %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "logs refused"); n != 3 {
		t.Errorf("%d log lines for 20 refusals, want 3:\n%s", n, logs.String())
	}
	var got dto.Metric
	if err := m.Errors.WithLabelValues(Input, "decode").Write(&got); err != nil || got.GetCounter().GetValue() != 20 {
		t.Errorf("errors{decode} = %v (%v), want 20", got.GetCounter().GetValue(), err)
	}
}
