// Package ingest owns the one path by which events enter Vigil: validate,
// stamp (tenant, id, receive time), drop secrets, append to the log, and
// answer only once the log holds them. REST, GraphQL's publishEvent, the
// detection engine and `vigil demo` all publish through Service.
package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// Appender is the log as ingest needs it.
type Appender interface {
	Append(ctx context.Context, events []*event.Event) ([]domain.Ack, error)
}

// Observer receives ingest measurements (Prometheus in production).
type Observer interface {
	Ingested(events []*event.Event, elapsed time.Duration)
	SensitiveDropped(n int)
	// Held reports how long admission held a publish (only when it did).
	Held(d time.Duration)
}

// ErrForbidden is returned when the principal may not publish.
var ErrForbidden error = &domain.Error{Kind: domain.KindForbidden, Msg: "ingest: role may not publish events"}

// Service validates and appends events.
type Service struct {
	log    Appender
	limits event.Limits
	obs    Observer
	now    func() time.Time
	adm    *Admission
}

// New returns a Service. obs may be nil.
func New(log Appender, limits event.Limits, obs Observer) *Service {
	return &Service{log: log, limits: limits, obs: obs, now: time.Now}
}

// WithAdmission makes Publish wait while live delivery lags (see
// Admission); it returns s. Call it before the first Publish.
func (s *Service) WithAdmission(a *Admission) *Service {
	s.adm = a
	return s
}

// Limits returns the limits the service enforces.
func (s *Service) Limits() event.Limits { return s.limits }

// Publish normalizes and appends events for p. The batch is atomic with
// respect to validation: if any event is invalid, none is stored and the
// error (*event.BatchError) lists every invalid one by index.
func (s *Service) Publish(ctx context.Context, p *auth.Principal, events []*event.Event) ([]domain.Ack, error) {
	if !p.CanPublish() {
		return nil, ErrForbidden
	}
	if len(events) == 0 {
		return nil, &event.BatchError{Problems: []event.Problem{{Index: 0, Reason: "no events"}}}
	}
	if len(events) > s.limits.MaxBatchCount {
		return nil, &event.BatchError{TooLarge: true, Problems: []event.Problem{{Index: s.limits.MaxBatchCount, Reason: fmt.Sprintf("more than %d events in one request", s.limits.MaxBatchCount)}}}
	}
	// Held before validation and stamping: received_at is when the event
	// was let in, and a held request can still be cancelled by its client.
	held, err := s.adm.wait(ctx, s.now)
	if held > 0 && s.obs != nil {
		s.obs.Held(held)
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: held while delivery lags: %w", err)
	}
	start := s.now()
	tenant := p.PublishTenant()
	var problems []event.Problem
	dropped := 0
	for i, e := range events {
		n, err := event.Normalize(e, tenant, start, s.limits)
		if err != nil {
			problems = append(problems, event.ProblemFrom(i, err))
			continue
		}
		if !p.MayPublish(e.Category) {
			reason := fmt.Sprintf("token may not publish category %q", e.Category)
			if e.Category == event.CategoryDetection && p.SeesCategory(e.Category) {
				reason += ": publishing detections needs a token granted the detection category explicitly"
			}
			problems = append(problems, event.Problem{Index: i, Field: "category", Reason: reason})
			continue
		}
		dropped += n
	}
	if len(problems) > 0 {
		return nil, &event.BatchError{Problems: problems}
	}
	acks, err := s.log.Append(ctx, events)
	if err != nil {
		return acks, fmt.Errorf("ingest: %w", err)
	}
	s.adm.appended(acks, s.now())
	if s.obs != nil {
		s.obs.Ingested(events, s.now().Sub(start))
		if dropped > 0 {
			s.obs.SensitiveDropped(dropped)
		}
	}
	return acks, nil
}
