package detect

import (
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/event"
)

// Evaluator runs a RuleSet over events one at a time and returns the rule
// firings. It owns the correlation state, bounded per rule by MaxKeys. It
// is not safe for concurrent use: the engine's one evaluation goroutine
// owns it (and `vigil rules test` and the benchmarks use their own).
type Evaluator struct {
	rs     *RuleSet
	ctx    *sigma.EvalCtx
	state  []*corrState // by rule idx; nil for detection rules
	lim    stateLimits
	out    []*firing
	scr    sigma.IndexScratch
	evals  uint64
	events uint64
	// matched, when set, is told of every detection rule match
	// (backtests count them per rule).
	matched func(*rule, *event.Event)
}

// NewEvaluator returns an evaluator with fresh correlation state.
// maxKeys bounds the group keys each correlation tracks (default 100,000);
// maxEventIDs bounds the event ids a firing carries (default 100).
func NewEvaluator(rs *RuleSet, maxKeys, maxEventIDs int) *Evaluator {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	if maxEventIDs <= 0 {
		maxEventIDs = 100
	}
	ev := &Evaluator{rs: rs, ctx: sigma.NewEvalCtx(), state: make([]*corrState, len(rs.rules)),
		lim: stateLimits{maxKeys: maxKeys, maxEventIDs: maxEventIDs}}
	ev.ctx.UseIndex(rs.index)
	for _, r := range rs.rules {
		if r.corr != nil {
			ev.state[r.idx] = &corrState{windows: map[string]*window{}}
		}
	}
	return ev
}

// Overflow returns, per correlation rule key, how many new group keys were
// refused because the rule already tracked MaxKeys windows.
func (ev *Evaluator) Overflow() map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range ev.rs.rules {
		if st := ev.state[r.idx]; st != nil && st.overflow.Load() > 0 {
			out[r.meta.RuleID] = st.overflow.Load()
		}
	}
	return out
}

// overflowTotal sums Overflow; safe to call from any goroutine.
func (ev *Evaluator) overflowTotal() uint64 {
	var n uint64
	for _, st := range ev.state {
		if st != nil {
			n += st.overflow.Load()
		}
	}
	return n
}

// Windows is the number of open correlation windows (all rules).
func (ev *Evaluator) Windows() int {
	n := 0
	for _, st := range ev.state {
		if st != nil {
			n += len(st.windows)
		}
	}
	return n
}

// Evaluate returns the firings caused by e: plain rules that match and
// generate, and correlations whose condition now holds (chained
// correlations included). The result is valid until the next call.
func (ev *Evaluator) Evaluate(e *event.Event) []*firing {
	ev.out = ev.out[:0]
	ev.events++
	ev.ctx.Reset(e)
	// The index (issue 13) yields, in load order, only the rules whose
	// required fields the event has; MatchCtx still checks the category.
	for _, i := range ev.rs.candidates(ev.ctx, &ev.scr) {
		r := ev.rs.rules[i]
		ev.evals++
		if !r.matcher.MatchCtx(ev.ctx) {
			continue
		}
		if ev.matched != nil {
			ev.matched(r, e) // backtests count matches of every rule
		}
		if r.generate {
			ev.out = append(ev.out, plainFiring(r, e))
		}
		ev.propagate(r, e, nil, 0)
	}
	return ev.out
}

// propagate feeds a match of r into the correlations that read it.
func (ev *Evaluator) propagate(r *rule, e *event.Event, ids []string, depth int) {
	if depth > 16 {
		return // linking rejects cycles; this only bounds pathological chains
	}
	for _, down := range r.downstream {
		f := down.corr.observe(ev.state[down.idx], ev.lim, r, e, ids)
		if f == nil {
			continue
		}
		if down.generate {
			ev.out = append(ev.out, f)
		}
		ev.propagate(down, e, f.eventIDs, depth+1)
	}
}

func plainFiring(r *rule, e *event.Event) *firing {
	group := map[string]string{}
	var parts []string
	for _, f := range r.groupBy {
		if v, ok := fieldString(e, f); ok {
			group[f] = v
			parts = append(parts, strings.TrimPrefix(f, "data.")+"="+v)
		}
	}
	return &firing{rule: r, tenant: e.Tenant, groupKey: strings.Join(parts, " "), group: group,
		eventIDs: []string{e.ID}, newEvents: 1, at: e.Time, trigger: e}
}

// Firing is the exported view of one firing (for `vigil rules test`).
type Firing struct {
	RuleID   string
	Title    string
	Severity string
	GroupKey string
	EventIDs []string
}

// EvaluateView is Evaluate with exported results.
func (ev *Evaluator) EvaluateView(e *event.Event) []Firing {
	fs := ev.Evaluate(e)
	out := make([]Firing, len(fs))
	for i, f := range fs {
		out[i] = Firing{RuleID: f.rule.meta.RuleID, Title: f.rule.meta.Title, Severity: f.rule.meta.Severity,
			GroupKey: f.groupKey, EventIDs: append([]string(nil), f.eventIDs...)}
	}
	return out
}

// Matches returns the keys of every detection rule matching e, whether or
// not it generates detections (for `vigil rules test`).
func (ev *Evaluator) Matches(e *event.Event) []string {
	var out []string
	ctx := sigma.NewEvalCtx()
	ctx.Reset(e)
	for _, r := range ev.rs.rules {
		if r.matcher != nil && r.matcher.MatchCtx(ctx) {
			out = append(out, r.meta.RuleID)
		}
	}
	return out
}

// reset forgets every correlation window: an engine that becomes the
// leader rebuilds them from the log.
func (ev *Evaluator) reset() {
	for _, st := range ev.state {
		if st != nil {
			st.reset()
			st.newest, st.inserts = time.Time{}, 0
		}
	}
}
