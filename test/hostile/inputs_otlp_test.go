package hostile

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func otlpStr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// otlpRequest builds an export request of n records of service svc; each
// record's body is message i.
func otlpRequest(svc string, n int, message func(i int) string) *collogs.ExportLogsServiceRequest {
	recs := make([]*logspb.LogRecord, n)
	for i := range recs {
		recs[i] = &logspb.LogRecord{
			TimeUnixNano: uint64(time.Date(2026, 11, 30, 12, 0, 0, i, time.UTC).UnixNano()), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_ERROR,
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: message(i)}},
			Attributes: []*commonpb.KeyValue{otlpStr("user.name", "alice"), otlpStr("client.address", "198.51.100.4")},
		}
	}
	return &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlpStr("service.name", svc)}},
		ScopeLogs: []*logspb.ScopeLogs{{Scope: &commonpb.InstrumentationScope{Name: "test"}, LogRecords: recs}},
	}}}
}

func otlpGzip(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// otlpExport posts one request and decodes the response in its encoding.
func (in *inputsNode) otlpExport(tok string, req *collogs.ExportLogsServiceRequest, isJSON, gz bool) (int, *collogs.ExportLogsServiceResponse, string) {
	in.t.Helper()
	var body []byte
	var err error
	hdr := http.Header{}
	if isJSON {
		body, err = protojson.Marshal(req)
		hdr.Set("Content-Type", "application/json")
	} else {
		body, err = proto.Marshal(req)
		hdr.Set("Content-Type", "application/x-protobuf")
	}
	if err != nil {
		in.t.Fatal(err)
	}
	if gz {
		body = otlpGzip(in.t, body)
		hdr.Set("Content-Encoding", "gzip")
	}
	st, resp, rh := in.do("POST", "/v1/logs", tok, hdr, body)
	if st != http.StatusOK {
		return st, nil, string(resp)
	}
	out := &collogs.ExportLogsServiceResponse{}
	if isJSON {
		if ct := rh.Get("Content-Type"); ct != "application/json" {
			in.t.Errorf("response Content-Type %q to a JSON request", ct)
		}
		err = protojson.Unmarshal(resp, out)
	} else {
		if ct := rh.Get("Content-Type"); ct != "application/x-protobuf" {
			in.t.Errorf("response Content-Type %q to a protobuf request", ct)
		}
		err = proto.Unmarshal(resp, out)
	}
	if err != nil {
		in.t.Fatalf("response %q: %v", resp, err)
	}
	return st, out, ""
}

// TestOTLPEncodings sends the same kind of request as protobuf, as JSON and
// gzip-compressed, built with OpenTelemetry's own types, over a real node;
// each record is read back as an event; a resent request is stored once.
func TestOTLPEncodings(t *testing.T) {
	in := inputsStart(t)
	for _, c := range []struct {
		svc      string
		json, gz bool
	}{{"svc-proto", false, false}, {"svc-json", true, false}, {"svc-proto-gzip", false, true}, {"svc-json-gzip", true, true}} {
		req := otlpRequest(c.svc, 5, func(i int) string { return fmt.Sprintf("%s record %d", c.svc, i) })
		st, resp, body := in.otlpExport(in.publisher, req, c.json, c.gz)
		if st != http.StatusOK || resp.GetPartialSuccess().GetRejectedLogRecords() != 0 {
			t.Fatalf("%s: HTTP %d %v %s", c.svc, st, resp, body)
		}
		evs := in.eventsAs(in.n.AdminToken(), url.Values{"sources": {c.svc}}) // unmasked src_ip
		if len(evs) != 5 {
			t.Fatalf("%s: %d events stored, want 5", c.svc, len(evs))
		}
		for i, ev := range evs {
			if ev["message"] != fmt.Sprintf("%s record %d", c.svc, i) || ev["type"] != "system.otlp.log" || ev["severity"] != "high" ||
				ev["user"] != "alice" || ev["src_ip"] != "198.51.100.4" || ev["tenant"] != "acme" {
				t.Errorf("%s event %d: %v", c.svc, i, ev)
			}
		}
		// The collector's retry after a lost answer: nothing stored twice.
		if st, _, body := in.otlpExport(in.publisher, req, c.json, c.gz); st != http.StatusOK {
			t.Fatalf("%s retry: HTTP %d %s", c.svc, st, body)
		}
		if n := len(in.events(url.Values{"sources": {c.svc}})); n != 5 {
			t.Fatalf("%s: %d events after the retry, want 5", c.svc, n)
		}
	}
	if m := in.metric(`vigil_input_received_total{input="otlp"}`); !strings.HasSuffix(m, " 40") {
		t.Errorf("received metric %q, want 40", m)
	}
}

// TestOTLPPartialSuccess: a record ingest refuses (a message over the
// string limit) is reported in partial_success, the others are stored.
func TestOTLPPartialSuccess(t *testing.T) {
	in := inputsStart(t)
	req := otlpRequest("svc-partial", 4, func(i int) string {
		if i == 2 {
			return strings.Repeat("x", 9<<10)
		}
		return fmt.Sprint("ok ", i)
	})
	for _, isJSON := range []bool{false, true} {
		st, resp, body := in.otlpExport(in.publisher, req, isJSON, false)
		if st != http.StatusOK {
			t.Fatalf("HTTP %d %s", st, body)
		}
		ps := resp.GetPartialSuccess()
		if ps.GetRejectedLogRecords() != 1 || !strings.Contains(ps.GetErrorMessage(), "log record 2: message") {
			t.Fatalf("partial success %v", ps)
		}
	}
	if n := len(in.events(url.Values{"sources": {"svc-partial"}})); n != 3 {
		t.Fatalf("%d events stored, want 3", n)
	}
}

// TestOTLPRefusals: tokens and roles, wrong media types, bodies and
// decompressed bodies over the limit, too many records, garbage. Nothing
// is stored; errors come back as google.rpc.Status in the request's
// encoding.
func TestOTLPRefusals(t *testing.T) {
	in := inputsStart(t)
	small, _ := proto.Marshal(otlpRequest("svc-refused", 1, func(int) string { return "x" }))
	proto4 := http.Header{"Content-Type": {"application/x-protobuf"}}
	// 17 MiB of zeros compress to ~17 KiB: over the 16 MiB limit only once
	// decompressed.
	bomb := otlpGzip(t, make([]byte, 17<<20))
	many, _ := proto.Marshal(otlpRequest("svc-refused", 10_001, func(int) string { return "m" }))
	for _, c := range []struct {
		name string
		tok  string
		hdr  http.Header
		body []byte
		want int
	}{
		{"wrong token", "nope", proto4, small, http.StatusUnauthorized},
		{"viewer", in.viewer, proto4, small, http.StatusForbidden},
		{"text/plain", in.publisher, http.Header{"Content-Type": {"text/plain"}}, small, http.StatusUnsupportedMediaType},
		{"brotli", in.publisher, http.Header{"Content-Type": {"application/x-protobuf"}, "Content-Encoding": {"br"}}, small, http.StatusUnsupportedMediaType},
		{"garbage protobuf", in.publisher, proto4, []byte{0xff, 0xff, 0xff}, http.StatusBadRequest},
		{"duplicate JSON key", in.publisher, http.Header{"Content-Type": {"application/json"}}, []byte(`{"resourceLogs":[],"resourceLogs":[]}`), http.StatusBadRequest},
		{"bad gzip", in.publisher, http.Header{"Content-Type": {"application/x-protobuf"}, "Content-Encoding": {"gzip"}}, small, http.StatusBadRequest},
		{"gzip bomb", in.publisher, http.Header{"Content-Type": {"application/x-protobuf"}, "Content-Encoding": {"gzip"}}, bomb, http.StatusRequestEntityTooLarge},
		{"body over limit", in.publisher, proto4, make([]byte, 17<<20), http.StatusRequestEntityTooLarge},
		{"too many records", in.publisher, proto4, many, http.StatusRequestEntityTooLarge},
	} {
		st, body, hdr := in.do("POST", "/v1/logs", c.tok, c.hdr, c.body)
		if st != c.want {
			t.Errorf("%s: HTTP %d, want %d: %.200s", c.name, st, c.want, body)
			continue
		}
		if st == http.StatusBadRequest || st == http.StatusRequestEntityTooLarge {
			var s statuspb.Status
			if hdr.Get("Content-Type") != "application/x-protobuf" && hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s: error Content-Type %q", c.name, hdr.Get("Content-Type"))
			} else if hdr.Get("Content-Type") == "application/x-protobuf" && (proto.Unmarshal(body, &s) != nil || s.GetMessage() == "") {
				t.Errorf("%s: error body is not a google.rpc.Status: %q", c.name, body)
			}
		}
	}
	if n := len(in.events(url.Values{})); n != 0 {
		t.Fatalf("%d events stored by refused requests", n)
	}
}

