package graphql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/graphql/generated"
)

// Detection is the SPEC 6 detection object, as the detection engine
// stores it and as detection.created / detection.updated events carry it
// in their data.
type Detection struct {
	ID              string    `json:"id"`
	RuleID          string    `json:"rule_id"`
	Title           string    `json:"title"`
	Category        string    `json:"category,omitempty"`
	Severity        string    `json:"severity"`
	Confidence      *float64  `json:"confidence,omitempty"`
	Status          string    `json:"status"`
	MitreTactics    []string  `json:"mitre_tactics,omitempty"`
	MitreTechniques []string  `json:"mitre_techniques,omitempty"`
	OwaspCategory   string    `json:"owasp_category,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	Notes           string    `json:"notes,omitempty"`
	Assignee        string    `json:"assignee,omitempty"`
	EventIDs        []string  `json:"event_ids,omitempty"`
	GroupKey        string    `json:"group_key,omitempty"`
	Count           int       `json:"count"`
}

// DetectionQuery narrows a detection listing (all fields optional).
type DetectionQuery struct {
	Statuses     []string // active, investigating, resolved, false_positive
	Severities   []string
	MinSeverity  string
	MitreTactics []string
	RuleIDs      []string
	Since        time.Time
	Limit        int
}

// DetectionUpdate is an analyst's change; nil fields stay as they are.
type DetectionUpdate struct {
	Status   *string
	Notes    *string
	Assignee *string
}

// Rule is one loaded detection rule.
type Rule struct {
	ID       string
	Title    string
	Kind     string // sigma, threshold, sequence
	Severity string
	State    string // loaded, error, disabled
	Path     string
	Error    string
}

// Detections is what the GraphQL API needs from the detection engine
// (internal/detect, issue 3). It is defined here so the API compiles and is
// tested before that engine lands; the server wires an adapter.
type Detections interface {
	ListDetections(ctx context.Context, p *auth.Principal, q DetectionQuery) ([]Detection, error)
	GetDetection(ctx context.Context, p *auth.Principal, id string) (*Detection, error)
	UpdateDetection(ctx context.Context, p *auth.Principal, id string, u DetectionUpdate) (*Detection, error)
	Rules(ctx context.Context, p *auth.Principal) ([]Rule, error)
}

// ErrNoDetections answers detection queries when no engine is wired.
var ErrNoDetections = errors.New("detections are not available: no detection engine is running")

func (q queryResolver) Detections(ctx context.Context, f *generated.DetectionFilter, limit *int) ([]*generated.Detection, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if q.deps.Detections == nil {
		return nil, ErrNoDetections
	}
	dq := detectionQuery(f)
	dq.Limit = 100
	if limit != nil {
		if *limit < 1 || *limit > 10_000 {
			return nil, errors.New("limit: must be from 1 to 10000")
		}
		dq.Limit = *limit
	}
	list, err := q.deps.Detections.ListDetections(ctx, p, dq)
	if err != nil {
		return nil, err
	}
	out := make([]*generated.Detection, len(list))
	for i := range list {
		out[i] = toDetection(&list[i])
	}
	return out, nil
}

func (q queryResolver) Detection(ctx context.Context, id string) (*generated.Detection, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if q.deps.Detections == nil {
		return nil, ErrNoDetections
	}
	d, err := q.deps.Detections.GetDetection(ctx, p, id)
	if err != nil || d == nil {
		return nil, err
	}
	return toDetection(d), nil
}

func (q queryResolver) Rules(ctx context.Context) ([]*generated.Rule, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if q.deps.Detections == nil {
		return nil, ErrNoDetections
	}
	rules, err := q.deps.Detections.Rules(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]*generated.Rule, len(rules))
	for i, r := range rules {
		out[i] = &generated.Rule{ID: r.ID, Title: r.Title, Kind: r.Kind, Severity: sp(r.Severity),
			State: r.State, Path: sp(r.Path), Error: sp(r.Error)}
	}
	return out, nil
}

func (m mutationResolver) UpdateDetection(ctx context.Context, id string, status *generated.DetectionStatus, notes, assignee *string) (*generated.Detection, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if !p.CanUpdateDetections() {
		return nil, errors.New("role " + string(p.Role) + " may not update detections")
	}
	if m.deps.Detections == nil {
		return nil, ErrNoDetections
	}
	u := DetectionUpdate{Notes: notes, Assignee: assignee}
	if status != nil {
		s := strings.ToLower(string(*status))
		u.Status = &s
	}
	d, err := m.deps.Detections.UpdateDetection(ctx, p, id, u)
	if err != nil {
		return nil, err
	}
	return toDetection(d), nil
}

func detectionQuery(f *generated.DetectionFilter) DetectionQuery {
	var q DetectionQuery
	if f == nil {
		return q
	}
	for _, s := range f.Statuses {
		q.Statuses = append(q.Statuses, strings.ToLower(string(s)))
	}
	q.Severities, q.MitreTactics, q.RuleIDs = f.Severities, f.MitreTactics, f.RuleIds
	if f.MinSeverity != nil {
		q.MinSeverity = *f.MinSeverity
	}
	if f.Since != nil {
		q.Since = *f.Since
	}
	return q
}

func toDetection(d *Detection) *generated.Detection {
	out := &generated.Detection{
		ID: d.ID, RuleID: d.RuleID, Title: d.Title, Category: sp(d.Category), Severity: d.Severity,
		Confidence: d.Confidence, Status: generated.DetectionStatus(strings.ToUpper(d.Status)),
		MitreTactics: nonNil(d.MitreTactics), MitreTechniques: nonNil(d.MitreTechniques),
		OwaspCategory: sp(d.OwaspCategory), Notes: sp(d.Notes), Assignee: sp(d.Assignee),
		EventIds: nonNil(d.EventIDs), GroupKey: sp(d.GroupKey), Count: d.Count,
	}
	if !out.Status.IsValid() {
		out.Status = generated.DetectionStatusActive
	}
	if !d.CreatedAt.IsZero() {
		t := d.CreatedAt
		out.CreatedAt = &t
	}
	if !d.UpdatedAt.IsZero() {
		t := d.UpdatedAt
		out.UpdatedAt = &t
	}
	return out
}

// detectionFromData decodes the detection carried by a detection event.
func detectionFromData(raw json.RawMessage) (*Detection, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var d Detection
	if err := json.Unmarshal(raw, &d); err != nil || d.ID == "" {
		return nil, false
	}
	return &d, true
}

// OpenDetections counts the open (not resolved, not false positive)
// detections p may see, by severity, from the engine: the authoritative
// figure for status, metrics and posture.
func OpenDetections(ctx context.Context, d Detections, p *auth.Principal) (map[string]int64, error) {
	list, err := d.ListDetections(ctx, p, DetectionQuery{Statuses: []string{"active", "investigating"}})
	if err != nil {
		return nil, fmt.Errorf("open detections: %w", err)
	}
	out := map[string]int64{}
	for _, det := range list {
		out[det.Severity]++
	}
	return out, nil
}

// withOpenDetections replaces the stream-derived open-detection counts of
// snap with the engine's when one is wired.
func (r *Resolver) withOpenDetections(ctx context.Context, p *auth.Principal, snap stats.Snapshot) stats.Snapshot {
	if r.deps.Detections == nil {
		return snap
	}
	open, err := OpenDetections(ctx, r.deps.Detections, p)
	if err != nil {
		r.deps.Logger.Warn("open detections unavailable; using stream counts", "err", err)
		return snap
	}
	counts := map[string]int64{}
	for sev := range snap.OpenDetections {
		counts[sev] = 0
	}
	for sev, n := range open {
		counts[sev] = n
	}
	snap.OpenDetections = counts
	return snap
}
