// Package kafka is the kafka output: each event is produced to a topic
// with github.com/twmb/franz-go, key = event id (so that a compacted
// topic or a consumer deduplicates a message repeated after a retry),
// value = the event's JSON as served by the API, and headers naming the
// event (vigil-event-id, vigil-event-type, vigil-category,
// vigil-severity, vigil-tenant, vigil-detection-id, vigil-test).
//
// The producer is franz-go's idempotent producer with acks=all: within
// one Send a broker-side retry does not duplicate; Send returns nil only
// when every record of the batch is acknowledged by all in-sync replicas.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/outputs/outhttp"
)

const (
	maxBatch    = 500
	pingTimeout = 3 * time.Second
)

// Options are the kafka output's own keys.
type Options struct {
	// Brokers are the seed brokers (host:port).
	Brokers []string `yaml:"brokers"`
	// Topic receives every record.
	Topic string `yaml:"topic"`
	// ClientID (default "vigil").
	ClientID string `yaml:"client_id"`
	// TLS on, checked against CAFile (or the system roots).
	TLS    bool   `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// SASL is plain, scram-sha-256 or scram-sha-512 ("": none); plain
	// needs tls (it sends the password as is).
	SASL         string `yaml:"sasl"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// Compression: none, gzip, snappy (default), lz4 or zstd.
	Compression string `yaml:"compression"`
}

// Type is the kafka output type.
func Type() outputs.Type {
	return outputs.Type{
		Name:       "kafka",
		NewOptions: func() any { return &Options{} },
		New:        newSender,
	}
}

type sender struct {
	client   *kgo.Client
	topic    string
	password outputs.Secret
	env      outputs.Env
}

func newSender(o any, env outputs.Env) (outputs.Sender, error) {
	opts, ok := o.(*Options)
	if !ok {
		return nil, fmt.Errorf("kafka: options are %T, not *kafka.Options", o)
	}
	if len(opts.Brokers) == 0 {
		return nil, errors.New("brokers: at least one host:port is required")
	}
	for i, b := range opts.Brokers {
		if !strings.Contains(b, ":") {
			return nil, fmt.Errorf("brokers[%d] %q: must be host:port", i, b)
		}
	}
	if opts.Topic == "" {
		return nil, errors.New("topic is required")
	}
	if len(opts.Topic) > 249 || strings.Trim(opts.Topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" ||
		opts.Topic == "." || opts.Topic == ".." {
		return nil, fmt.Errorf("topic %q: Kafka topic names are 1..249 of [a-zA-Z0-9._-]", opts.Topic)
	}
	clientID := opts.ClientID
	if clientID == "" {
		clientID = "vigil"
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.DefaultProduceTopic(opts.Topic),
		kgo.ClientID(clientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}
	switch opts.Compression {
	case "", "snappy":
		kopts = append(kopts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "none":
		kopts = append(kopts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case "gzip":
		kopts = append(kopts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "lz4":
		kopts = append(kopts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		kopts = append(kopts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	default:
		return nil, fmt.Errorf("compression %q: must be none, gzip, snappy, lz4 or zstd", opts.Compression)
	}
	if opts.TLS {
		cfg, err := outhttp.TLSClient(opts.CAFile, "")
		if err != nil {
			return nil, err
		}
		kopts = append(kopts, kgo.DialTLSConfig(cfg))
	} else if opts.CAFile != "" {
		return nil, errors.New("ca_file is set but tls is not")
	}
	s := &sender{topic: opts.Topic, env: env}
	pass, err := outputs.ResolveSecret("password", opts.Password, opts.PasswordFile)
	if err != nil {
		return nil, err
	}
	s.password = pass
	switch opts.SASL {
	case "":
		if opts.Username != "" || pass != "" {
			return nil, errors.New("username/password are set but sasl is not")
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		if opts.Username == "" || pass == "" {
			return nil, fmt.Errorf("sasl %s needs username and password (or password_file)", opts.SASL)
		}
		switch opts.SASL {
		case "plain":
			if !opts.TLS {
				return nil, errors.New("sasl plain sends the password as is: set tls: true")
			}
			kopts = append(kopts, kgo.SASL(plain.Auth{User: opts.Username, Pass: pass.Reveal()}.AsMechanism()))
		case "scram-sha-256":
			kopts = append(kopts, kgo.SASL(scram.Auth{User: opts.Username, Pass: pass.Reveal()}.AsSha256Mechanism()))
		case "scram-sha-512":
			kopts = append(kopts, kgo.SASL(scram.Auth{User: opts.Username, Pass: pass.Reveal()}.AsSha512Mechanism()))
		}
	default:
		return nil, fmt.Errorf("sasl %q: must be plain, scram-sha-256 or scram-sha-512", opts.SASL)
	}
	c, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s.client = c
	return s, nil
}

// MaxBatch: the core hands up to this many events per Send; they are
// produced together.
func (s *sender) MaxBatch() int { return maxBatch }

// Record is the Kafka record for m.
func Record(m outputs.Message) *kgo.Record {
	r := &kgo.Record{Value: m.Body}
	h := func(k, v string) {
		if v != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	h("content-type", "application/json")
	if ev := m.Event; ev != nil {
		r.Key = []byte(ev.ID)
		r.Timestamp = ev.Time
		h("vigil-event-id", ev.ID)
		h("vigil-event-type", ev.Type)
		h("vigil-category", string(ev.Category))
		h("vigil-tenant", ev.Tenant)
	}
	h("vigil-severity", outhttp.Severity(m))
	if d := m.Detection; d != nil {
		h("vigil-detection-id", d.ID)
		h("vigil-detection-status", d.Status)
	}
	if m.Test {
		h("vigil-test", "true")
	}
	return r
}

func (s *sender) Send(ctx context.Context, msgs []outputs.Message) error {
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = Record(m)
	}
	if err := s.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			// The producer keeps retrying a broker it cannot log in to
			// until the deadline; ask a broker directly why, so that a
			// wrong password is reported as such (and not retried for
			// the output's whole max_age).
			pctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
			perr := s.client.Ping(pctx)
			cancel()
			if perr != nil && !errors.Is(perr, context.DeadlineExceeded) {
				err = fmt.Errorf("%w (broker: %w)", err, perr)
			}
		}
		return s.classify(err)
	}
	s.env.Logger.Debug("kafka: delivered", "records", len(recs), "topic", s.topic)
	return nil
}

// classify makes errors that a retry cannot fix permanent (a record too
// large, no permission on the topic, failed authentication) and strips
// the password from the text.
func (s *sender) classify(err error) error {
	permanent := false
	var ke *kerr.Error
	for _, e := range allErrors(err) {
		if !errors.As(e, &ke) {
			continue
		}
		switch ke {
		case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.InvalidTopicException,
			kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.SaslAuthenticationFailed,
			kerr.UnsupportedSaslMechanism, kerr.InvalidRequiredAcks:
			permanent = true
		}
	}
	text := err.Error()
	if p := s.password.Reveal(); p != "" {
		text = strings.ReplaceAll(text, p, "[redacted]")
	}
	return &outputs.DeliveryError{Err: fmt.Errorf("kafka: producing to %s: %s", s.topic, text), Permanent: permanent}
}

// allErrors flattens err's tree (errors.As stops at the first match of a
// type; the producer error and the broker's both may be *kerr.Error).
func allErrors(err error) []error {
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, allErrors(e)...)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			out = append(out, allErrors(e)...)
		}
	}
	return out
}

func (s *sender) Close() error {
	s.client.Close()
	return nil
}
