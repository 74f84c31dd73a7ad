// Package natsingest lets producers that already speak NATS publish events
// without HTTP: a request to vigil.ingest.<tenant> carries the same body as
// POST /api/v1/events and gets the same JSON answer. It is a transport over
// the one ingest path (validation, tenant stamping, secrets dropped, the
// integrity chain) — producers never write to the log's subjects directly.
// Who may publish to which tenant's subject is NATS's authorization
// (accounts and subject permissions on the cluster).
package natsingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/ingest"
)

// SubjectPrefix is where producers send requests: vigil.ingest.<tenant>.
const SubjectPrefix = "vigil.ingest"

// QueueGroup spreads requests over every node of a cluster.
const QueueGroup = "vigil-ingest"

// Bridge answers ingest requests on NATS.
type Bridge struct {
	sub *nats.Subscription
}

// Start subscribes on nc. Stop it with Stop.
func Start(nc *nats.Conn, svc *ingest.Service, logger *slog.Logger) (*Bridge, error) {
	sub, err := nc.QueueSubscribe(SubjectPrefix+".*", QueueGroup, func(m *nats.Msg) {
		reply := handle(svc, m)
		if m.Reply == "" {
			return
		}
		b, _ := json.Marshal(reply)
		if err := m.Respond(b); err != nil {
			logger.Warn("nats ingest: reply", "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("natsingest: subscribe: %w", err)
	}
	// SUB is sent asynchronously: without the round trip a producer
	// connected elsewhere could still get "no responders" right after
	// Start returned (seen once in CI). The node logs "listening for
	// producers" only after this.
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("natsingest: subscribe: %w", err)
	}
	return &Bridge{sub: sub}, nil
}

// Stop unsubscribes, letting requests in flight finish.
func (b *Bridge) Stop() error { return b.sub.Drain() }

// Reply is the answer to one request: the REST answer's shape.
type Reply struct {
	Accepted int             `json:"accepted,omitempty"`
	Events   any             `json:"events,omitempty"`
	Error    string          `json:"error,omitempty"`
	Details  []event.Problem `json:"details,omitempty"`
}

func handle(svc *ingest.Service, m *nats.Msg) Reply {
	tenant := strings.TrimPrefix(m.Subject, SubjectPrefix+".")
	if !event.ValidTenant(tenant) {
		return Reply{Error: fmt.Sprintf("subject %q: tenant must be letters, digits, '-' or '_'", m.Subject)}
	}
	events, err := event.Decode(m.Data, m.Header.Get("Content-Type"), svc.Limits())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := &auth.Principal{ID: "nats:" + tenant, Name: "NATS producer", Role: auth.RolePublisher, Tenant: tenant}
		acks, perr := svc.Publish(ctx, p, events)
		if perr == nil {
			return Reply{Accepted: len(acks), Events: acks}
		}
		err = perr
	}
	var be *event.BatchError
	if errors.As(err, &be) {
		return Reply{Error: be.Error(), Details: be.Problems}
	}
	return Reply{Error: "the log did not acknowledge every event (some may be stored; retrying with the same ids is safe): " + err.Error()}
}