// TestOTLPTelemetrygen runs OpenTelemetry's own load generator against a
// node: `telemetrygen logs --otlp-http` must store its 10 records. It is
// installed by .ci/run (go install, pinned); locally it skips when
// telemetrygen is not on PATH.
func TestOTLPTelemetrygen(t *testing.T) {
	bin, err := exec.LookPath("telemetrygen")
	if err != nil {
		t.Skip("telemetrygen not on PATH: go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0")
	}
	in := inputsStart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "logs", "--otlp-http", "--otlp-endpoint", in.n.Addr(), "--otlp-insecure",
		"--logs", "10", "--rate", "0", "--service", "telemetrygen-test",
		"--otlp-header", `Authorization="Bearer `+in.publisher+`"`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("telemetrygen: %v\n%s", err, out)
	}
	// telemetrygen returns once its exporter was answered, and Vigil
	// answers after the append: the records are there now.
	evs := in.events(url.Values{"sources": {"telemetrygen-test"}})
	if len(evs) != 10 {
		b, _ := json.Marshal(evs)
		t.Fatalf("%d events stored, want 10: %.2000s\ntelemetrygen: %s", len(evs), b, out)
	}
	if evs[0]["message"] != "the message" || evs[0]["type"] != "system.otlp.log" {
		t.Errorf("event %v", evs[0])
	}
}

