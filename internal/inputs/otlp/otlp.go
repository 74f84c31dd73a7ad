// Package otlp accepts OpenTelemetry logs at POST /v1/logs on Vigil's
// listener (issue 9, item 5): OTLP/HTTP (https://opentelemetry.io/docs/specs/otlp/#otlphttp)
// in its protobuf (application/x-protobuf) and JSON (application/json)
// encodings, optionally gzip-compressed, with a bearer token of a
// publisher. Each LogRecord becomes one event (MapRecord), published
// through ingest.Service like a REST event; the ExportLogsServiceResponse
// is written only after the log acknowledged the events, so a collector
// that retries a request whose answer it lost stores nothing twice (every
// event's id is derived from the record and its place in the request, and
// the log deduplicates ids). Records ingest refuses are reported in
// partial_success (rejected_log_records, error_message) as the OTLP
// specification asks, the others are stored.
//
// The wire types are the OpenTelemetry project's own
// (go.opentelemetry.io/proto/otlp), decoded with google.golang.org/protobuf.
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// Input is the metric label of this input.
const Input = "otlp"

// DefaultType is the type of a record that names no valid Vigil type in
// event.name: an OTLP log record is an application's log line, system
// telemetry until a rule or a mapping says more (category system).
const DefaultType = "system.otlp.log"

// Media types of the two OTLP/HTTP encodings.
const (
	ctProto = "application/x-protobuf"
	ctJSON  = "application/json"
)

// Request is a decoded export request and the encoding it came in, which
// the response uses too.
type Request struct {
	Logs *collogs.ExportLogsServiceRequest
	JSON bool
}

// Decode parses an ExportLogsServiceRequest body (already decompressed).
// JSON is checked as strictly as REST ingest (event.CheckJSON: no
// duplicate key, valid UTF-8) and read with OTLP's JSON mapping
// (protojson; unknown fields are ignored, as the OTLP specification asks
// of receivers).
func Decode(body []byte, isJSON bool) (*Request, error) {
	req := &collogs.ExportLogsServiceRequest{}
	if isJSON {
		if err := event.CheckJSON(body); err != nil {
			return nil, fmt.Errorf("otlp: %w", err)
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, req); err != nil {
			return nil, fmt.Errorf("otlp: JSON ExportLogsServiceRequest: %w", err)
		}
	} else if err := proto.Unmarshal(body, req); err != nil {
		return nil, fmt.Errorf("otlp: protobuf ExportLogsServiceRequest: %w", err)
	}
	return &Request{Logs: req, JSON: isJSON}, nil
}

// Count returns the number of log records in req.
func Count(req *collogs.ExportLogsServiceRequest) int {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}

// Map turns every log record of req into an event, in request order.
func Map(req *Request, lim event.Limits) []*event.Event {
	var out []*event.Event
	idx := 0
	for _, rl := range req.Logs.GetResourceLogs() {
		res := attrMap(rl.GetResource().GetAttributes(), req.JSON)
		source, _ := res["service.name"].(string)
		resData := underscored(res)
		for _, sl := range rl.GetScopeLogs() {
			scope := sl.GetScope()
			// The scope and resource are hashed once; each record adds its
			// own bytes and place.
			h := sha256.New()
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rl.GetResource())
			writeChunk(h, b)
			b, _ = proto.MarshalOptions{Deterministic: true}.Marshal(scope)
			writeChunk(h, b)
			base := h.Sum(nil)
			for _, lr := range sl.GetLogRecords() {
				ev, data := mapRecord(lr, req.JSON, lim)
				ev.Source = source
				if len(resData) > 0 {
					data["resource"] = resData
				}
				if scope.GetName() != "" {
					sc := map[string]any{"name": scope.GetName()}
					if v := scope.GetVersion(); v != "" {
						sc["version"] = v
					}
					data["scope"] = sc
				}
				ev.Data = marshalData(data)
				ev.ID = recordID(base, lr, idx)
				out = append(out, ev)
				idx++
			}
		}
	}
	return out
}

func writeChunk(w io.Writer, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	_, _ = w.Write(n[:])
	_, _ = w.Write(b)
}

