package cef

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// Input is the metric label and the source of the HTTP CEF input.
const Input = "cef"

// Handler serves POST /api/v1/inputs/cef behind auth.Require (issue 9,
// item 2, "CEF as a line over HTTP"): a text/plain body with one CEF
// record per line, blank lines skipped, an optional syslog header before
// the first "CEF:" of a line ignored. The request is all or nothing: a
// line that is not CEF refuses the whole request with 400 naming the line,
// so a producer can fix and resend without anything stored twice or half
// stored (unlike syslog, HTTP has an answer to carry the error). The
// answer comes after the log acknowledged the events, as REST's.
// Build it with NewHandler.
type Handler struct {
	Ingest   *ingest.Service
	Metrics  *inputs.Metrics  // nil: not counted
	Logger   *slog.Logger     // nil: refusals are not logged
	refusals *inputs.Refusals // counted always, logged at a bounded rate
}

// NewHandler returns the handler; m and log may be nil.
func NewHandler(ing *ingest.Service, m *inputs.Metrics, log *slog.Logger) *Handler {
	return &Handler{Ingest: ing, Metrics: m, Logger: log, refusals: inputs.NewRefusals(Input, "cef input: request refused", m, log)}
}

// refused counts a refused request (n records dropped) and logs it at a
// bounded rate.
func (h *Handler) refused(r *http.Request, reason string, n int, err error) {
	h.refusals.Refuse(r.RemoteAddr, reason, 1, n, err)
}

// line is one non-blank line of the body and its 1-based number.
type line struct {
	n    int
	text string
}

// splitLines returns the non-blank lines of body (LF or CRLF ends a line).
func splitLines(body []byte) []line {
	var out []line
	for i, s := range strings.Split(string(body), "\n") {
		s = strings.TrimSuffix(s, "\r")
		if strings.TrimSpace(s) == "" {
			continue
		}
		out = append(out, line{n: i + 1, text: s})
	}
	return out
}

// mapLine maps one line: the text from its first "CEF:" (what precedes it,
// a syslog header or a host name, is ignored) through the CEF mapper.
func mapLine(text string) (*event.Event, error) {
	if !utf8.ValidString(text) {
		return nil, errors.New("not valid UTF-8")
	}
	i := strings.Index(text, "CEF:")
	if i < 0 {
		return nil, errors.New(`no "CEF:" in the line`)
	}
	// What cef.Mapper does (Parse, ToEvent), but keeping the parse error
	// (the mapper drops it: the syslog chain falls back to the raw text)
	// and the record, for its dvchost.
	r, err := Parse(text[i:])
	if err != nil {
		return nil, err
	}
	ev := ToEvent(r, text[i:])
	// The device's host name when the record names it: the source then
	// says which appliance sent it, as syslog's hostname does.
	ev.Source = Input
	if h := r.Ext["dvchost"]; h != "" {
		ev.Source = h + "/" + Input
	}
	return ev, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if !p.CanPublish() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not publish events", p.Role))
		return
	}
	// Refuse a body of the wrong type before reading it. No Content-Type
	// is accepted (some HTTP senders set none); a charset must be UTF-8
	// (or its subset ASCII), the encoding of every event string.
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		cs := strings.ToLower(params["charset"])
		if err != nil || mt != "text/plain" || (cs != "" && cs != "utf-8" && cs != "us-ascii") {
			h.refused(r, "content_type", 0, fmt.Errorf("content type %q", ct))
			w.Header().Set("Accept-Post", "text/plain; charset=utf-8")
			auth.WriteError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: CEF records are text/plain (UTF-8), one per line", ct))
			return
		}
	}
	lim := h.Ingest.Limits()
	body, err := ingest.ReadBody(w, r, int64(lim.MaxBatchBytes))
	if err != nil {
		reason := "read"
		var tl *ingest.ErrBodyTooLarge
		if errors.As(err, &tl) {
			reason = "too_large"
		}
		h.refused(r, reason, 0, err)
		ingest.WriteBodyError(w, err)
		return
	}
	lines := splitLines(body)
	h.Metrics.Receive(Input, len(lines))
	if len(lines) == 0 {
		h.refused(r, "empty", 0, errors.New("no records"))
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "no CEF record in the body (one record per line)"))
		return
	}
	if len(lines) > lim.MaxBatchCount {
		err := fmt.Errorf("%d CEF records in one request, more than the limit of %d (max_batch_events, --max-batch-events)", len(lines), lim.MaxBatchCount)
		h.refused(r, "too_large", len(lines), err)
		auth.WriteErr(w, domain.Errorf(domain.KindTooLarge, "%w", err))
		return
	}
	events := make([]*event.Event, len(lines))
	for i, l := range lines {
		start := time.Now()
		ev, err := mapLine(l.text)
		if h.Metrics != nil {
			h.Metrics.ParseTime.WithLabelValues(Input).Observe(time.Since(start).Seconds())
		}
		if err != nil {
			err = fmt.Errorf("line %d: %w (nothing of this request was stored)", l.n, err)
			h.refused(r, "decode", len(lines), err)
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
			return
		}
		events[i] = ev
	}
	acks, err := h.Ingest.Publish(r.Context(), p, events)
	if err != nil {
		h.refused(r, publishReason(err), len(lines), err)
		ingest.WritePublishError(w, withLines(err, lines))
		return
	}
	h.Metrics.Store(Input, len(acks))
	ingest.WriteAcks(w, acks)
}

// withLines names the body's line in each problem of a refused batch (the
// problem's index is the record's index among the non-blank lines, which
// a producer cannot see in its file).
func withLines(err error, lines []line) error {
	var be *event.BatchError
	if !errors.As(err, &be) {
		return err
	}
	out := *be
	out.Problems = make([]event.Problem, len(be.Problems))
	for i, pr := range be.Problems {
		if pr.Index >= 0 && pr.Index < len(lines) {
			pr.Reason = fmt.Sprintf("line %d: %s", lines[pr.Index].n, pr.Reason)
		}
		out.Problems[i] = pr
	}
	return &out
}

// publishReason is the errors{reason} label of a refused publish.
func publishReason(err error) string {
	var be *event.BatchError
	switch {
	case errors.As(err, &be):
		return "invalid"
	case errors.Is(err, ingest.ErrForbidden):
		return "forbidden"
	}
	return "store"
}
