package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/metrics"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testkit"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestMetricsCountIngestAndHub: ingest through a Service observed by the
// metrics, with one subscribed hub client, shows up in the scrape: events
// in by category, the batch histogram, dropped secrets, connections by
// transport, subscriptions and deliveries out.
func TestMetricsCountIngestAndHub(t *testing.T) {
	env := testenv.New(t)
	m := metrics.New(env.Hub)
	ing := ingest.New(env.Log, event.DefaultLimits(), m)

	c := env.Hub.NewClient(hub.ClientInfo{Transport: "sse", Principal: env.Admin})
	t.Cleanup(c.Close)
	if _, err := c.Subscribe(context.Background(), "s", filter.MatchAll(), hub.Latest()); err != nil {
		t.Fatal(err)
	}
	evs := []*event.Event{
		{Type: "auth.login", Source: "idp", User: "alice"},
		{Type: "auth.login", Source: "idp", User: "bob", Data: []byte(`{"password":"hunter2"}`)},
	}
	if _, err := ing.Publish(context.Background(), env.Admin, evs); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if out := scrape(t, m); !strings.Contains(out, `vigil_events_out_total{category="authentication"} 2`) {
			return errors.New("deliveries not counted yet")
		}
		return nil
	})
	out := scrape(t, m)
	for _, want := range []string{
		`vigil_events_in_total{category="authentication"} 2`,
		`vigil_ingest_batch_events_count 1`,
		`vigil_sensitive_fields_dropped_total 1`,
		`vigil_connections{transport="sse"} 1`,
		`vigil_subscriptions 1`,
		`vigil_ingest_seconds_count 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(grep(out, "vigil_"))
	}
}

func grep(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}