// recordID names a record by its content and its place in the request:
// the same request sent again (a collector's retry) gives the same ids, so
// the log stores it once.
func recordID(base []byte, lr *logspb.LogRecord, idx int) string {
	h := sha256.New()
	_, _ = h.Write(base)
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(lr)
	writeChunk(h, b)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(idx))
	_, _ = h.Write(n[:])
	return "otlp-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// MapRecord maps one LogRecord by the OpenTelemetry semantic conventions
// (https://opentelemetry.io/docs/specs/semconv/):
//   - event_name (or the event.name attribute) → type when it is a valid
//     Vigil type whose category can be derived (authentication.login),
//     else type DefaultType with data.event_name;
//   - severity_number 1–24 (or severity_text when it is 0) → severity;
//   - body: a string → message, any other value → data.body;
//   - attributes user.name → user, user.id / enduser.id → user_id,
//     client.address / source.address (an IP) → src_ip;
//   - time_unix_nano, else observed_time_unix_nano → time;
//   - every other attribute → data.attributes, its name with '.' turned
//     into '_' (http.request.method → data.attributes.http_request_method)
//     so filters can address it; trace_id, span_id, severity_text and
//     severity_number → data.
//
// Map adds what the record shares with others: resource attributes
// (service.name → source, all of them → data.resource, names
// underscored) and the instrumentation scope (data.scope.name, .version).
func MapRecord(lr *logspb.LogRecord, isJSON bool, lim event.Limits) *event.Event {
	ev, data := mapRecord(lr, isJSON, lim)
	ev.Data = marshalData(data)
	return ev
}

func mapRecord(lr *logspb.LogRecord, isJSON bool, lim event.Limits) (*event.Event, map[string]any) {
	ev := &event.Event{Type: DefaultType, Category: event.CategorySystem}
	ev.Time = recordTime(lr)
	ev.Severity = severity(lr.GetSeverityNumber(), lr.GetSeverityText())
	data := map[string]any{}
	attrs := attrMap(lr.GetAttributes(), isJSON)
	take := func(k string) (string, bool) {
		s, ok := attrs[k].(string)
		if ok {
			delete(attrs, k)
		}
		return s, ok && s != ""
	}
	if s, ok := take("user.name"); ok {
		ev.User = s
	}
	for _, k := range []string{"user.id", "enduser.id"} {
		if s, ok := attrs[k].(string); ok && s != "" && ev.UserID == "" {
			ev.UserID = s
			delete(attrs, k)
		}
	}
	for _, k := range []string{"client.address", "source.address"} {
		if s, ok := attrs[k].(string); ok && ev.SrcIP == "" {
			if ip, err := netip.ParseAddr(s); err == nil {
				ev.SrcIP = ip.String()
				delete(attrs, k)
			}
		}
	}
	name := lr.GetEventName()
	if name == "" {
		name, _ = attrs["event.name"].(string)
	}
	delete(attrs, "event.name")
	if name != "" {
		if validType(name, lim) {
			ev.Type, ev.Category = name, ""
		} else {
			data["event_name"] = name
		}
	}
	switch v := lr.GetBody().GetValue().(type) {
	case nil:
	case *commonpb.AnyValue_StringValue:
		ev.Message = v.StringValue
	default:
		data["body"] = anyValue(lr.GetBody(), isJSON, 0)
	}
	if len(attrs) > 0 {
		data["attributes"] = underscored(attrs)
	}
	if t := lr.GetSeverityText(); t != "" {
		data["severity_text"] = t
	}
	if n := lr.GetSeverityNumber(); n != 0 {
		data["severity_number"] = int32(n)
	}
	if id := idHex(lr.GetTraceId(), 16, isJSON); id != "" {
		data["trace_id"] = id
	}
	if id := idHex(lr.GetSpanId(), 8, isJSON); id != "" {
		data["span_id"] = id
	}
	return ev, data
}

