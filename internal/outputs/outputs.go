// Package outputs delivers events and detections, chosen by a SPEC 4
// filter, to external systems (issue 10, SPEC 13): webhooks, chat and
// paging services, e-mail, syslog, Kafka, Elasticsearch, Loki.
//
// It is the core of the output adapters. Each configured output reads the
// log through its own durable JetStream consumer (never an in-memory
// queue), so a down or slow output, or a restart of Vigil, loses nothing:
// the core retries with backoff and jitter, dead-letters a message that is
// still failing after the output's maximum age as a system.output_failed
// event, and acknowledges the consumer only after the Sender returned nil.
//
// The output types themselves live in one package each
// (internal/outputs/webhook, .../pagerduty, ...) and implement Sender; they
// know their service's request format and nothing about the log.
package outputs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Message is one stored event an output is asked to deliver.
type Message struct {
	// Event is the decoded event; read-only, shared with other outputs.
	Event *event.Event
	// Body is the event's JSON as served to clients (SPEC 2), with seq.
	Body []byte
	// Detection is set for detection.created / detection.updated events
	// (category detection): the detection carried in the event's data.
	Detection *Detection
	// Text is the message text rendered from the output's template (or
	// the default template): what chat, paging and e-mail outputs show.
	Text string
	// Test marks a message sent by POST /api/v1/outputs/{name}/test: the
	// Sender must label it clearly as a test (and a paging output must
	// not leave an open incident behind).
	Test bool
}

