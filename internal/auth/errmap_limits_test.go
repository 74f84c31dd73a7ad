package auth

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/vigil-sec/vigil/internal/domain"
)

// TestLimitErrorKind: a limit refusal carries its kind, so the one table
// (domain.HTTPStatus) gives the status Admit reports and WriteErr writes it
// with the reason as the body; the origin check is forbidden, the caps are
// rate limited.
func TestLimitErrorKind(t *testing.T) {
	l := NewLimiter(LimitConfig{MaxConnsPerToken: 1, MaxSubscriptions: 1}, nil)
	p := &Principal{ID: "t1"}
	rel, _, err := l.Admit(req("10.0.0.1:1000", "vigil:8080", ""), p)
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	_, capStatus, capErr := l.Admit(req("10.0.0.1:1001", "vigil:8080", ""), p)
	_, originStatus, originErr := l.Admit(req("10.0.0.2:1000", "vigil:8080", "https://evil.example"), &Principal{ID: "t2"})
	subErr := l.AllowSubscribe(1)
	for _, c := range []struct {
		name   string
		err    error
		status int
		kind   domain.Kind
	}{
		{"conns_per_token", capErr, capStatus, domain.KindRateLimited},
		{"origin", originErr, originStatus, domain.KindForbidden},
		{"subscriptions", subErr, 429, domain.KindRateLimited},
	} {
		if c.err == nil || c.status == 0 {
			t.Fatalf("%s: not refused (status %d, err %v)", c.name, c.status, c.err)
		}
		if !errors.Is(c.err, ErrLimit) {
			t.Errorf("%s: errors.Is(err, ErrLimit) = false", c.name)
		}
		if k := domain.KindOf(c.err); k != c.kind {
			t.Errorf("%s: kind %v, want %v", c.name, k, c.kind)
		}
		rec := httptest.NewRecorder()
		WriteErr(rec, c.err)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body %q: %v", c.name, rec.Body.String(), err)
		}
		if rec.Code != c.status || body["error"] != c.err.Error() {
			t.Errorf("%s: WriteErr wrote %d %q, want %d %q", c.name, rec.Code, body["error"], c.status, c.err.Error())
		}
	}
}