// marshalData encodes data (values from anyValue: strings, bools, numbers,
// lists and maps of them, never NaN) as the event's data; nil when empty.
func marshalData(data map[string]any) json.RawMessage {
	if len(data) == 0 {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil { // cannot happen for anyValue's output; never store half a record
		b, _ = json.Marshal(map[string]string{"error": "data not encodable: " + err.Error()})
	}
	return b
}

// validType reports whether t is a type ingest accepts with a derivable
// category: the same validation, applied to a scratch event.
func validType(t string, lim event.Limits) bool {
	_, err := event.Normalize(&event.Event{ID: "x", Type: t}, "t", time.Unix(0, 0), lim)
	return err == nil
}

func recordTime(lr *logspb.LogRecord) time.Time {
	for _, ns := range []uint64{lr.GetTimeUnixNano(), lr.GetObservedTimeUnixNano()} {
		if ns != 0 && ns <= math.MaxInt64 {
			return time.Unix(0, int64(ns)).UTC()
		}
	}
	return time.Time{} // ingest stamps the receive time
}

// severity maps OTLP's severity number (1–4 TRACE, 5–8 DEBUG, 9–12 INFO,
// 13–16 WARN, 17–20 ERROR, 21–24 FATAL:
// https://opentelemetry.io/docs/specs/otel/logs/data-model/#field-severitynumber)
// or, when the number is unset, the severity text, to a Vigil severity.
func severity(n logspb.SeverityNumber, text string) event.Severity {
	switch {
	case n >= 21 && n <= 24:
		return event.SeverityCritical
	case n >= 17:
		return event.SeverityHigh
	case n >= 13:
		return event.SeverityMedium
	case n >= 1 && n <= 12:
		return event.SeverityInfo
	}
	t := strings.ToLower(text)
	switch {
	case strings.HasPrefix(t, "fatal"), strings.HasPrefix(t, "crit"), strings.HasPrefix(t, "emerg"), strings.HasPrefix(t, "alert"):
		return event.SeverityCritical
	case strings.HasPrefix(t, "err"):
		return event.SeverityHigh
	case strings.HasPrefix(t, "warn"):
		return event.SeverityMedium
	case strings.HasPrefix(t, "notice"):
		return event.SeverityLow
	}
	return event.SeverityInfo
}

// idHex renders a trace or span id (n bytes) as hex. OTLP's JSON encoding
// writes these ids as hex, where protojson expects base64: a 32-digit hex
// id decodes as 24 base64 bytes, which encode back to the original text.
func idHex(b []byte, n int, isJSON bool) string {
	switch {
	case len(b) == 0:
		return ""
	case isJSON && len(b) == n*3/2:
		return strings.ToLower(base64.StdEncoding.EncodeToString(b))
	}
	return hex.EncodeToString(b)
}

// maxValueDepth bounds how deep anyValue follows nested arrays and maps;
// ingest refuses data deeper than its own (smaller) limit anyway.
const maxValueDepth = 64

func attrMap(kvs []*commonpb.KeyValue, isJSON bool) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue(), isJSON, 0)
	}
	return m
}

// anyValue converts an OTLP AnyValue to a JSON value.
func anyValue(v *commonpb.AnyValue, isJSON bool, depth int) any {
	if depth > maxValueDepth {
		return nil
	}
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || math.IsInf(x.DoubleValue, 0) {
			return fmt.Sprint(x.DoubleValue) // JSON has no NaN or infinity
		}
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, anyValue(e, isJSON, depth+1))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = anyValue(kv.GetValue(), isJSON, depth+1)
		}
		return out
	}
	return nil
}

// underscored returns m with '.' in its keys turned into '_', so
// "http.request.method" is addressable as one data path segment.
func underscored(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[strings.ReplaceAll(k, ".", "_")] = v
	}
	return out
}

// Handler serves POST /v1/logs behind auth.Require. Build it with
// NewHandler.
type Handler struct {
	Ingest   *ingest.Service
	Metrics  *inputs.Metrics  // nil: not counted
	Logger   *slog.Logger     // nil: refusals are not logged
	refusals *inputs.Refusals // counted always, logged at a bounded rate
}

// NewHandler returns the handler; m and log may be nil.
func NewHandler(ing *ingest.Service, m *inputs.Metrics, log *slog.Logger) *Handler {
	return &Handler{Ingest: ing, Metrics: m, Logger: log, refusals: inputs.NewRefusals(Input, "otlp input: logs refused", m, log)}
}

// refused counts n refused records (or one refused request) and logs the
// refusal at a bounded rate.
func (h *Handler) refused(r *http.Request, reason string, n int, err error) {
	h.refuse(r.RemoteAddr, reason, n, err)
}

