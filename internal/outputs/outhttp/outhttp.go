// Package outhttp holds what the HTTP-based output types (pagerduty,
// slack, teams, opsgenie, elasticsearch, loki) share: one request with the
// response classified into an outputs.DeliveryError, Retry-After parsing,
// error texts that never carry the request URL (a Slack or Teams webhook
// URL is itself the credential), the [TEST] label and the console link;
// and (chat.go) what the chat and mail outputs share: required secrets,
// the JSON webhook sender of slack and teams, the lifecycle step a
// message shows and its detail fields.
package outhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-sec/vigil/internal/outputs"
)

// MaxResponse bounds how much of a response is read: receivers are
// outside Vigil's control and a hostile one must not make it buffer
// without limit.
const MaxResponse = 1 << 20

// MaxRetryAfter caps a receiver's Retry-After hint: a wrong or hostile
// hint must not park an output for days (the core's max_age still rules).
const MaxRetryAfter = time.Hour

// Request is one HTTP request of an output.
type Request struct {
	Method string
	URL    string // may hold a secret: never put in an error or a log
	Header http.Header
	Body   []byte
	// What names the request in errors ("pagerduty enqueue"): errors say
	// this instead of the URL.
	What string
	// Secrets are scrubbed from the response excerpt put in an error, in
	// case a receiver echoes a credential back.
	Secrets []outputs.Secret
}

// Do sends r with client and returns the response body (at most
// MaxResponse bytes) when the status is 2xx. A transport error is
// retryable; a non-2xx status is classified by outputs.HTTPStatusError
// (429/5xx retried with the Retry-After hint, other 4xx permanent).
func Do(ctx context.Context, client *http.Client, now func() time.Time, r Request) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		// The URL was checked at start; say nothing of it here.
		return nil, outputs.Permanent(fmt.Errorf("%s: cannot build the request", r.What))
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.What, StripURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the response: %w", r.What, StripURL(err))
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	ra := RetryAfter(resp.Header.Get("Retry-After"), now)
	ex := Excerpt(body)
	for _, sec := range r.Secrets {
		if v := sec.Reveal(); v != "" {
			ex = strings.ReplaceAll(ex, v, "[redacted]")
		}
	}
	return nil, fmt.Errorf("%s: %w", r.What, outputs.HTTPStatusError(resp.StatusCode, ex, ra))
}

// StripURL removes the request URL from a transport error: *url.Error
// prints it, and for webhook-style services the URL is the secret.
func StripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// RetryAfter parses an HTTP Retry-After value (RFC 9110 10.2.3: delay
// seconds or an HTTP date) into a delay in [0, MaxRetryAfter]; 0 when
// absent or unparsable.
func RetryAfter(v string, now func() time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		if now == nil {
			now = time.Now
		}
		d = t.Sub(now())
	} else {
		return 0
	}
	return min(max(d, 0), MaxRetryAfter)
}

// Excerpt is a short printable excerpt of a response body for an error.
func Excerpt(b []byte) string {
	const max = 200
	s := string(b)
	if len(s) > max {
		s = s[:max] + "…"
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// Label prefixes a test message's title so that nobody takes it for a
// real alert.
func Label(m outputs.Message, title string) string {
	if m.Test {
		return "[TEST] " + title
	}
	return title
}

// Title is the one-line title of m: the detection's title, else the
// event's message or type.
func Title(m outputs.Message) string {
	var t string
	switch {
	case m.Detection != nil && m.Detection.Title != "":
		t = m.Detection.Title
	case m.Event != nil && m.Event.Message != "":
		t = m.Event.Message
	case m.Event != nil:
		t = m.Event.Type
	}
	return Label(m, t)
}

// Severity is the SPEC severity name of m (the detection's, else the
// event's).
func Severity(m outputs.Message) string {
	if m.Detection != nil && m.Detection.Severity != "" {
		return m.Detection.Severity
	}
	if m.Event != nil {
		return m.Event.Severity.String()
	}
	return "info"
}

// Key is the key a paging service deduplicates m by: the detection id
// for a detection, else the event id (SPEC 13).
func Key(m outputs.Message) string {
	if m.Detection != nil && m.Detection.ID != "" {
		return m.Detection.ID
	}
	if m.Event != nil {
		return m.Event.ID
	}
	return ""
}

// EventID is m's event id ("" without an event).
func EventID(m outputs.Message) string {
	if m.Event != nil {
		return m.Event.ID
	}
	return ""
}

// ConsoleLink is the console's view of m's detection (or of the event
// when it is not a detection), "" when --public-url is unset.
func ConsoleLink(publicURL string, m outputs.Message) string {
	if publicURL == "" {
		return ""
	}
	base := strings.TrimRight(publicURL, "/")
	if m.Detection != nil && m.Detection.ID != "" {
		return base + "/#/detections/" + url.PathEscape(m.Detection.ID)
	}
	if m.Event != nil {
		return base + "/#/events/" + url.PathEscape(m.Event.ID)
	}
	return base + "/"
}

// CheckURL checks that raw is an absolute http(s) URL; name is the
// config key. The URL itself is not repeated in the error (it may be a
// secret).
func CheckURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s must be an absolute http(s) URL", name)
	}
	return nil
}

// Truncate cuts s to at most n bytes on a rune boundary (services limit
// field lengths and refuse longer ones).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// URLSecrets is what to scrub from errors for a URL that is a credential
// (a Slack or Teams webhook): the URL and its path and query, which a
// receiver may echo without the host.
func URLSecrets(u outputs.Secret) []outputs.Secret {
	out := []outputs.Secret{u}
	if p, err := url.Parse(u.Reveal()); err == nil {
		if p.EscapedPath() != "" && p.EscapedPath() != "/" {
			out = append(out, outputs.Secret(p.EscapedPath()))
		}
		if p.RawQuery != "" {
			out = append(out, outputs.Secret(p.RawQuery))
		}
	}
	return out
}