// TestOTLPRecordFlood: a body under the size limit packed with 8 million
// empty log records (2 bytes each on the wire, a few hundred once decoded),
// or one record of 8 million empty attributes, in protobuf or JSON, is
// refused with 413 before it is decoded: the server allocates about the
// body, not gigabytes. The node runs in this process, so the test reads
// the allocations of the request from the runtime.
func TestOTLPRecordFlood(t *testing.T) {
	in := inputsStart(t)
	const records = 8_000_000
	scope := bytes.Repeat([]byte{0x12, 0x00}, records) // ScopeLogs.log_records (field 2), empty
	rl := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), scope)
	protoBody := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rl)
	// OTLP JSON: 3 bytes per empty record, 5 million of them.
	jsonBody := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}` + strings.Repeat(`,{}`, 5_000_000) + `]}]}]}`)
	// One record of 8 million empty attributes (LogRecord.attributes is
	// field 6): few records, as many messages.
	rec := bytes.Repeat([]byte{0x32, 0x00}, records)
	scope2 := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), rec)
	rl2 := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), scope2)
	attrBody := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rl2)
	attrJSON := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{}` + strings.Repeat(`,{}`, 5_000_000) + `]}]}]}]}`)
	for _, c := range []struct {
		ct   string
		body []byte
	}{{"application/x-protobuf", protoBody}, {"application/json", jsonBody}, {"application/x-protobuf", attrBody}, {"application/json", attrJSON}} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, resp, _ := in.do("POST", "/v1/logs", in.publisher, http.Header{"Content-Type": {c.ct}}, c.body)
		runtime.ReadMemStats(&after)
		if st != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: HTTP %d, want 413: %.300s", c.ct, st, resp)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 200<<20 {
			t.Fatalf("%s: the request made the process allocate %d MiB for a %d MiB body", c.ct, alloc>>20, len(c.body)>>20)
		} else {
			t.Logf("%s: allocated %d MiB for a %d MiB body", c.ct, alloc>>20, len(c.body)>>20)
		}
	}
}