func (h *Handler) refuse(remote, reason string, n int, err error) {
	h.refusals.Refuse(remote, reason, n, 0, err, "records", n)
}

// gRPC status codes (google.rpc.Code) of the error responses.
const (
	codeInvalidArgument   = 3
	codeResourceExhausted = 8
	codeUnavailable       = 14
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	if !p.CanPublish() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not publish events", p.Role))
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != ctProto && mt != ctJSON) {
		h.refused(r, "unsupported", 1, fmt.Errorf("Content-Type %q", r.Header.Get("Content-Type")))
		w.Header().Set("Accept-Post", ctProto+", "+ctJSON)
		auth.WriteError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: OTLP/HTTP is %s or %s", r.Header.Get("Content-Type"), ctProto, ctJSON))
		return
	}
	isJSON := mt == ctJSON
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "identity" && enc != "gzip" {
		h.refused(r, "unsupported", 1, fmt.Errorf("Content-Encoding %q", enc))
		writeStatus(w, isJSON, http.StatusUnsupportedMediaType, codeInvalidArgument, fmt.Sprintf("Content-Encoding %q: only gzip is supported", enc))
		return
	}
	lim := h.Ingest.Limits()
	limit := int64(lim.MaxBatchBytes)
	body, err := ingest.ReadBody(w, r, limit)
	if err == nil && enc == "gzip" {
		body, err = gunzip(body, limit)
	}
	if err != nil {
		var tl *ingest.ErrBodyTooLarge
		if errors.As(err, &tl) {
			h.refused(r, "too_large", 1, err)
			writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, codeResourceExhausted, err.Error())
			return
		}
		h.refused(r, "read", 1, err)
		writeStatus(w, isJSON, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	// Count before decoding: the decoder's memory grows with the records.
	count := countProto
	if isJSON {
		count = countJSON
	}
	_, err = count(body, lim.MaxBatchCount)
	if err == nil && !isJSON {
		budget := maxMessages
		err = countMessages(body, (&collogs.ExportLogsServiceRequest{}).ProtoReflect().Descriptor(), &budget, 0)
	}
	switch {
	case errors.Is(err, errTooManyRecords):
		h.refused(r, "too_large", 1, err)
		writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, codeResourceExhausted,
			fmt.Sprintf("more than %d log records in one request: lower the exporter's batch size", lim.MaxBatchCount))
		return
	case errors.Is(err, errTooManyMessages):
		h.refused(r, "too_large", 1, err)
		writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, codeResourceExhausted, err.Error())
		return
	case errors.Is(err, errTooDeep):
		h.refused(r, "decode", 1, err)
		writeStatus(w, isJSON, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	// Other scan errors are malformed bodies: the decoder names them.
	req, err := Decode(body, isJSON)
	if err != nil {
		h.refused(r, "decode", 1, err)
		writeStatus(w, isJSON, http.StatusBadRequest, codeInvalidArgument, err.Error())
		return
	}
	resp, err := h.export(r.Context(), r.RemoteAddr, p, req)
	var tm *tooManyRecords
	switch {
	case err == nil:
		writeMessage(w, isJSON, http.StatusOK, resp)
	case errors.As(err, &tm):
		writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, codeResourceExhausted, err.Error())
	case errors.Is(err, ingest.ErrForbidden):
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "%w", err))
	default:
		// 503 is retryable for an OTLP exporter: the ids make the retry safe.
		writeStatus(w, isJSON, http.StatusServiceUnavailable, codeUnavailable, err.Error())
	}
}

// tooManyRecords refuses a request of more records than one batch may hold.
type tooManyRecords struct{ n, max int }

func (e *tooManyRecords) Error() string {
	return fmt.Sprintf("%d log records in one request, more than %d: lower the exporter's batch size", e.n, e.max)
}

