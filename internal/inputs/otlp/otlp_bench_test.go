package otlp_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-sec/vigil/internal/testnode"
)

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// otlpBody is one protobuf export request of batch sshd-like records;
// req numbers it, so every request's records (and so their ids) differ.
func otlpBody(b *testing.B, req, batch int) []byte {
	recs := make([]*logspb.LogRecord, batch)
	for j := range recs {
		recs[j] = &logspb.LogRecord{
			TimeUnixNano: uint64(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC).UnixNano()) + uint64(req*batch+j), SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_WARN,
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: fmt.Sprintf("Failed password for user%d from 203.0.113.%d port 22 ssh2", j, j%250)}},
			Attributes: []*commonpb.KeyValue{kv("user.name", fmt.Sprint("user", j)), kv("client.address", fmt.Sprint("203.0.113.", j%250)), kv("http.request.method", "POST")},
		}
	}
	body, err := proto.Marshal(&collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "bench"), kv("host.name", "web-1")}},
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkOTLPIngest measures OTLP/HTTP log records into the durable log
// through a real node (HTTP, decode, mapping, validation, JetStream append,
// the response after the append): protobuf requests of 1,000 records from
// 4 concurrent senders, as the REST figure over HTTP in performance.md.
// The requests are encoded before the timer starts. Reports records/s.
func BenchmarkOTLPIngest(b *testing.B) {
	n := testnode.Start(b)
	tok := n.AdminToken()
	const batch = 1000
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = otlpBody(b, i, batch)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	var next atomic.Int64
	b.SetParallelism(2) // 2 × GOMAXPROCS senders: 4 on this box
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)-1]
			req, _ := http.NewRequest("POST", n.URL()+"/v1/logs", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-protobuf")
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || bytes.Contains(out, []byte("rejected")) {
				b.Errorf("HTTP %d: %s", resp.StatusCode, out)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}
