package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func req(remote, host, origin string) *http.Request {
	r := httptest.NewRequest("GET", "http://"+host+"/api/v1/stream", nil)
	r.RemoteAddr = remote
	r.Host = host
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

func TestLimiterConnectionCaps(t *testing.T) {
	m := NewMetrics(nil)
	l := NewLimiter(LimitConfig{MaxConnsPerToken: 2, MaxConnsPerIP: 3}, m)
	p1, p2 := &Principal{ID: "t1"}, &Principal{ID: "t2"}
	var rels []func()
	for i := 0; i < 2; i++ {
		rel, _, err := l.Admit(req("10.0.0.1:1000", "vigil:8080", ""), p1)
		if err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		rels = append(rels, rel)
	}
	if _, status, err := l.Admit(req("10.0.0.2:1000", "vigil:8080", ""), p1); !errors.Is(err, ErrLimit) || status != 429 {
		t.Fatalf("third conn for token: status %d err %v, want 429", status, err)
	}
	rel, _, err := l.Admit(req("10.0.0.1:1001", "vigil:8080", ""), p2)
	if err != nil {
		t.Fatal(err)
	}
	rels = append(rels, rel)
	if _, status, err := l.Admit(req("10.0.0.1:1002", "vigil:8080", ""), &Principal{ID: "t3"}); err == nil || status != 429 {
		t.Fatalf("fourth conn from IP: status %d err %v, want 429", status, err)
	}
	rels[0]()
	rels[0]() // release is idempotent
	if _, _, err := l.Admit(req("10.0.0.3:1000", "vigil:8080", ""), p1); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestLimiterOrigin(t *testing.T) {
	same := NewLimiter(LimitConfig{}, nil)
	for _, c := range []struct {
		origin string
		ok     bool
	}{{"", true}, {"http://vigil:8080", true}, {"https://evil.example", false}, {"null", false}} {
		_, status, err := same.Admit(req("10.0.0.1:1", "vigil:8080", c.origin), &Principal{ID: "x"})
		if (err == nil) != c.ok {
			t.Errorf("same-origin default, Origin %q: err %v, want ok=%v", c.origin, err, c.ok)
		}
		if err != nil && status != 403 {
			t.Errorf("origin refusal status %d, want 403", status)
		}
	}
	list := NewLimiter(LimitConfig{AllowedOrigins: []string{"https://soc.example.com", "https://*.corp.example"}}, nil)
	for origin, ok := range map[string]bool{
		"https://soc.example.com": true, "https://a.corp.example": true, "http://soc.example.com": false,
		"https://corp.example.evil": false, "http://vigil:8080": false, "": true,
	} {
		if err := list.CheckOrigin(req("1.2.3.4:5", "vigil:8080", origin)); (err == nil) != ok {
			t.Errorf("allow-list, Origin %q: err %v, want ok=%v", origin, err, ok)
		}
	}
}

func TestLimiterMessageRateAndSubs(t *testing.T) {
	l := NewLimiter(LimitConfig{MessagesPerSec: 1, MessageBurst: 3, MaxSubscriptions: 2}, nil)
	for i := 0; i < 3; i++ {
		if !l.AllowMessage("c1") {
			t.Fatalf("message %d within burst refused", i)
		}
	}
	if l.AllowMessage("c1") {
		t.Fatal("message over the burst allowed")
	}
	if !l.AllowMessage("c2") {
		t.Fatal("limits are per connection")
	}
	if err := l.AllowSubscribe(1); err != nil {
		t.Fatal(err)
	}
	if err := l.AllowSubscribe(2); !errors.Is(err, ErrLimit) {
		t.Fatalf("third subscription: %v", err)
	}
}

// TestFilterBudget: a token's subscriptions are bounded by their filter
// cost across connections; release returns it once however often it is
// called; admin principals and a negative limit are not counted.
func TestFilterBudget(t *testing.T) {
	m := NewMetrics(nil)
	l := NewLimiter(LimitConfig{MaxFilterCostPerToken: 25}, m)
	viewer := &Principal{ID: "tok-v", Role: RoleViewer}
	other := &Principal{ID: "tok-w", Role: RoleViewer}
	r1, err := l.Take(viewer, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Take(viewer, 10); err != nil {
		t.Fatal(err)
	}
	_, err = l.Take(viewer, 10)
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "filter_cost" || le.Status != 429 || !errors.Is(err, ErrLimit) {
		t.Fatalf("third expr subscription: %v, want a filter_cost limit error", err)
	}
	if m.LimitRejections("filter_cost") != 1 {
		t.Fatalf("rejections counted: %v", m.LimitRejections("filter_cost"))
	}
	if _, err := l.Take(other, 25); err != nil {
		t.Fatalf("another token has its own budget: %v", err)
	}
	r1()
	r1() // once
	if _, err := l.Take(viewer, 10); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Take(viewer, 1); err != nil {
		t.Fatalf("a double release must not have returned more than was held: %v", err)
	}
	if _, err := l.Take(viewer, 5); err == nil {
		t.Fatal("26 of 25 accepted: the second release of r1 returned its cost twice")
	}
	admin := &Principal{ID: "adm", Role: RoleAdmin}
	for range 10 {
		if _, err := l.Take(admin, 10); err != nil {
			t.Fatalf("admin counted: %v", err)
		}
	}
	off := NewLimiter(LimitConfig{MaxFilterCostPerToken: -1}, nil)
	for range 10 {
		if _, err := off.Take(viewer, 10); err != nil {
			t.Fatalf("limit off: %v", err)
		}
	}
	if got := NewLimiter(LimitConfig{}, nil).Config().MaxFilterCostPerToken; got != DefaultMaxFilterCostPerToken {
		t.Fatalf("default %d", got)
	}
}
