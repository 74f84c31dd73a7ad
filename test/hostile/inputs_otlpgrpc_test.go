package hostile

import (
	"bytes"
	"context"
	"fmt"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vigil-sec/vigil/internal/config"
)

// otlpGRPCStart starts a node with --otlp-grpc-listen on a free loopback
// port and returns it with a gRPC client connection to that port.
func otlpGRPCStart(t *testing.T) (*inputsNode, string, *grpc.ClientConn) {
	t.Helper()
	addr := "127.0.0.1:" + relpFreePort(t)
	in := inputsStart(t, func(c *config.Config) { c.OTLPGRPCListen = addr })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return in, addr, conn
}

func otlpGRPCRequest(service string, n int) *collogs.ExportLogsServiceRequest {
	var recs []*logspb.LogRecord
	for i := range n {
		recs = append(recs, &logspb.LogRecord{
			TimeUnixNano: uint64(time.Date(2026, 11, 30, 10, 0, i, 0, time.UTC).UnixNano()), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_WARN,
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: fmt.Sprintf("login failed %d", i)}},
			Attributes: []*commonpb.KeyValue{{Key: "user.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "grace"}}}},
		})
	}
	return &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: service}}}}},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}},
	}}}
}

// TestOTLPGRPC: LogsService/Export on --otlp-grpc-listen authenticates the
// bearer token from the "authorization" metadata, refuses a role that may
// not publish, stores the records before it answers, and a resent request
// (an exporter's retry) stores nothing twice.
func TestOTLPGRPC(t *testing.T) {
	in, _, conn := otlpGRPCStart(t)
	cl := collogs.NewLogsServiceClient(conn)
	call := func(tok string, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		return cl.Export(ctx, req)
	}
	req := otlpGRPCRequest("grpc-test", 3)
	for _, c := range []struct {
		name, tok string
		code      codes.Code
	}{{"no token", "", codes.Unauthenticated}, {"wrong token", "vgl_not-a-token", codes.Unauthenticated}, {"viewer", in.viewer, codes.PermissionDenied}} {
		if _, err := call(c.tok, req); status.Code(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	if n := len(in.events(url.Values{"sources": {"grpc-test"}})); n != 0 {
		t.Fatalf("%d events stored by refused calls", n)
	}
	for attempt := range 2 {
		resp, err := call(in.publisher, req)
		if err != nil || resp.GetPartialSuccess().GetRejectedLogRecords() != 0 {
			t.Fatalf("attempt %d: %v %v", attempt, resp, err)
		}
		// Answered after the append: the records are readable now.
		evs := in.events(url.Values{"sources": {"grpc-test"}})
		if len(evs) != 3 {
			t.Fatalf("attempt %d: %d events stored, want 3", attempt, len(evs))
		}
		if evs[0]["user"] != "grace" || evs[0]["message"] != "login failed 0" || evs[0]["tenant"] != "acme" || evs[0]["severity"] != "medium" {
			t.Fatalf("event %v", evs[0])
		}
	}
}

// rawCodec sends a request's bytes as they are: the flood below is built
// on the wire, not decoded first in the test.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return nil, fmt.Errorf("rawCodec: %T", v)
}
func (rawCodec) Unmarshal(b []byte, v any) error { return nil }

// TestOTLPGRPCRecordFlood: an Export message under the size limit packed
// with 8 million empty log records is refused before it is decoded (the
// same scans as POST /v1/logs): the server allocates about the message,
// not gigabytes, and stores nothing.
func TestOTLPGRPCRecordFlood(t *testing.T) {
	in, _, conn := otlpGRPCStart(t)
	scope := bytes.Repeat([]byte{0x12, 0x00}, 8_000_000)
	rl := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), scope)
	body := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+in.publisher)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var out []byte
	err := conn.Invoke(ctx, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", body, &out, grpc.ForceCodec(rawCodec{}))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "log records in one request") {
		t.Fatalf("flood of 8M records: %v, want a refusal naming the record limit", err)
	}
	// InvalidArgument tells an OTLP exporter not to retry the same request
	// (a codec error would have come back as Internal).
	if code := status.Code(err); code != codes.InvalidArgument {
		t.Fatalf("flood of 8M records: code %s, want InvalidArgument", code)
	}
	// The client's copy of the 16 MiB message and gRPC's frames count too.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 200<<20 {
		t.Fatalf("the call made the process allocate %d MiB for a %d MiB message", alloc>>20, len(body)>>20)
	} else {
		t.Logf("allocated %d MiB for a %d MiB message: %v", alloc>>20, len(body)>>20, err)
	}
	if n := len(in.events(url.Values{})); n != 0 {
		t.Fatalf("%d events stored", n)
	}
}

// TestOTLPGRPCTelemetrygen: OpenTelemetry's own generator over gRPC (its
// default transport) stores its 10 records. Skips without telemetrygen.
func TestOTLPGRPCTelemetrygen(t *testing.T) {
	bin, err := exec.LookPath("telemetrygen")
	if err != nil {
		t.Skip("telemetrygen not on PATH: go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0")
	}
	in, addr, _ := otlpGRPCStart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "logs", "--otlp-endpoint", addr, "--otlp-insecure",
		"--logs", "10", "--rate", "0", "--service", "telemetrygen-grpc",
		"--otlp-header", `Authorization="Bearer `+in.publisher+`"`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("telemetrygen: %v\n%s", err, out)
	}
	if evs := in.events(url.Values{"sources": {"telemetrygen-grpc"}}); len(evs) != 10 {
		t.Fatalf("%d events stored, want 10\ntelemetrygen: %s", len(evs), out)
	}
}
