package server

// Issue 3: adapter from the detection engine (internal/detect) to the
// interface the GraphQL API declares, so graphql does not import detect.

import (
	"context"
	"fmt"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
)

// GraphQLDetections exposes e to the GraphQL resolvers; nil gives nil.
func GraphQLDetections(e *detect.Engine) graphql.Detections {
	if e == nil {
		return nil
	}
	return gqlDetections{e}
}

type gqlDetections struct{ e *detect.Engine }

// toGQL converts field by field (TestToGQLCoversEveryField checks that
// every field of graphql.Detection is set and that the result is what the
// SPEC 6 JSON shape of detect.Detection says). It used to go through a
// JSON encode and decode per detection.
func toGQL(d detect.Detection) graphql.Detection {
	conf := d.Confidence // always present in detect's JSON, so never nil here
	return graphql.Detection{
		ID:              d.ID,
		RuleID:          d.RuleID,
		Title:           d.Title,
		Category:        d.Category,
		Severity:        d.Severity,
		Confidence:      &conf,
		Status:          string(d.Status),
		MitreTactics:    d.MitreTactics,
		MitreTechniques: d.MitreTechniques,
		OwaspCategory:   d.OWASPCategory,
		CreatedAt:       d.CreatedAt,
		UpdatedAt:       d.UpdatedAt,
		Notes:           d.Notes,
		Assignee:        d.Assignee,
		EventIDs:        d.EventIDs,
		GroupKey:        d.GroupKey,
		Count:           d.Count,
	}
}

func (g gqlDetections) ListDetections(_ context.Context, p *auth.Principal, q graphql.DetectionQuery) ([]graphql.Detection, error) {
	dq := detect.Query{Statuses: q.Statuses, Severities: q.Severities, Tactics: q.MitreTactics, RuleIDs: q.RuleIDs, Since: q.Since, Limit: q.Limit}
	if q.MinSeverity != "" {
		min, err := event.ParseSeverity(q.MinSeverity)
		if err != nil {
			return nil, fmt.Errorf("min_severity: %w", err)
		}
		var allowed []string
		for _, s := range event.Severities() {
			if s >= min && (len(q.Severities) == 0 || contains(q.Severities, s.String())) {
				allowed = append(allowed, s.String())
			}
		}
		if len(allowed) == 0 {
			return []graphql.Detection{}, nil
		}
		dq.Severities = allowed
	}
	list := g.e.List(p, dq)
	out := make([]graphql.Detection, 0, len(list))
	for _, d := range list {
		out = append(out, toGQL(d))
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (g gqlDetections) GetDetection(_ context.Context, p *auth.Principal, id string) (*graphql.Detection, error) {
	d, err := g.e.Get(p, id)
	if err != nil {
		return nil, err
	}
	gd := toGQL(d)
	return &gd, nil
}

func (g gqlDetections) UpdateDetection(ctx context.Context, p *auth.Principal, id string, u graphql.DetectionUpdate) (*graphql.Detection, error) {
	d, err := g.e.Update(ctx, p, id, detect.Patch{Status: u.Status, Notes: u.Notes, Assignee: u.Assignee})
	if err != nil {
		return nil, err
	}
	gd := toGQL(d)
	return &gd, nil
}

func (g gqlDetections) Rules(_ context.Context, p *auth.Principal) ([]graphql.Rule, error) {
	if !p.CanRead() {
		return nil, fmt.Errorf("role %s may not read rules", p.Role)
	}
	infos := g.e.Rules().Infos()
	out := make([]graphql.Rule, len(infos))
	for i, in := range infos {
		id := in.ID
		if id == "" {
			id = in.Name
		}
		out[i] = graphql.Rule{ID: id, Title: in.Title, Kind: in.Kind, Severity: in.Severity, State: in.State, Path: in.Path, Error: in.Error}
	}
	return out, nil
}
