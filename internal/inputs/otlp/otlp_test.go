package otlp

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-sec/vigil/internal/event"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// exampleJSON is an export request in OTLP's JSON encoding, shaped like
// the specification's example (hex trace and span ids, integer enum, int64
// as a string).
const exampleJSON = `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"auth-api"}},{"key":"host.name","value":{"stringValue":"web-1"}}]},
 "scopeLogs":[{"scope":{"name":"auth","version":"1.2"},"logRecords":[
  {"timeUnixNano":"1764498005408091526","observedTimeUnixNano":"1764498005500000000","severityNumber":13,"severityText":"WARN",
   "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","eventName":"authentication.login",
   "body":{"stringValue":"Failed password for alice"},
   "attributes":[{"key":"user.name","value":{"stringValue":"alice"}},{"key":"enduser.id","value":{"stringValue":"u-42"}},
     {"key":"client.address","value":{"stringValue":"203.0.113.7"}},{"key":"http.request.method","value":{"stringValue":"POST"}},
     {"key":"retries","value":{"intValue":"3"}},{"key":"user.password","value":{"stringValue":"hunter2"}}]},
  {"observedTimeUnixNano":"1764498006000000000","severityText":"Error","body":{"kvlistValue":{"values":[{"key":"code","value":{"intValue":"7"}}]}},
   "attributes":[{"key":"event.name","value":{"stringValue":"browser.page_view"}},{"key":"source.address","value":{"stringValue":"not-an-ip"}}]}
 ]}]}]}`

func TestMapJSONExample(t *testing.T) {
	req, err := Decode([]byte(exampleJSON), true)
	if err != nil {
		t.Fatal(err)
	}
	evs := Map(req, event.DefaultLimits())
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	e := evs[0]
	if e.Type != "authentication.login" || e.Severity != event.SeverityMedium || e.User != "alice" || e.UserID != "u-42" ||
		e.SrcIP != "203.0.113.7" || e.Source != "auth-api" || e.Message != "Failed password for alice" ||
		!e.Time.Equal(time.Unix(0, 1764498005408091526)) {
		t.Errorf("event 0: %+v", e)
	}
	var data map[string]any
	if err := json.Unmarshal(e.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["trace_id"] != "5b8efff798038103d269b633813fc60c" || data["span_id"] != "eee19b7ec3c1b174" {
		t.Errorf("ids %v %v: the hex of OTLP JSON must survive", data["trace_id"], data["span_id"])
	}
	attrs := data["attributes"].(map[string]any)
	if attrs["http_request_method"] != "POST" || attrs["retries"] != float64(3) || attrs["user_name"] != nil {
		t.Errorf("attributes %v", attrs)
	}
	if res := data["resource"].(map[string]any); res["host_name"] != "web-1" {
		t.Errorf("resource %v", res)
	}
	if sc := data["scope"].(map[string]any); sc["name"] != "auth" || sc["version"] != "1.2" {
		t.Errorf("scope %v", sc)
	}
	// Ingest accepts it and drops the secret.
	if n, err := event.Normalize(e, "acme", time.Now(), event.DefaultLimits()); err != nil || n != 1 {
		t.Errorf("normalize: dropped %d, %v", n, err)
	}

	e = evs[1]
	if e.Type != DefaultType || e.Category != event.CategorySystem || e.Severity != event.SeverityHigh || e.SrcIP != "" ||
		!e.Time.Equal(time.Unix(0, 1764498006000000000)) {
		t.Errorf("event 1: %+v", e)
	}
	if !strings.Contains(string(e.Data), `"event_name":"browser.page_view"`) || !strings.Contains(string(e.Data), `"body":{"code":7}`) ||
		!strings.Contains(string(e.Data), `"source_address":"not-an-ip"`) {
		t.Errorf("event 1 data %s", e.Data)
	}
	if evs[0].ID == evs[1].ID || !strings.HasPrefix(evs[0].ID, "otlp-") {
		t.Errorf("ids %q %q", evs[0].ID, evs[1].ID)
	}
	// The same request again gives the same ids (a retry is deduplicated).
	again, _ := Decode([]byte(exampleJSON), true)
	if Map(again, event.DefaultLimits())[1].ID != evs[1].ID {
		t.Error("ids differ between two decodings of one request")
	}
}

// TestProtobufMatchesJSON: the same request in protobuf maps to the same
// events as in JSON (ids, trace id, attributes).
func TestProtobufMatchesJSON(t *testing.T) {
	jr, err := Decode([]byte(exampleJSON), true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(jr.Logs)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := Decode(b, false)
	if err != nil {
		t.Fatal(err)
	}
	// protojson read the hex ids as base64: rebuild the real bytes for the
	// protobuf request, as an SDK would send them.
	lr := pr.Logs.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
	lr.TraceId = []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}
	lr.SpanId = []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}
	pe, je := Map(pr, event.DefaultLimits()), Map(jr, event.DefaultLimits())
	for i := range pe {
		pe[i].ID, je[i].ID = "", ""
		a, _ := json.Marshal(pe[i])
		c, _ := json.Marshal(je[i])
		if string(a) != string(c) {
			t.Errorf("record %d:\nprotobuf %s\njson     %s", i, a, c)
		}
	}
}

