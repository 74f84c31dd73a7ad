package graphql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/graphql/generated"
)

// nativeFilter maps the GraphQL EventFilter onto filter.Filter, field for
// field; compilation (and its error naming the field) is filter's.
func nativeFilter(f *generated.EventFilter) filter.Filter {
	if f == nil {
		return filter.Filter{}
	}
	out := filter.Filter{
		Categories: f.Categories, Types: f.Types, Severities: f.Severities, Users: f.Users,
		UserIDs: f.UserIds, SrcIPs: f.SrcIps, Resources: f.Resources, Actions: f.Actions,
		Outcomes: f.Outcomes, Sources: f.Sources, MitreTactics: f.MitreTactics,
		MitreTechniques: f.MitreTechniques, Statuses: f.Statuses, MinConfidence: f.MinConfidence,
	}
	if f.MinSeverity != nil {
		out.MinSeverity = *f.MinSeverity
	}
	if f.Expr != nil {
		out.Expr = *f.Expr
	}
	return out
}

// compile compiles a native filter; the error names the GraphQL argument.
func compile(arg string, f filter.Filter) (*filter.Matcher, error) {
	m, err := filter.Compile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	return m, nil
}

func (q queryResolver) Events(ctx context.Context, f *generated.EventFilter, limit *int, after *int) (*generated.EventPage, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if q.deps.History == nil {
		return nil, errors.New("history is not available")
	}
	m, err := compile("filter", nativeFilter(f))
	if err != nil {
		return nil, err
	}
	n := 100
	if limit != nil {
		if *limit < 1 || *limit > 10_000 {
			return nil, errors.New("limit: must be from 1 to 10000")
		}
		n = *limit
	}
	asc, from := false, uint64(0)
	if after != nil {
		if *after < 0 {
			return nil, errors.New("after: must be a seq (>= 0)")
		}
		asc, from = true, uint64(*after)+1
	}
	events, next, err := q.deps.History.Query(ctx, p, m, n, asc, from)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	page := &generated.EventPage{Events: make([]*generated.Event, len(events))}
	for i, e := range events {
		page.Events[i] = toEvent(e)
	}
	// Only ascending pages continue through `after`; next is the last seq
	// returned, so after=next resumes exactly behind it.
	if asc && next != 0 {
		last := int(next - 1)
		page.Next = &last
	}
	return page, nil
}

func (q queryResolver) Event(ctx context.Context, id string) (*generated.Event, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if q.deps.Events == nil {
		return nil, errors.New("event lookup is not available")
	}
	var v *event.Event
	_, err = q.deps.Events.Find(ctx, id, func(e *event.Event) bool {
		var ok bool
		v, ok = q.deps.Policy(p, e)
		return ok
	})
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return nil, nil // another tenant's id is "not found", not "forbidden"
		}
		return nil, fmt.Errorf("event %s: %w", id, err)
	}
	return toEvent(v), nil
}

func (q queryResolver) Status(ctx context.Context) (*generated.Status, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	if q.deps.Status == nil {
		return nil, errors.New("status is not available")
	}
	st := q.deps.Status(ctx, p)
	out := &generated.Status{
		Status: st.Status, Timestamp: st.Timestamp, ConnectedClients: st.ConnectedClients,
		LogHead: int(st.LogHead), EventsLastMinute: int(st.EventsLastMinute),
		EventsLastHour: int(st.EventsLastHour), EventsPerSecond: st.EventsPerSecond,
		EventsPerType: windows(st.EventsPerType), EventsPerCategory: windows(st.EventsPerCategory),
		OpenDetections: severityCounts(st.OpenDetections), UptimeSeconds: int(st.UptimeSeconds),
	}
	names := make([]string, 0, len(st.Components))
	for n := range st.Components {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := st.Components[n]
		out.Components = append(out.Components, &generated.ComponentStatus{Name: n, Status: c.Status, Error: sp(c.Error)})
	}
	if out.Components == nil {
		out.Components = []*generated.ComponentStatus{}
	}
	return out, nil
}

func windows(m map[string]stats.Window) []*generated.CountWindow {
	out := []*generated.CountWindow{}
	for _, k := range stats.SortedKeys(m) {
		w := m[k]
		out = append(out, &generated.CountWindow{Key: k, LastMinute: int(w.LastMinute), LastHour: int(w.LastHour)})
	}
	return out
}

func severityCounts(m map[string]int64) []*generated.SeverityCount {
	out := []*generated.SeverityCount{}
	seen := map[string]bool{}
	for _, s := range event.Severities() {
		seen[s.String()] = true
		out = append(out, &generated.SeverityCount{Severity: s.String(), Count: int(m[s.String()])})
	}
	for s, n := range m {
		if !seen[s] {
			out = append(out, &generated.SeverityCount{Severity: s, Count: int(n)})
		}
	}
	return out
}

func (m mutationResolver) PublishEvent(ctx context.Context, in generated.EventInput) (*generated.PublishResult, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if m.deps.Ingest == nil {
		return nil, errors.New("publishing is not available")
	}
	e := &event.Event{Type: in.Type, MitreTactics: in.MitreTactics, MitreTechniques: in.MitreTechniques,
		Tags: in.Tags, Confidence: in.Confidence, RiskScore: in.RiskScore}
	for dst, src := range map[*string]*string{&e.ID: in.ID, &e.Source: in.Source, &e.Message: in.Message,
		&e.User: in.User, &e.UserID: in.UserID, &e.SrcIP: in.SrcIP, &e.Resource: in.Resource,
		&e.Action: in.Action, &e.Outcome: in.Outcome} {
		if src != nil {
			*dst = *src
		}
	}
	if in.Time != nil {
		e.Time = *in.Time
	}
	if in.Category != nil && *in.Category != "" {
		c, err := event.ParseCategory(*in.Category)
		if err != nil {
			return nil, fmt.Errorf("input.category: %w", err)
		}
		e.Category = c
	}
	if in.Severity != nil && *in.Severity != "" {
		s, err := event.ParseSeverity(*in.Severity)
		if err != nil {
			return nil, fmt.Errorf("input.severity: %w", err)
		}
		e.Severity = s
	}
	if in.Data != nil {
		b, err := json.Marshal(in.Data)
		if err != nil {
			return nil, fmt.Errorf("input.data: %w", err)
		}
		e.Data = b
	}
	acks, err := m.deps.Ingest.Publish(ctx, p, []*event.Event{e})
	if err != nil {
		var be *event.BatchError
		if errors.As(err, &be) && len(be.Problems) > 0 {
			pr := be.Problems[0]
			if pr.Field != "" {
				return nil, fmt.Errorf("input.%s: %s", pr.Field, pr.Reason)
			}
			return nil, errors.New("input: " + pr.Reason)
		}
		return nil, err
	}
	a := acks[0]
	return &generated.PublishResult{ID: a.ID, Seq: int(a.Seq), Duplicate: a.Duplicate}, nil
}
