package outputtest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
)

// Recorder is the bookkeeping of a loopback receiver (a fake PagerDuty,
// Slack, ...): what it accepted, and a reply hook that answers instead
// of accepting, to play the service's errors. The receiver's handler
// checks the vendor format; Recorder only keeps what it is given.
type Recorder[T any] struct {
	mu    sync.Mutex
	got   []T
	reply func(w http.ResponseWriter) bool
}

// SetReply makes the receiver answer with f (nil: accept again); f
// returns false to let the request through.
func (r *Recorder[T]) SetReply(f func(w http.ResponseWriter) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reply = f
}

// Replied runs the reply hook, if any: true when it answered the request.
func (r *Recorder[T]) Replied(w http.ResponseWriter) bool {
	r.mu.Lock()
	f := r.reply
	r.mu.Unlock()
	return f != nil && f(w)
}

// Record keeps an accepted request.
func (r *Recorder[T]) Record(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, v)
}

// Take returns the requests accepted since the last Take.
func (r *Recorder[T]) Take() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// Deliver sends msgs through s, which must succeed, and returns what the
// receiver accepted for them.
func (r *Recorder[T]) Deliver(t testing.TB, s outputs.Sender, msgs ...outputs.Message) []T {
	t.Helper()
	if err := s.Send(context.Background(), msgs); err != nil {
		t.Fatalf("Send: %v", err)
	}
	return r.Take()
}

// Serve starts h on a loopback port for the test's lifetime and returns
// the server and an Env (see Env) whose client trusts it.
func Serve(t testing.TB, h http.Handler) (*httptest.Server, outputs.Env, *LogBuffer) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	env, logs := Env(t, srv.Client())
	return srv, env, logs
}

// NewSender builds typ's sender from opts and closes it when the test
// ends.
func NewSender(t testing.TB, typ outputs.Type, opts any, env outputs.Env) outputs.Sender {
	t.Helper()
	s, err := typ.New(opts, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() }) // a test sender: nothing to report
	return s
}

// StatusCase is one error answer of a receiver and how the output must
// classify it.
type StatusCase struct {
	Status     int
	RetryAfter string // the Retry-After header; "" for none
	Body       string
	Permanent  bool
	After      time.Duration // the DeliveryError's RetryAfter, to the second
}

// Answer is a reply hook answering with c.
func (c StatusCase) Answer(w http.ResponseWriter) bool {
	if c.RetryAfter != "" {
		w.Header().Set("Retry-After", c.RetryAfter)
	}
	w.WriteHeader(c.Status)
	_, _ = io.WriteString(w, c.Body) // the client under test reads it or not
	return true
}

// CheckStatuses plays each case: setReply installs the case's answer,
// send delivers one message; the error must be a DeliveryError classified
// as the case says and must not hold any of secrets. The reply hook is
// cleared at the end.
func CheckStatuses(t testing.TB, setReply func(func(http.ResponseWriter) bool), send func(context.Context) error, cases []StatusCase, secrets ...string) {
	t.Helper()
	defer setReply(nil)
	for _, c := range cases {
		setReply(c.Answer)
		err := send(context.Background())
		var de *outputs.DeliveryError
		if err == nil || !errors.As(err, &de) {
			t.Errorf("%d %q: %v, want a delivery error", c.Status, c.Body, err)
			continue
		}
		if outputs.IsPermanent(err) != c.Permanent || de.RetryAfter.Round(time.Second) != c.After {
			t.Errorf("%d %q: permanent %v, retry after %v; want %v, %v (%v)", c.Status, c.Body,
				outputs.IsPermanent(err), de.RetryAfter, c.Permanent, c.After, err)
		}
		for _, sec := range secrets {
			if strings.Contains(err.Error(), sec) {
				t.Errorf("%d: the secret %q is in the error: %v", c.Status, sec, err)
			}
		}
	}
}

// ConfigError checks that typ refuses opts (a pointer to its options)
// with an error saying want and holding none of secrets.
func ConfigError(t testing.TB, typ outputs.Type, opts any, env outputs.Env, want string, secrets ...string) {
	t.Helper()
	s, err := typ.New(opts, env)
	if err == nil {
		_ = s.Close()
		t.Errorf("%+v: accepted, want an error saying %q", opts, want)
		return
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%+v: %v, want %q", opts, err, want)
	}
	for _, sec := range secrets {
		if strings.Contains(err.Error(), sec) {
			t.Errorf("%+v: the secret %q is in the error: %v", opts, sec, err)
		}
	}
}

// Refusal is a receiver's answer to a request that does not follow the
// vendor's documented format: the test fails (the output sent it), and
// the output gets status and body, what the vendor answers.
func Refusal(t testing.TB, w http.ResponseWriter, status int, body string) func(format string, args ...any) {
	return func(format string, args ...any) {
		t.Helper()
		t.Errorf("request does not follow the documented format: "+format, args...)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// JSONPost checks what every JSON API receiver checks first: a POST of
// application/json to target (the path, with ?query when it has one; ""
// for any). It refuses the request with bad and returns false otherwise.
func JSONPost(r *http.Request, target string, bad func(format string, args ...any)) bool {
	if r.Method != http.MethodPost || (target != "" && r.URL.RequestURI() != target) {
		bad("%s %s", r.Method, r.URL.RequestURI())
		return false
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		bad("Content-Type %q", ct)
		return false
	}
	return true
}

// CheckDown closes srv (the receiver is down): send must then fail with
// a retryable error that holds none of secrets.
func CheckDown(t testing.TB, srv *httptest.Server, send func(context.Context) error, secrets ...string) {
	t.Helper()
	srv.Close()
	err := send(context.Background())
	if err == nil || outputs.IsPermanent(err) {
		t.Errorf("receiver down: %v, want a retryable error", err)
		return
	}
	for _, sec := range secrets {
		if strings.Contains(err.Error(), sec) {
			t.Errorf("receiver down: the secret %q is in the error: %v", sec, err)
		}
	}
}
