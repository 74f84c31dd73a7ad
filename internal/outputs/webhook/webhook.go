// Package webhook is the generic webhook output (SPEC 13): each message
// is POSTed as the Vigil event's JSON, with the headers
//
//	X-Vigil-Delivery:  <event id>        (idempotency key: drop repeats)
//	X-Vigil-Event:     <event type>
//	X-Vigil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// signed as Stripe and Slack sign, so a receiver can check both origin and
// freshness (docs/outputs.md has the verification recipe).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
)

// Options are the webhook's own keys.
type Options struct {
	URL        string `yaml:"url"`
	Secret     string `yaml:"secret"` // ${ENV_NAME} only
	SecretFile string `yaml:"secret_file"`
	// Headers are added to every request (e.g. a receiver's API key read
	// from the environment: values may be ${ENV_NAME}).
	Headers map[string]string `yaml:"headers"`
}

// Type is the webhook output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "webhook",
		NewOptions: func() any { return &Options{} },
		New:        New,
		// Send keeps no state between calls (the HTTP client is safe for
		// concurrent use): concurrency above 1 is allowed.
		Concurrent: true,
	}
}

// Header names.
const (
	HeaderDelivery  = "X-Vigil-Delivery"
	HeaderEvent     = "X-Vigil-Event"
	HeaderSignature = "X-Vigil-Signature"
	HeaderTest      = "X-Vigil-Test"
)

// reserved headers cannot be overridden by the headers option.
var reserved = []string{HeaderDelivery, HeaderEvent, HeaderSignature, HeaderTest, "Content-Type", "Content-Length", "Host"}

// Sender posts to one URL.
type Sender struct {
	url     string
	secret  outputs.Secret
	headers http.Header
	http    *http.Client
	now     func() time.Time
}

// New checks the options and builds the sender.
func New(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("webhook: options are %T", o)
	}
	if opts.URL == "" {
		return nil, errors.New("url is missing")
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url must be an absolute http:// or https:// URL")
	}
	secret, err := outputs.ResolveSecret("secret", opts.Secret, opts.SecretFile)
	if err != nil {
		return nil, err
	}
	s := &Sender{url: opts.URL, secret: secret, headers: http.Header{}, http: env.HTTP, now: env.Now}
	if s.http == nil {
		s.http = &http.Client{Timeout: outputs.DefaultTimeout}
	}
	if s.now == nil {
		s.now = time.Now
	}
	for k, v := range opts.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		for _, r := range reserved {
			if ck == r {
				return nil, fmt.Errorf("headers: %s is set by Vigil", ck)
			}
		}
		if strings.HasPrefix(v, "${") {
			sv, err := outputs.ResolveSecret("headers."+k, v, "")
			if err != nil {
				return nil, err
			}
			v = sv.Reveal()
		}
		s.headers.Set(ck, v)
	}
	return s, nil
}

// Sign returns the X-Vigil-Signature value for body at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a X-Vigil-Signature header against body: the HMAC, and
// that t is within tolerance of now (replays of an old request fail).
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("signature: no valid t=")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature: timestamp %s off by %s", ts, d)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("signature: no v1 matches")
}

// Send posts each message in turn (the core hands a webhook one message
// per call).
func (s *Sender) Send(ctx context.Context, msgs []outputs.Message) error {
	for _, m := range msgs {
		if err := s.post(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sender) post(ctx context.Context, m outputs.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(m.Body))
	if err != nil {
		return outputs.Permanent(fmt.Errorf("webhook: request: %w", err))
	}
	for k, v := range s.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Vigil-Webhook/1")
	req.Header.Set(HeaderDelivery, m.Event.ID)
	req.Header.Set(HeaderEvent, m.Event.Type)
	if m.Test {
		req.Header.Set(HeaderTest, "true")
	}
	if s.secret != "" {
		req.Header.Set(HeaderSignature, Sign([]byte(s.secret.Reveal()), s.now(), m.Body))
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err) // network: retried
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep-alive
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return outputs.HTTPStatusError(resp.StatusCode, strings.TrimSpace(string(excerpt)), retryAfter(resp.Header.Get("Retry-After"), s.now()))
}

// retryAfter reads Retry-After: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Close releases idle connections.
func (s *Sender) Close() error {
	s.http.CloseIdleConnections()
	return nil
}
