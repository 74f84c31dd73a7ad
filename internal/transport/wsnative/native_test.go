package wsnative_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/transport/wsnative"
)

// TestSubscriptionCapIsTheGuards: the native stream's per-connection
// subscription cap comes from the same limiter as every other limit and is
// counted in vigil_limit_rejections_total{limit="subscriptions"}; the
// connection stays usable.
func TestSubscriptionCapIsTheGuards(t *testing.T) {
	e := testenv.New(t)
	metrics := auth.NewMetrics(nil)
	deps := e.Deps
	deps.Guard = auth.NewLimiter(auth.LimitConfig{MaxSubscriptions: 2}, metrics)
	srv := e.Serve(wsnative.Handler(deps, 100)) // the Guard's cap (2) wins over the fallback
	c := testenv.Dial(t, srv, "/?token="+testenv.Token)
	for i := 1; i <= 3; i++ {
		c.Send(fmt.Sprintf(`{"op":"subscribe","id":"s%d","filter":{"categories":["audit"]}}`, i))
		m := c.Read()
		if i <= 2 && m["type"] != "subscribed" {
			t.Fatalf("subscription %d: %v", i, m)
		}
		if i == 3 && (m["type"] != "error" || m["code"] != wsnative.CodeTooManySubs || !strings.Contains(fmt.Sprint(m["message"]), "limit 2")) {
			t.Fatalf("third subscription: %v", m)
		}
	}
	if n := metrics.LimitRejections("subscriptions"); n != 1 {
		t.Fatalf("rejections counted: %v, want 1", n)
	}
	c.Send(`{"op":"ping"}`)
	if m := c.Read(); m["type"] != "pong" {
		t.Fatalf("after the refusal: %v", m)
	}
}