func TestSeverityNumbers(t *testing.T) {
	for n, want := range map[int32]event.Severity{1: event.SeverityInfo, 5: event.SeverityInfo, 9: event.SeverityInfo, 12: event.SeverityInfo,
		13: event.SeverityMedium, 16: event.SeverityMedium, 17: event.SeverityHigh, 20: event.SeverityHigh, 21: event.SeverityCritical, 24: event.SeverityCritical} {
		if got := severity(logspb.SeverityNumber(n), "fatal"); got != want {
			t.Errorf("number %d: %v, want %v (the number wins over the text)", n, got, want)
		}
	}
	for text, want := range map[string]event.Severity{"FATAL": event.SeverityCritical, "critical": event.SeverityCritical, "Error": event.SeverityHigh,
		"warning": event.SeverityMedium, "notice": event.SeverityLow, "info": event.SeverityInfo, "": event.SeverityInfo, "whatever": event.SeverityInfo} {
		if got := severity(0, text); got != want {
			t.Errorf("text %q: %v, want %v", text, got, want)
		}
	}
}

func TestCount(t *testing.T) {
	req := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "a")}},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: make([]*logspb.LogRecord, 3)}, {LogRecords: make([]*logspb.LogRecord, 2)}}},
		{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: make([]*logspb.LogRecord, 4)}}},
	}}
	if n := Count(req); n != 9 {
		t.Fatalf("Count = %d", n)
	}
}

// TestCountBeforeDecode: the wire scans count what the decoder finds, and
// stop past the limit.
func TestCountBeforeDecode(t *testing.T) {
	jr, err := Decode([]byte(exampleJSON), true)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := countJSON([]byte(exampleJSON), 100); n != 2 || err != nil {
		t.Errorf("countJSON = %d, %v; want 2", n, err)
	}
	req := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{
		{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{}, {}, {}}}, {LogRecords: []*logspb.LogRecord{{}}}}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("a", "b")}}, ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{}, {}}}}},
	}}
	req.ResourceLogs = append(req.ResourceLogs, jr.Logs.ResourceLogs...)
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := countProto(b, 100); n != 8 || err != nil {
		t.Errorf("countProto = %d, %v; want 8", n, err)
	}
	if _, err := countProto(b, 7); err != errTooManyRecords {
		t.Errorf("countProto over the limit: %v", err)
	}
	if _, err := countJSON([]byte(`{"resourceLogs":[{"scope_logs":[{"log_records":[{},{},{}]}]}]}`), 2); err != errTooManyRecords {
		t.Errorf("countJSON over the limit (proto field names): %v", err)
	}
	if _, err := countProto([]byte{0x0a, 0xff}, 10); err == nil {
		t.Error("countProto accepted a truncated body")
	}
}
