// Package rest owns Vigil's plain HTTP endpoints over events: ingest
// (POST /api/v1/events), history (GET /api/v1/events), one event by id, the
// health probes and the OpenAPI description. Handlers translate HTTP to the
// ingest service, the log and the filter model; they hold no logic of their
// own beyond that translation.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/hub"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/store"
)

// Log is the log as the REST handlers read it.
type Log interface {
	Head(ctx context.Context) (uint64, error)
	First(ctx context.Context) (uint64, error)
	ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
	SeqForTime(ctx context.Context, t time.Time) (uint64, error)
	// Find: the newest event with the id that keep accepts (ids are
	// unique per tenant only).
	Find(ctx context.Context, id string, keep func(*event.Event) bool) (*event.Event, error)
	Ready(ctx context.Context) error
}

// Events serves the event endpoints.
type Events struct {
	Ingest *ingest.Service
	Log    Log
	Policy hub.Policy
	// MaxScan bounds how many stored events one history request examines,
	// so a rare filter over a long log cannot pin the server.
	MaxScan int
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error   string          `json:"error"`
	Details []event.Problem `json:"details,omitempty"`
}

// Publish handles POST /api/v1/events.
func (h *Events) Publish(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if !p.CanPublish() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not publish events", p.Role))
		return
	}
	// Refuse a body of the wrong type before reading it.
	if _, err := event.IngestMediaType(r.Header.Get("Content-Type")); err != nil {
		w.Header().Set("Accept-Post", strings.Join(event.IngestMediaTypes(), ", "))
		WriteJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: err.Error()})
		return
	}
	lim := h.Ingest.Limits()
	body, err := ReadBody(w, r, int64(lim.MaxBatchBytes))
	if err != nil {
		WriteBodyError(w, err)
		return
	}
	events, err := event.Decode(body, r.Header.Get("Content-Type"), lim)
	if err == nil {
		var acks []domain.Ack
		acks, err = h.Ingest.Publish(r.Context(), p, events)
		if err == nil {
			WriteAcks(w, acks)
			return
		}
	}
	WritePublishError(w, err)
}

// The helpers shared by every HTTP ingest path live in internal/ingest
// (http.go), so that the inputs (Falco, OTLP, CEF over HTTP) need not
// import this transport; these names keep the package's API.

// ErrBodyTooLarge is returned by ReadBody for a body over its limit.
type ErrBodyTooLarge = ingest.ErrBodyTooLarge

// ReadBody reads r's body, at most limit bytes (ingest.ReadBody).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	return ingest.ReadBody(w, r, limit)
}

// WriteBodyError answers a ReadBody error (ingest.WriteBodyError).
func WriteBodyError(w http.ResponseWriter, err error) { ingest.WriteBodyError(w, err) }

// WriteAcks answers a stored batch (ingest.WriteAcks).
func WriteAcks(w http.ResponseWriter, acks []domain.Ack) { ingest.WriteAcks(w, acks) }

// WritePublishError answers an error of decoding or Publish
// (ingest.WritePublishError).
func WritePublishError(w http.ResponseWriter, err error) { ingest.WritePublishError(w, err) }

// Get handles GET /api/v1/events/{id}.
func (h *Events) Get(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if !p.CanRead() { // issue 5: same answer as history for a role that may not read
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read events", p.Role))
		return
	}
	id := r.PathValue("id")
	var visible *event.Event
	_, err := h.Log.Find(r.Context(), id, func(e *event.Event) bool {
		v, ok := h.Policy(p, e)
		visible = v
		return ok
	})
	if err != nil {
		// Another tenant's event with this id is "not found" too: do not
		// reveal other tenants' ids.
		if errors.Is(err, domain.ErrNotFound) {
			auth.WriteErr(w, domain.Errorf(domain.KindNotFound, "no event %q", id))
			return
		}
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(visible.JSON())
}

// historyQuery is the parsed form of GET /api/v1/events.
type historyQuery struct {
	matcher  *filter.Matcher
	sinceSeq uint64
	cursor   uint64
	since    time.Time
	until    time.Time
	limit    int
	asc      bool
}

func parseHistory(r *http.Request) (historyQuery, error) {
	q := r.URL.Query()
	hq := historyQuery{limit: 100}
	f, err := filter.FromQuery(q, "since_seq", "since", "until", "limit", "order", "cursor")
	if err != nil {
		return hq, err
	}
	if hq.matcher, err = filter.Compile(f); err != nil {
		return hq, err
	}
	uintParam := func(name string) (uint64, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, &filter.Error{Field: name, Reason: fmt.Sprintf("%q is not a non-negative integer", v)}
		}
		return n, nil
	}
	if hq.sinceSeq, err = uintParam("since_seq"); err != nil {
		return hq, err
	}
	if hq.cursor, err = uintParam("cursor"); err != nil {
		return hq, err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000 {
			return hq, &filter.Error{Field: "limit", Reason: "must be an integer from 1 to 10000"}
		}
		hq.limit = n
	}
	for name, dst := range map[string]*time.Time{"since": &hq.since, "until": &hq.until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return hq, &filter.Error{Field: name, Reason: fmt.Sprintf("%q is not an RFC 3339 time", v)}
			}
			*dst = t
		}
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		hq.asc = true
	default:
		return hq, &filter.Error{Field: "order", Reason: `must be "asc" or "desc"`}
	}
	return hq, nil
}

// History handles GET /api/v1/events. since/until bound the log time
// (received_at); the response's next is the cursor for the following page.
func (h *Events) History(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read events", p.Role))
		return
	}
	hq, err := parseHistory(r)
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
		return
	}
	ctx := r.Context()
	lo, hi, err := h.bounds(ctx, hq)
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	events, next, err := h.collect(ctx, p, hq, lo, hi)
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
		return
	}
	raws := make([]json.RawMessage, len(events))
	for i, e := range events {
		raws[i] = e.JSON()
	}
	var nextV any
	if next != 0 {
		nextV = next
	}
	WriteJSON(w, http.StatusOK, map[string]any{"events": raws, "next": nextV})
}

