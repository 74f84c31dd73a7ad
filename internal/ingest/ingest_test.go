package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// memLog is an Appender that keeps what it is given (or fails).
type memLog struct {
	got  []*event.Event
	fail error
}

func (l *memLog) Append(_ context.Context, events []*event.Event) ([]domain.Ack, error) {
	if l.fail != nil {
		return nil, l.fail
	}
	acks := make([]domain.Ack, len(events))
	for i, e := range events {
		l.got = append(l.got, e)
		acks[i] = domain.Ack{ID: e.ID, Seq: uint64(len(l.got))}
	}
	return acks, nil
}

func newEvent(typ string) *event.Event {
	return &event.Event{Type: typ, Category: event.CategoryAuthentication, Severity: event.SeverityLow, Source: "test", Message: "m"}
}

var publisher = &auth.Principal{ID: "p", Role: auth.RolePublisher, Tenant: "acme"}

func TestPublishStampsAndAppends(t *testing.T) {
	l := &memLog{}
	s := New(l, event.DefaultLimits(), nil)
	acks, err := s.Publish(context.Background(), publisher, []*event.Event{newEvent("auth.login")})
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 1 || acks[0].Seq != 1 || acks[0].ID == "" {
		t.Fatalf("acks %+v", acks)
	}
	if e := l.got[0]; e.Tenant != "acme" || e.ID != acks[0].ID || e.ReceivedAt.IsZero() {
		t.Fatalf("event not stamped: tenant %q id %q received %v", e.Tenant, e.ID, e.ReceivedAt)
	}
}

func TestPublishRefusals(t *testing.T) {
	l := &memLog{}
	s := New(l, event.DefaultLimits(), nil)
	viewer := &auth.Principal{ID: "v", Role: auth.RoleViewer, Tenant: "acme"}
	if _, err := s.Publish(context.Background(), viewer, []*event.Event{newEvent("auth.login")}); !errors.Is(err, ErrForbidden) || !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("viewer: %v, want ErrForbidden of kind forbidden", err)
	}
	bad := newEvent("auth.login")
	bad.Type = ""
	_, err := s.Publish(context.Background(), publisher, []*event.Event{newEvent("auth.login"), bad})
	var be *event.BatchError
	if !errors.As(err, &be) || len(be.Problems) != 1 || be.Problems[0].Index != 1 {
		t.Fatalf("invalid batch: %v", err)
	}
	if len(l.got) != 0 {
		t.Fatalf("%d events of an invalid batch stored", len(l.got))
	}
	l.fail = errors.New("no quorum")
	if _, err := s.Publish(context.Background(), publisher, []*event.Event{newEvent("auth.login")}); err == nil || !strings.Contains(err.Error(), "no quorum") {
		t.Fatalf("log failure: %v", err)
	}
}

// TestHTTPAnswers pins the status and body of every answer the shared
// HTTP ingest helpers give (REST and the HTTP inputs use them).
func TestHTTPAnswers(t *testing.T) {
	cases := []struct {
		name   string
		write  func(w http.ResponseWriter)
		status int
		substr string
	}{
		{"acks", func(w http.ResponseWriter) { WriteAcks(w, []domain.Ack{{ID: "a", Seq: 7}}) }, 200, `"events":[{"id":"a","seq":7}]`},
		{"too large body", func(w http.ResponseWriter) { WriteBodyError(w, fmt.Errorf("x: %w", &ErrBodyTooLarge{Limit: 10})) }, 413, "larger than 10 bytes"},
		{"broken body", func(w http.ResponseWriter) { WriteBodyError(w, errors.New("unexpected EOF")) }, 400, "unexpected EOF"},
		{"invalid batch", func(w http.ResponseWriter) {
			WritePublishError(w, &event.BatchError{Problems: []event.Problem{{Index: 2, Field: "type", Reason: "required"}}})
		}, 400, `"details":[{"index":2`},
		{"batch too large", func(w http.ResponseWriter) { WritePublishError(w, &event.BatchError{TooLarge: true}) }, 413, "invalid events"},
		{"unsupported", func(w http.ResponseWriter) { WritePublishError(w, &event.BatchError{Unsupported: true}) }, 415, "invalid events"},
		{"forbidden", func(w http.ResponseWriter) { WritePublishError(w, fmt.Errorf("publish: %w", ErrForbidden)) }, 403, "may not publish"},
		{"log down", func(w http.ResponseWriter) { WritePublishError(w, errors.New("timeout")) }, 503, "retrying with the same ids is safe"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			c.write(rec)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, c.status, rec.Body)
			}
			if !json.Valid(rec.Body.Bytes()) || !strings.Contains(rec.Body.String(), c.substr) {
				t.Fatalf("body %s lacks %q", rec.Body, c.substr)
			}
		})
	}
}

func TestReadBodyLimit(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 11)))
	if _, err := ReadBody(httptest.NewRecorder(), req, 10); !errors.Is(err, domain.ErrTooLarge) {
		t.Fatalf("11 bytes over a limit of 10: %v", err)
	}
	req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789"))
	if b, err := ReadBody(httptest.NewRecorder(), req, 10); err != nil || len(b) != 10 {
		t.Fatalf("10 bytes at a limit of 10: %d, %v", len(b), err)
	}
}

// TestReadBodyAllocatesOnceForItsContentLength: a body whose request
// gives its length is read into one buffer of that size (not grown from
// 512 bytes as it arrives), and a request that announces more than it
// sends does not make the server allocate what it announced.
func TestReadBodyAllocatesOnceForItsContentLength(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 7000) // about a batch of 10 events
	read := func(announced int64, sent []byte) []byte {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/events", bytes.NewReader(sent))
		r.ContentLength = announced
		got, err := ReadBody(httptest.NewRecorder(), r, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	var got []byte
	allocs := testing.AllocsPerRun(50, func() { got = read(int64(len(body)), body) })
	if !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, want the body's %d", len(got), len(body))
	}
	if c := cap(got); c > len(body)+bytes.MinRead {
		t.Fatalf("buffer of %d bytes for a body of %d: grown while reading", c, len(body))
	}
	t.Logf("%.0f allocations per read (request and recorder included)", allocs)
	// Announced 1 MiB, sent 10 bytes: at most the prealloc bound.
	if c := cap(read(1<<20, []byte("0123456789"))); c > maxBodyPrealloc+bytes.MinRead {
		t.Fatalf("announced 1 MiB, sent 10 bytes: %d bytes allocated", c)
	}
	// A large body, sent whole: sized once its first part came, not
	// doubled past it (the body budget counts Content-Length).
	large := bytes.Repeat([]byte("y"), 900_000)
	if got := read(int64(len(large)), large); !bytes.Equal(got, large) || cap(got) > len(large)+len(large)/100 { // a malloc size class above it at most
		t.Fatalf("a body of %d bytes: read %d into a buffer of %d", len(large), len(got), cap(got))
	}
}