// Detection is the part of a detection (SPEC 6) that outputs use, decoded
// from a detection event's data. Outputs depend on this view, not on the
// detection engine.
type Detection struct {
	ID              string    `json:"id"`
	RuleID          string    `json:"rule_id"`
	Title           string    `json:"title"`
	Category        string    `json:"category"`
	Severity        string    `json:"severity"`
	Confidence      float64   `json:"confidence"`
	Status          string    `json:"status"` // active, investigating, resolved, false_positive
	MitreTactics    []string  `json:"mitre_tactics"`
	MitreTechniques []string  `json:"mitre_techniques"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	Notes           string    `json:"notes"`
	Assignee        string    `json:"assignee"`
	EventIDs        []string  `json:"event_ids"`
	GroupKey        string    `json:"group_key"`
	Count           int       `json:"count"`
	Tenant          string    `json:"tenant"`
}

// Lifecycle is what a detection event means for a paging service.
type Lifecycle int

const (
	// LifecycleNone: not a detection event.
	LifecycleNone Lifecycle = iota
	// LifecycleTrigger: created, or updated while active (a count update
	// re-triggers the same alert: same dedup key, no new page).
	LifecycleTrigger
	// LifecycleAcknowledge: the detection is being investigated.
	LifecycleAcknowledge
	// LifecycleResolve: resolved or false positive.
	LifecycleResolve
)

// Lifecycle tells what m means for a service that follows the detection
// lifecycle (SPEC 13: created → trigger, investigating → acknowledge,
// resolved/false_positive → resolve).
func (m Message) Lifecycle() Lifecycle {
	if m.Detection == nil {
		return LifecycleNone
	}
	switch m.Detection.Status {
	case "investigating":
		return LifecycleAcknowledge
	case "resolved", "false_positive":
		return LifecycleResolve
	default:
		return LifecycleTrigger
	}
}

// Sender delivers messages to one external system.
type Sender interface {
	// Send delivers msgs (at least one; more than one only when the
	// output batches or groups, see Batcher) and returns nil only when
	// the receiver accepted all of them. Any error makes the core retry
	// the whole group later (at least once: receivers deduplicate by the
	// event id, which every request carries as its idempotency key). A
	// *DeliveryError can say the failure is permanent or when to retry.
	Send(ctx context.Context, msgs []Message) error
	// Close releases connections; Send is not called after Close.
	Close() error
}

// Batcher is implemented by a Sender that takes several messages per Send
// (Kafka, Elasticsearch _bulk, Loki push); others get one at a time, or a
// group of detections created within group_wait for chat and e-mail.
type Batcher interface {
	MaxBatch() int
}

// DeliveryError is an error a Sender returns to steer the retry.
type DeliveryError struct {
	Err error
	// Permanent: retrying the same request cannot succeed (e.g. HTTP 400
	// for a malformed request, 401/403 for a wrong key): the message is
	// dead-lettered at once instead of retried until its maximum age.
	Permanent bool
	// RetryAfter, if set, is the receiver's own hint (HTTP 429/503
	// Retry-After) and overrides the backoff for the next attempt.
	RetryAfter time.Duration
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent wraps err as a failure that retrying cannot fix.
func Permanent(err error) error { return &DeliveryError{Err: err, Permanent: true} }

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}

// HTTPStatusError turns a non-2xx HTTP response status into a delivery
// error: 408, 425, 429 and 5xx are retried (honouring retryAfter), every
// other 4xx is permanent. body is a short excerpt of the response for the
// error text (never a secret: receivers do not echo credentials).
func HTTPStatusError(status int, body string, retryAfter time.Duration) error {
	err := fmt.Errorf("HTTP %d: %s", status, body)
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly,
		status == http.StatusTooManyRequests, status >= 500:
		return &DeliveryError{Err: err, RetryAfter: retryAfter}
	default:
		return &DeliveryError{Err: err, Permanent: true}
	}
}

// Env is what a Sender may use from the node that runs it.
type Env struct {
	HTTP      *http.Client // with the output's timeout; TLS per the output's options
	Logger    *slog.Logger
	PublicURL string // --public-url: links to the console, "" when unset
	Now       func() time.Time
	// DigestInterval is the output's digest_interval (0: off): when set,
	// every Send but a test message's is a digest the core collected
	// over the interval (at most one per interval, or earlier when
	// MaxDigest messages are held).
	DigestInterval time.Duration
}

// Type is one kind of output (webhook, pagerduty, ...), as its package
// offers it to the core. The core decodes an outputs: entry's common keys
// (name, type, filter, tenants, max_age, repeat_interval, rate_limit,
// group_wait, digest_interval, template, timeout, concurrency) itself and the remaining keys, strictly
// (an unknown key is refused), into the struct NewOptions returns.
type Type struct {
	Name string
	// NewOptions returns a pointer to a zero options struct with yaml
	// tags for this type's own keys (gopkg.in/yaml.v3).
	NewOptions func() any
	// New checks the decoded options (a broken definition is refused at
	// start with the reason) and builds the sender.
	New func(opts any, env Env) (Sender, error)
	// Groups is true for chat and e-mail outputs: detections created
	// within the output's group_wait are handed to Send together, and
	// digest_interval is allowed.
	Groups bool
	// Concurrent is true when the type's Sender may be called from
	// several goroutines at once: concurrency above 1 is allowed.
	Concurrent bool
}

// Secret is a credential from the config. It is never logged, printed or
// served: its String, LogValue and MarshalJSON say "[redacted]".
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }
func (s Secret) Reveal() string             { return string(s) }

// ResolveSecret reads a secret given either as ${ENV_NAME} in inline or
// as a path in file (the file's content, trailing newline trimmed). A
// literal inline secret is refused so that config files never hold one;
// name (e.g. "routing_key") makes the error say which key is wrong.
func ResolveSecret(name, inline, file string) (Secret, error) {
	switch {
	case inline != "" && file != "":
		return "", fmt.Errorf("%s and %s_file are both set: use one", name, name)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", name, err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("%s_file %s is empty", name, file)
		}
		return Secret(s), nil
	case inline != "":
		if !strings.HasPrefix(inline, "${") || !strings.HasSuffix(inline, "}") {
			return "", fmt.Errorf("%s must be ${ENV_NAME} or given as %s_file, not written in the config", name, name)
		}
		env := inline[2 : len(inline)-1]
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", name, env)
		}
		return Secret(v), nil
	}
	return "", nil
}