// Query runs a history query for another transport (issue 4: GraphQL's
// events query), so history has one implementation. asc returns events
// with seq >= from, oldest first; otherwise events with seq <= from (0: the
// head), newest first. next is where the following page starts (0: none).
func (h *Events) Query(ctx context.Context, p *auth.Principal, m *filter.Matcher, limit int, asc bool, from uint64) ([]*event.Event, uint64, error) {
	hq := historyQuery{matcher: m, limit: limit, asc: asc}
	if asc {
		hq.sinceSeq = from
	} else {
		hq.cursor = from
	}
	lo, hi, err := h.bounds(ctx, hq)
	if err != nil {
		return nil, 0, err
	}
	return h.collect(ctx, p, hq, lo, hi)
}

// bounds turns seq and time parameters into an inclusive seq range.
func (h *Events) bounds(ctx context.Context, hq historyQuery) (lo, hi uint64, err error) {
	if hi, err = h.Log.Head(ctx); err != nil {
		return 0, 0, err
	}
	if lo, err = h.Log.First(ctx); err != nil {
		return 0, 0, err
	}
	if lo == 0 {
		lo = 1
	}
	lo = max(lo, hq.sinceSeq)
	if !hq.since.IsZero() {
		s, err := h.Log.SeqForTime(ctx, hq.since)
		if err != nil {
			return 0, 0, err
		}
		lo = max(lo, s)
	}
	if !hq.until.IsZero() {
		s, err := h.Log.SeqForTime(ctx, hq.until)
		if err != nil {
			return 0, 0, err
		}
		hi = min(hi, s-1)
	}
	if hq.cursor != 0 {
		if hq.asc {
			lo = max(lo, hq.cursor)
		} else {
			hi = min(hi, hq.cursor)
		}
	}
	return lo, hi, nil
}

const historyChunk = 4096

// historyTimeout bounds the scan of one history page, like maxScan: a
// request with a costly filter over a long log gets the events found so
// far and the cursor to go on from (as GraphQL's timeout bounds its
// queries), not a minute of the node's CPU.
const historyTimeout = 10 * time.Second

// collect scans [lo, hi] in the requested order and returns up to limit
// visible matching events, and the cursor for the next page (0: none).
func (h *Events) collect(ctx context.Context, p *auth.Principal, hq historyQuery, lo, hi uint64) ([]*event.Event, uint64, error) {
	var out []*event.Event
	scanned := 0
	maxScan := h.MaxScan
	if maxScan <= 0 {
		maxScan = 1_000_000
	}
	deadline := time.Now().Add(historyTimeout)
	take := func(e *event.Event) bool {
		scanned++
		// Matched on the form the reader sees, and only that: a masked
		// reader matched on the unmasked event as well could probe its
		// values with a filter true on every masked form (issue 5, the
		// filter oracle). MatchClass first: masking is the costly part.
		if hq.matcher.MatchClass(e) {
			if v, ok := h.Policy(p, e); ok && hq.matcher.Match(v) {
				out = append(out, v)
			}
		}
		// Past its bounds (maxScan, historyTimeout) the page is short and
		// the cursor goes on after e, which was taken or left above.
		return len(out) < hq.limit && scanned < maxScan && (scanned%1024 != 0 || time.Now().Before(deadline))
	}
	if lo > hi || hi == 0 {
		return nil, 0, nil
	}
	if hq.asc {
		var last uint64
		err := h.Log.ScanRange(ctx, lo, hi, func(e *event.Event) bool { last = e.Seq; return take(e) })
		if err != nil || last == 0 || last >= hi {
			return out, 0, err
		}
		return out, last + 1, nil
	}
	// Newest first: read chunks backwards from hi, each chunk forward.
	end := hi
	for {
		start := lo
		if end >= lo+historyChunk {
			start = end - historyChunk + 1
		}
		var chunk []*event.Event
		if err := h.Log.ScanRange(ctx, start, end, func(e *event.Event) bool {
			chunk = append(chunk, e)
			return true
		}); err != nil {
			return out, 0, err
		}
		slices.Reverse(chunk)
		for _, e := range chunk {
			if !take(e) {
				if e.Seq <= lo {
					return out, 0, nil
				}
				return out, e.Seq - 1, nil
			}
		}
		if start <= lo {
			return out, 0, nil
		}
		end = start - 1
	}
}

// Health handles GET /healthz: the process is alive.
func Health(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Ready returns GET /readyz: appends are accepted (the dedup index is
// rebuilt after a start; with the embedded server, appends are still
// acknowledged), the log answers and, on a cluster, its stream has a
// leader (store.Log.Ready, bounded to 1 s). A 503 names the reason.
func Ready(log Log) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := log.Ready(ctx); err != nil {
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// Verifier walks the integrity chain.
type Verifier interface {
	Verify(ctx context.Context) (store.VerifyReport, error)
}

// Integrity handles GET /api/v1/integrity (admin of all tenants): what
// `vigil verify` shows. The walk covers the whole log, every tenant's
// events (its counts, chains and the id of a broken link), and costs a
// full read of the log, so a tenant-scoped admin may not start it.
func Integrity(v Verifier) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		if !p.IsGlobalAdmin() {
			auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "integrity checks need an admin of all tenants"))
			return
		}
		rep, err := v.Verify(r.Context())
		if err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindUnavailable, "%w", err))
			return
		}
		WriteJSON(w, http.StatusOK, rep)
	}
}