// export is what both transports (OTLP/HTTP and OTLP/gRPC) do with a
// decoded request: count it, refuse more records than a batch may hold
// (*tooManyRecords), map and append, and answer with the records refused as
// a partial success. Any other error is the log's (ingest.ErrForbidden, or
// not acknowledged: retrying is safe).
func (h *Handler) export(ctx context.Context, remote string, p *auth.Principal, req *Request) (*collogs.ExportLogsServiceResponse, error) {
	lim := h.Ingest.Limits()
	n := Count(req.Logs)
	h.Metrics.Receive(Input, n)
	if n > lim.MaxBatchCount {
		err := &tooManyRecords{n, lim.MaxBatchCount}
		h.refuse(remote, "too_large", n, err)
		return nil, err
	}
	resp := &collogs.ExportLogsServiceResponse{}
	if n == 0 {
		return resp, nil
	}
	stored, rejected, msg, err := h.publish(ctx, p, Map(req, lim))
	if err != nil {
		h.refuse(remote, "store", n-rejected, err)
		if errors.Is(err, ingest.ErrForbidden) {
			return nil, err
		}
		return nil, fmt.Errorf("the log did not acknowledge every record (retrying the request is safe): %w", err)
	}
	h.Metrics.Store(Input, stored)
	if rejected > 0 {
		h.refuse(remote, "invalid", rejected, errors.New(msg))
		resp.PartialSuccess = &collogs.ExportLogsPartialSuccess{RejectedLogRecords: int64(rejected), ErrorMessage: msg}
	}
	return resp, nil
}

// publish appends the events ingest accepts and reports those it refused:
// ingest refuses a whole batch that holds an invalid event, so the refused
// ones (named by index) are left out and the rest published again.
func (h *Handler) publish(ctx context.Context, p *auth.Principal, evs []*event.Event) (stored, rejected int, msg string, err error) {
	orig := make([]int, len(evs)) // index in evs → record number in the request
	for i := range orig {
		orig[i] = i
	}
	var reasons []string
	for len(evs) > 0 {
		var acks []domain.Ack
		acks, err = h.Ingest.Publish(ctx, p, evs)
		var be *event.BatchError
		if !errors.As(err, &be) || be.TooLarge || len(be.Problems) == 0 {
			if err != nil {
				return 0, rejected, "", err
			}
			return len(acks), rejected, strings.Join(reasons, "; "), nil
		}
		bad := make(map[int]bool, len(be.Problems))
		for _, pr := range be.Problems {
			if pr.Index < 0 || pr.Index >= len(evs) || bad[pr.Index] {
				continue
			}
			bad[pr.Index] = true
			if len(reasons) < 10 {
				reason := pr.Reason
				if pr.Field != "" {
					reason = pr.Field + ": " + reason
				}
				reasons = append(reasons, fmt.Sprintf("log record %d: %s", orig[pr.Index], reason))
			}
		}
		if len(bad) == 0 {
			return 0, rejected, "", err // problems that name no event: nothing to leave out
		}
		rejected += len(bad)
		keep, keepOrig := evs[:0:0], orig[:0:0]
		for i, ev := range evs {
			if !bad[i] {
				keep, keepOrig = append(keep, ev), append(keepOrig, orig[i])
			}
		}
		evs, orig = keep, keepOrig
	}
	if rejected > 10 {
		reasons = append(reasons, fmt.Sprintf("and %d more", rejected-10))
	}
	return 0, rejected, strings.Join(reasons, "; "), nil
}

// gunzip decompresses body, at most limit bytes: a small gzip body can
// expand a thousandfold, so the decompressed size has its own bound.
func gunzip(body []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("gzip body: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("gzip body: %w", err)
	}
	if int64(len(out)) > limit {
		return nil, &ingest.ErrBodyTooLarge{Limit: limit}
	}
	return out, nil
}

// writeStatus answers an error with a google.rpc.Status in the request's
// encoding, as OTLP/HTTP specifies.
func writeStatus(w http.ResponseWriter, isJSON bool, httpStatus int, code int32, msg string) {
	writeMessage(w, isJSON, httpStatus, &statuspb.Status{Code: code, Message: msg})
}

func writeMessage(w http.ResponseWriter, isJSON bool, status int, m proto.Message) {
	var b []byte
	var err error
	if isJSON {
		w.Header().Set("Content-Type", ctJSON)
		b, err = protojson.Marshal(m)
	} else {
		w.Header().Set("Content-Type", ctProto)
		b, err = proto.Marshal(m)
	}
	if err != nil { // our own messages always encode
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
