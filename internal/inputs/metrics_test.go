package inputs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestMetricsShared: a second input registering the metrics on the same
// registry gets the same collectors, not an error.
func TestMetricsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	a.Received.WithLabelValues("syslog").Inc()
	b.Received.WithLabelValues("otlp").Add(2)
	if got := value(t, a.Received.WithLabelValues("otlp")); got != 2 {
		t.Fatalf("shared counter: %v", got)
	}
}

// TestMetricsErrorLogBounded: every error is counted, but a flood of them
// logs one line per reason per interval.
func TestMetricsErrorLogBounded(t *testing.T) {
	m, _ := NewMetrics(nil)
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	for range 1000 {
		m.Error(logger, "syslog", "not_syslog", 1, "bad line", "peer", "192.0.2.1:1")
	}
	m.Error(logger, "syslog", "too_large", 3, "too large")
	if got := value(t, m.Errors.WithLabelValues("syslog", "not_syslog")); got != 1000 {
		t.Fatalf("counted %v", got)
	}
	if got := value(t, m.Errors.WithLabelValues("syslog", "too_large")); got != 3 {
		t.Fatalf("counted %v", got)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d log lines for 1,001 errors of two reasons:\n%s", n, buf.String())
	}
}
