package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Ack is the server's answer for one published event.
type Ack struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// Client talks to one Vigil server.
type Client struct {
	base    *url.URL
	token   string
	http    *http.Client
	retries int
	backoff time.Duration

	// TLS for https:// and wss:// (nil: the system's roots).
	tlsConfig  *tls.Config
	caFile     string
	customHTTP bool
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the default HTTP client. Its transport then
// decides how HTTPS requests are verified; WithTLSConfig and WithCAFile
// still apply to WebSocket subscriptions.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http, c.customHTTP = h, true } }

// WithTLSConfig sets the TLS configuration for https:// and wss://: the
// CAs to trust (RootCAs), a client certificate for servers that require
// one (Certificates). The client keeps a copy.
func WithTLSConfig(cfg *tls.Config) Option { return func(c *Client) { c.tlsConfig = cfg.Clone() } }

// WithCAFile trusts only the PEM CA certificates in path for https:// and
// wss:// (like curl --cacert); it combines with WithTLSConfig.
func WithCAFile(path string) Option { return func(c *Client) { c.caFile = path } }

// WithRetries sets how often a failed publish is retried (default 5).
func WithRetries(n int) Option { return func(c *Client) { c.retries = n } }

// New returns a client for server (http://host:port or https://host:port)
// with a bearer token.
func New(server, token string, opts ...Option) (*Client, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("client: server url: %w", err)
	}
	c := &Client{base: u, token: token, http: &http.Client{Timeout: 60 * time.Second}, retries: 5, backoff: 100 * time.Millisecond}
	for _, o := range opts {
		o(c)
	}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("client: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: CA file %s: no PEM certificate in it", c.caFile)
		}
		if c.tlsConfig == nil {
			c.tlsConfig = &tls.Config{}
		}
		c.tlsConfig.RootCAs = pool
	}
	if c.tlsConfig != nil && c.tlsConfig.MinVersion == 0 {
		c.tlsConfig.MinVersion = tls.VersionTLS12
	}
	if !c.customHTTP {
		c.http.Transport = newTransport(c.tlsConfig)
	}
	return c, nil
}

// maxIdleConnsPerServer is how many idle connections to the server the
// default transport keeps. net/http's default is 2: a Client shared by
// more concurrent publishers than that (vigil bench runs 20) closed a
// connection after almost every request and opened a new one for the
// next, which cost the server an accept, a close and a new connection's
// buffers per request (docs/performance.md, "Load shape and connection reuse").
const maxIdleConnsPerServer = 64

// newTransport is the Client's own HTTP transport: net/http's defaults but
// for the idle connections kept, with the TLS configuration (nil: the
// system's roots).
func newTransport(tlsConfig *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = max(tr.MaxIdleConns, maxIdleConnsPerServer)
	tr.MaxIdleConnsPerHost = maxIdleConnsPerServer
	if tlsConfig != nil {
		// Its own copy: the transport adds "h2" to NextProtos on first
		// use, while WebSocket dials clone c.tlsConfig concurrently.
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	return tr
}

// HTTPClient is the HTTP client requests go through (with the client's
// TLS configuration unless WithHTTPClient replaced it).
func (c *Client) HTTPClient() *http.Client { return c.http }

// TLSConfig is the TLS configuration for https:// and wss:// (nil: the
// system's defaults). Callers must not change it.
func (c *Client) TLSConfig() *tls.Config { return c.tlsConfig }

// BaseURL is the server address the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// Token is the bearer token the client sends.
func (c *Client) Token() string { return c.token }

// Error is a non-2xx answer from the server.
type Error struct {
	Status  int
	Message string    `json:"error"`
	Details []Problem `json:"details"`
}

func (e *Error) Error() string {
	// No "vigil:" prefix: callers (the CLI) add their own.
	msg := fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	for _, d := range e.Details {
		msg += fmt.Sprintf("\n  event %d %s: %s", d.Index, d.Field, d.Reason)
	}
	return msg
}

// retryable reports whether a publish may be retried: network errors and
// 5xx/429, never a rejection of the events themselves.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return !tlsRefused(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// tlsRefused reports a TLS failure that retrying cannot fix: the server's
// certificate is not trusted (wrong or missing CA), or the server refused
// the handshake (e.g. no client certificate).
func tlsRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var op *net.OpError // crypto/tls reports the peer's alert as Op "remote error"
	return errors.As(err, &verify) || (errors.As(err, &op) && op.Op == "remote error")
}

// Publish sends events and returns their acks. Events without an id get a
// UUIDv7 before the first attempt, so a retry after a lost answer is
// acknowledged as a duplicate rather than stored twice.
func (c *Client) Publish(ctx context.Context, events []*Event) ([]Ack, error) {
	for _, e := range events {
		if e.ID == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("client: id: %w", err)
			}
			e.ID = id.String()
		}
	}
	body, err := json.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("client: encode: %w", err)
	}
	return c.PublishRaw(ctx, body, "application/json")
}

// PublishRaw sends an already-encoded body (JSON object, array or NDJSON).
// It retries only what is safe: bodies whose events all carry ids, or
// failures before the server answered.
func (c *Client) PublishRaw(ctx context.Context, body []byte, contentType string) ([]Ack, error) {
	var out struct {
		Accepted int   `json:"accepted"`
		Events   []Ack `json:"events"`
	}
	var err error
	for attempt := 0; ; attempt++ {
		err = c.do(ctx, http.MethodPost, "/api/v1/events", contentType, body, &out)
		if err == nil || attempt >= c.retries || !retryable(err) {
			break
		}
		wait := c.backoff << attempt
		wait += time.Duration(rand.Int64N(int64(wait)/2 + 1))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	if err != nil {
		return nil, err
	}
	return out.Events, nil
}

// Get fetches one event by id.
func (c *Client) Get(ctx context.Context, id string) (*Event, error) {
	var e Event
	if err := c.do(ctx, http.MethodGet, "/api/v1/events/"+url.PathEscape(id), "", nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// History runs GET /api/v1/events with query parameters.
func (c *Client) History(ctx context.Context, q url.Values) ([]*Event, *uint64, error) {
	var out struct {
		Events []*Event `json:"events"`
		Next   *uint64  `json:"next"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/events?"+q.Encode(), "", nil, &out); err != nil {
		return nil, nil, err
	}
	return out.Events, out.Next, nil
}

// Do sends an authenticated request to path and decodes a JSON answer into
// out (when non-nil). It is exported for the CLI's admin commands.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("client: encode: %w", err)
		}
	}
	return c.do(ctx, method, path, "application/json", body, out)
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	u := *c.base
	rel, err := url.Parse(path)
	if err != nil {
		return fmt.Errorf("client: path: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + rel.Path
	u.RawQuery = rel.RawQuery
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("client: request: %w", err)
	}
	if contentType != "" && body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("client: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("client: decode answer: %w", err)
		}
	}
	return nil
}

func (c *Client) wsURL(path string) string {
	u := *c.base
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}
