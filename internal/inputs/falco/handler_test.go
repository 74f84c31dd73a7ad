package falco

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

// TestRefusalsLoggedAtBoundedRate: 20 undecodable alerts are all counted
// but only the first 3 are logged (then one per 10 s).
func TestRefusalsLoggedAtBoundedRate(t *testing.T) {
	var logs bytes.Buffer
	m, _ := inputs.NewMetrics(nil)
	h := NewHandler(ingest.New(nil, event.DefaultLimits(), nil), m, slog.New(slog.NewTextHandler(&logs, nil)))
	pub := &auth.Principal{ID: "p", Role: auth.RolePublisher, Tenant: "acme"}
	for range 20 {
		req := httptest.NewRequest("POST", "/api/v1/inputs/falco", strings.NewReader(`{"rule":"x"}`))
		req = req.WithContext(auth.WithPrincipal(req.Context(), pub))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "alert refused"); n != 3 {
		t.Errorf("%d log lines for 20 refusals, want 3:\n%s", n, logs.String())
	}
	var got dto.Metric
	if err := m.Errors.WithLabelValues(Input, "decode").Write(&got); err != nil || got.GetCounter().GetValue() != 20 {
		t.Errorf("errors{decode} = %v (%v), want 20", got.GetCounter().GetValue(), err)
	}
}
