package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outputtest"
	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

const topic = "vigil-events"

func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newKafka(t *testing.T, o Options) outputs.Sender {
	t.Helper()
	env, _ := outputtest.Env(t, nil)
	s, err := Type().New(&o, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// consume reads n records of the topic from the start.
func consume(t *testing.T, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d records", len(recs), n)
		}
		recs = append(recs, f.Records()...)
	}
	return recs
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

func TestKafkaProduce(t *testing.T) {
	c := cluster(t)
	s := newKafka(t, Options{Brokers: c.ListenAddrs(), Topic: topic})
	if s.(outputs.Batcher).MaxBatch() < 2 {
		t.Error("kafka is a Batcher")
	}
	msgs := []outputs.Message{outputtest.Detection("ev1", "det-1", "active", 1), outputtest.Event("ev2"), outputtest.Test("ev3")}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Send(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, 3, kgo.SeedBrokers(c.ListenAddrs()...))
	byKey := map[string]*kgo.Record{}
	for _, r := range recs {
		byKey[string(r.Key)] = r
	}
	for _, m := range msgs {
		r := byKey[m.Event.ID]
		if r == nil {
			t.Fatalf("no record keyed %s", m.Event.ID)
		}
		if string(r.Value) != string(m.Body) || !r.Timestamp.Equal(m.Event.Time.Truncate(time.Millisecond)) {
			t.Errorf("%s: value %q time %v", m.Event.ID, r.Value, r.Timestamp)
		}
		h := headers(r)
		if h["vigil-event-id"] != m.Event.ID || h["vigil-event-type"] != m.Event.Type || h["vigil-tenant"] != "acme" ||
			h["content-type"] != "application/json" || h["vigil-category"] != string(m.Event.Category) {
			t.Errorf("%s: headers %v", m.Event.ID, h)
		}
	}
	if h := headers(byKey["ev1"]); h["vigil-detection-id"] != "det-1" || h["vigil-severity"] != "high" {
		t.Errorf("detection headers %v", h)
	}
	if h := headers(byKey["ev3"]); h["vigil-test"] != "true" {
		t.Errorf("test message not labelled: %v", h)
	}
}

func TestKafkaErrors(t *testing.T) {
	c := cluster(t)
	// A topic that does not exist (no auto-creation): retried, not permanent.
	s := newKafka(t, Options{Brokers: c.ListenAddrs(), Topic: "missing"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Send(ctx, []outputs.Message{outputtest.Event("ev1")}); err == nil || outputs.IsPermanent(err) {
		t.Errorf("missing topic: %v", err)
	}
	// A record over the producer's maximum batch size: permanent.
	s = newKafka(t, Options{Brokers: c.ListenAddrs(), Topic: topic, Compression: "none"})
	big := outputtest.Event("ev-big")
	big.Body = []byte(`"` + strings.Repeat("x", 2<<20) + `"`)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := s.Send(ctx2, []outputs.Message{big}); !outputs.IsPermanent(err) {
		t.Errorf("2 MiB record: %v, want permanent", err)
	}
}

func TestKafkaSASLPlainOverTLS(t *testing.T) {
	const pass = "k4fka-S3CRET"
	files := tlstest.New(t, t.TempDir())
	c := cluster(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "vigil", pass),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{files.Server.TLS}, MinVersion: tls.VersionTLS12}))
	t.Setenv("VIGIL_TEST_KAFKA_PASS", pass)
	t.Setenv("VIGIL_TEST_KAFKA_WRONG", "wrong-"+pass)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := newKafka(t, Options{Brokers: c.ListenAddrs(), Topic: topic, TLS: true, CAFile: files.CAFile,
		SASL: "plain", Username: "vigil", Password: "${VIGIL_TEST_KAFKA_PASS}"})
	if err := s.Send(ctx, []outputs.Message{outputtest.Event("ev1")}); err != nil {
		t.Fatal(err)
	}
	bad := newKafka(t, Options{Brokers: c.ListenAddrs(), Topic: topic, TLS: true, CAFile: files.CAFile,
		SASL: "plain", Username: "vigil", Password: "${VIGIL_TEST_KAFKA_WRONG}"})
	ctx3, cancel3 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel3()
	err := bad.Send(ctx3, []outputs.Message{outputtest.Event("ev2")})
	// kfake closes the connection on a failed login (a real broker first
	// answers SASL_AUTHENTICATION_FAILED, which classify makes permanent):
	// here the error is the retried one, with the broker's reason.
	if err == nil || !strings.Contains(err.Error(), "broker:") || strings.Contains(err.Error(), pass) {
		t.Errorf("wrong password: %v", err)
	}
}

func TestKafkaConfig(t *testing.T) {
	env, _ := outputtest.Env(t, nil)
	t.Setenv("VIGIL_TEST_KAFKA_PASS", "x")
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Topic: "t"}, "brokers"},
		{Options{Brokers: []string{"k1"}, Topic: "t"}, "must be host:port"},
		{Options{Brokers: []string{"k1:9092"}}, "topic is required"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "a b"}, "topic names"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "t", Compression: "brotli"}, "compression"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "t", SASL: "plain", Username: "u", Password: "${VIGIL_TEST_KAFKA_PASS}"}, "set tls: true"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "t", SASL: "gssapi"}, "sasl"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "t", SASL: "scram-sha-256"}, "needs username and password"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "t", Username: "u"}, "sasl is not"},
		{Options{Brokers: []string{"k1:9092"}, Topic: "t", CAFile: "x"}, "tls is not"},
	} {
		o := c.o
		outputtest.ConfigError(t, Type(), &o, env, c.want)
	}
}

func TestKafkaClassify(t *testing.T) {
	s := &sender{topic: topic, password: "pw-S3CRET"}
	for _, c := range []struct {
		err       error
		permanent bool
	}{
		{kerr.MessageTooLarge, true},
		{fmt.Errorf("context deadline exceeded (broker: %w)", kerr.SaslAuthenticationFailed), true},
		{errors.Join(context.DeadlineExceeded, kerr.TopicAuthorizationFailed), true},
		{kerr.NotLeaderForPartition, false},
		{errors.New("dial tcp: pw-S3CRET refused"), false},
	} {
		err := s.classify(c.err)
		if outputs.IsPermanent(err) != c.permanent || strings.Contains(err.Error(), "S3CRET") {
			t.Errorf("%v: %v (permanent %v)", c.err, err, outputs.IsPermanent(err))
		}
	}
}
