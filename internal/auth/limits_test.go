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
