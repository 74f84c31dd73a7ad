package detect

// Backtesting (docs/detections.md, "Backtesting"): rules evaluated over
// stored history, read with the log's batched replay (store.Log.ScanRange),
// with a fresh evaluator whose correlation windows use event time. Nothing
// is written: no detection, no log event, no KV entry. The work a request
// may ask for is bounded in events and time, and it stops when the client
// goes away (its context).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/event"
)

// BacktestLog is the log as a backtest reads it (satisfied by *store.Log).
type BacktestLog interface {
	Head(ctx context.Context) (uint64, error)
	SeqForTime(ctx context.Context, t time.Time) (uint64, error)
	ScanRange(ctx context.Context, from, to uint64, fn func(*event.Event) bool) error
}

// Backtest bounds (docs/detections.md).
const (
	DefaultBacktestEvents   = 1_000_000
	MaxBacktestEvents       = 20_000_000
	DefaultBacktestDuration = 60 * time.Second
	MaxBacktestDuration     = 10 * time.Minute
	DefaultBacktestFirst    = 10
	MaxBacktestFirst        = 1000
	// maxBacktestKeys bounds the open detections a backtest tracks for
	// suppression; past it a firing for an untracked key counts as a new
	// detection and the report says the figure is an upper bound.
	maxBacktestKeys = 200_000
)

// BacktestOptions say what history to evaluate.
type BacktestOptions struct {
	// FromSeq, else the first event received Since before now, else the
	// first event in the log.
	FromSeq uint64
	Since   time.Duration
	// ToSeq: the last seq (0: the head when the backtest starts).
	ToSeq uint64
	// Tenant limits the events to one tenant ("" all).
	Tenant string
	// View, when set, limits the events to those the caller may read (its
	// tenants and categories) and gives the form it may see: the rules
	// are evaluated on that form, so a masked reader (a viewer) learns
	// from matches, group keys and event ids no more than its masked
	// events show (auth.Policy.Visible).
	View func(*event.Event) (*event.Event, bool)
	// MaxEvents and MaxDuration bound the work: the backtest stops there
	// and reports itself truncated.
	MaxEvents   int
	MaxDuration time.Duration
	// First is how many matching event ids and detections are listed per
	// rule.
	First       int
	Suppression time.Duration // default 1h, as the engine's
	MaxKeys     int           // correlation windows per rule
}

// BacktestDetection is one detection a backtest would have created.
type BacktestDetection struct {
	Tenant    string    `json:"tenant"`
	GroupKey  string    `json:"group_key"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int       `json:"count"`
	FirstSeq  uint64    `json:"first_seq"`
	EventIDs  []string  `json:"event_ids"` // up to 10 of the firing that created it
}

// BacktestRule is one rule's result.
type BacktestRule struct {
	RuleID string `json:"rule_id"`
	Title  string `json:"title"`
	Kind   string `json:"kind"`
	Path   string `json:"path,omitempty"`
	// Scanned: events the rule was evaluated against (a rule limited to a
	// Vigil category meets only that category's events).
	Scanned uint64 `json:"events_scanned"`
	Matches uint64 `json:"matches"` // detection rules
	// Firings: times the rule fired (a plain rule: its generating
	// matches; a correlation: its condition held).
	Firings uint64 `json:"firings"`
	// Detections it would have created (one per group key and
	// suppression window, by event time).
	Detections      int                 `json:"detections"`
	FirstMatches    []string            `json:"first_matches"`
	FirstDetections []BacktestDetection `json:"first_detections"`
	Generates       bool                `json:"generates"`
}

// BacktestReport is the result of a backtest.
type BacktestReport struct {
	FromSeq uint64 `json:"from_seq"`
	ToSeq   uint64 `json:"to_seq"`
	LastSeq uint64 `json:"last_seq"` // the last event read
	Read    uint64 `json:"events_read"`
	// Evaluated: events read minus other tenants', invisible ones and
	// Vigil's own detection events.
	Evaluated       uint64         `json:"events_evaluated"`
	Truncated       string         `json:"truncated,omitempty"` // "max_events" or "max_duration"
	Elapsed         time.Duration  `json:"elapsed_ns"`
	EventsPerSecond float64        `json:"events_per_second"`
	Approximate     bool           `json:"detections_approximate,omitempty"`
	Rules           []BacktestRule `json:"rules"`
	Errors          []*sigma.Error `json:"errors"`
}

// ErrBacktestInput marks a backtest asked for beyond its bounds or with
// bad options (HTTP 400).
var ErrBacktestInput = errors.New("backtest")

// Backtest evaluates rs over the log from opts.FromSeq (or opts.Since) to
// opts.ToSeq without writing anything, and reports per rule.
func Backtest(ctx context.Context, log BacktestLog, rs *RuleSet, opts BacktestOptions) (*BacktestReport, error) {
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultBacktestEvents
	}
	if opts.MaxDuration <= 0 {
		opts.MaxDuration = DefaultBacktestDuration
	}
	if opts.First <= 0 {
		opts.First = DefaultBacktestFirst
	}
	if opts.Suppression <= 0 {
		opts.Suppression = time.Hour
	}
	switch {
	case opts.MaxEvents > MaxBacktestEvents:
		return nil, fmt.Errorf("%w: max_events: at most %d", ErrBacktestInput, MaxBacktestEvents)
	case opts.MaxDuration > MaxBacktestDuration:
		return nil, fmt.Errorf("%w: max_seconds: at most %d", ErrBacktestInput, int(MaxBacktestDuration.Seconds()))
	case opts.First > MaxBacktestFirst:
		return nil, fmt.Errorf("%w: first: at most %d", ErrBacktestInput, MaxBacktestFirst)
	case opts.Since < 0:
		return nil, fmt.Errorf("%w: since: must be positive", ErrBacktestInput)
	case opts.ToSeq != 0 && opts.FromSeq > opts.ToSeq:
		return nil, fmt.Errorf("%w: from_seq is after to_seq", ErrBacktestInput)
	}
	start := time.Now()
	head, err := log.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("detect: backtest: %w", err)
	}
	from, to := opts.FromSeq, opts.ToSeq
	if from == 0 && opts.Since > 0 {
		if from, err = log.SeqForTime(ctx, start.Add(-opts.Since)); err != nil {
			return nil, fmt.Errorf("detect: backtest: %w", err)
		}
	}
	from = max(from, 1)
	if to == 0 || to > head {
		to = head
	}
	rep := &BacktestReport{FromSeq: from, ToSeq: to, Errors: rs.Errors()}
	if rep.Errors == nil {
		rep.Errors = []*sigma.Error{}
	}

	ev := NewEvaluator(rs, opts.MaxKeys, 0)
	results := make([]BacktestRule, len(rs.rules))
	for _, r := range rs.rules {
		results[r.idx] = BacktestRule{RuleID: r.meta.RuleID, Title: r.meta.Title, Kind: r.info.Kind, Path: r.info.Path,
			Generates: r.generate, FirstMatches: []string{}, FirstDetections: []BacktestDetection{}}
	}
	ev.matched = func(r *rule, e *event.Event) {
		res := &results[r.idx]
		res.Matches++
		if len(res.FirstMatches) < opts.First {
			res.FirstMatches = append(res.FirstMatches, e.ID)
		}
	}
	type openDet struct {
		lastSeen time.Time
		idx      int // in the rule's FirstDetections, or -1
	}
	open := map[string]*openDet{}
	perCat := map[event.Category]uint64{}
	deadline := start.Add(opts.MaxDuration)
	scanErr := log.ScanRange(ctx, from, to, func(e *event.Event) bool {
		rep.Read++
		rep.LastSeq = e.Seq
		if rep.Read%1024 == 0 && time.Now().After(deadline) {
			rep.Truncated = "max_duration"
			return false
		}
		if e.Category == event.CategoryDetection && e.Source == SourceName ||
			opts.Tenant != "" && e.Tenant != opts.Tenant {
			return rep.Read < uint64(opts.MaxEvents) || e.Seq >= to || stopAt(rep, "max_events")
		}
		if opts.View != nil {
			v, ok := opts.View(e)
			if !ok {
				return rep.Read < uint64(opts.MaxEvents) || e.Seq >= to || stopAt(rep, "max_events")
			}
			e = v
		}
		rep.Evaluated++
		perCat[e.Category]++
		for _, f := range ev.Evaluate(e) {
			res := &results[f.rule.idx]
			res.Firings++
			k := openKey(f.tenant, f.rule.meta.RuleID, f.groupKey)
			if d, ok := open[k]; ok && f.at.Sub(d.lastSeen) <= opts.Suppression {
				if f.at.After(d.lastSeen) {
					d.lastSeen = f.at
				}
				if d.idx >= 0 {
					fd := &res.FirstDetections[d.idx]
					fd.Count += f.newEvents
					if f.at.After(fd.LastSeen) {
						fd.LastSeen = f.at
					}
				}
				continue
			}
			res.Detections++
			d := &openDet{lastSeen: f.at, idx: -1}
			if len(res.FirstDetections) < opts.First {
				ids := f.eventIDs
				if len(ids) > 10 {
					ids = ids[len(ids)-10:]
				}
				d.idx = len(res.FirstDetections)
				res.FirstDetections = append(res.FirstDetections, BacktestDetection{Tenant: f.tenant, GroupKey: f.groupKey,
					FirstSeen: f.at, LastSeen: f.at, Count: max(f.newEvents, 1), FirstSeq: e.Seq, EventIDs: append([]string(nil), ids...)})
			}
			if _, ok := open[k]; ok || len(open) < maxBacktestKeys {
				open[k] = d
			} else {
				rep.Approximate = true
			}
		}
		return rep.Read < uint64(opts.MaxEvents) || e.Seq >= to || stopAt(rep, "max_events")
	})
	rep.Elapsed = time.Since(start)
	if s := rep.Elapsed.Seconds(); s > 0 {
		rep.EventsPerSecond = float64(rep.Read) / s
	}
	if scanErr != nil {
		return nil, fmt.Errorf("detect: backtest: %w", scanErr)
	}
	for _, r := range rs.rules {
		res := &results[r.idx]
		switch {
		case r.corr != nil:
			res.Scanned = rep.Evaluated
		case r.matcher.Category() != "":
			res.Scanned = perCat[r.matcher.Category()]
		default:
			res.Scanned = rep.Evaluated
		}
	}
	rep.Rules = results
	sort.SliceStable(rep.Rules, func(i, j int) bool { return rep.Rules[i].Detections > rep.Rules[j].Detections })
	return rep, nil
}

func stopAt(rep *BacktestReport, why string) bool {
	rep.Truncated = why
	return false
}

// RuleFile is one rule file sent to be backtested.
type RuleFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// LoadRuleFiles builds a rule set from files held in memory (a backtest
// request), with the built-in rules when builtins is set (so correlations
// may read them) and the field map fm.
func LoadRuleFiles(files []RuleFile, builtins bool, fm sigma.FieldMap) (*RuleSet, error) {
	g, err := gatherSources(LoadOptions{NoBuiltins: !builtins})
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		g.srcs = append(g.srcs, ruleSource{path: f.Path, origin: "request", data: []byte(f.Content)})
	}
	if fm == nil {
		fm = sigma.DefaultFieldMap()
	}
	rs := buildRuleSet(g.srcs, fm)
	rs.loadedAt = time.Now().UTC()
	return rs, nil
}

// BacktestRequest is the body of POST /api/v1/rules/backtest.
type BacktestRequest struct {
	// Rules to backtest; none: the rules this node runs.
	Rules []RuleFile `json:"rules"`
	// FieldMap is a fieldmap.yaml applied over this node's field map.
	FieldMap string `json:"fieldmap"`
	Builtins bool   `json:"builtins"`
	// Since is a duration back from now (24h, 90m, 7d); FromSeq wins.
	Since      string `json:"since"`
	FromSeq    uint64 `json:"from_seq"`
	ToSeq      uint64 `json:"to_seq"`
	Tenant     string `json:"tenant"`
	MaxEvents  int    `json:"max_events"`
	MaxSeconds int    `json:"max_seconds"`
	First      int    `json:"first"`
}

// maxBacktestBody bounds the request body (rule files included).
const maxBacktestBody = 8 << 20

// ParseSince reads a backtest's since: a Go duration or a Sigma timespan
// (7d, 2w).
func ParseSince(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := sigma.ParseTimespan(s)
	if err != nil {
		return 0, fmt.Errorf("since: %q is not a duration (24h, 90m, 7d)", s)
	}
	return d, nil
}

// viewFor is BacktestOptions.View for p: its tenants and categories,
// masked as its role is.
func (e *Engine) viewFor(p *auth.Principal) func(*event.Event) (*event.Event, bool) {
	if pol := e.opts.Policy; pol != nil {
		return func(ev *event.Event) (*event.Event, bool) { return pol.Visible(p, ev) }
	}
	return func(ev *event.Event) (*event.Event, bool) { return ev, p.MayRead(ev) }
}

// HandleBacktest serves POST /api/v1/rules/backtest: the rules in the body
// (or the loaded ones) over stored history, nothing written. Reads only
// the events the token may read; one backtest at a time per node (429);
// stops when the client goes away.
func (e *Engine) HandleBacktest(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read events", p.Role))
		return
	}
	log, ok := e.opts.Log.(BacktestLog)
	if !ok || log == nil {
		auth.WriteError(w, http.StatusNotImplemented, "this node has no log to backtest over")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBacktestBody+1))
	if err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "reading body: %w", err))
		return
	}
	if len(body) > maxBacktestBody {
		auth.WriteErr(w, domain.Errorf(domain.KindTooLarge, "body larger than %d MiB", maxBacktestBody>>20))
		return
	}
	var req BacktestRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "body: %w", err))
		return
	}
	opts := BacktestOptions{FromSeq: req.FromSeq, ToSeq: req.ToSeq, Tenant: req.Tenant, MaxEvents: req.MaxEvents,
		MaxDuration: time.Duration(req.MaxSeconds) * time.Second, First: req.First, Suppression: e.opts.Suppression,
		MaxKeys: e.opts.MaxKeys, View: e.viewFor(p)}
	if req.MaxEvents < 0 || req.MaxSeconds < 0 || req.First < 0 {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "max_events, max_seconds and first must not be negative"))
		return
	}
	if req.Since != "" {
		if opts.Since, err = ParseSince(req.Since); err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
			return
		}
	}
	if req.Tenant != "" && !p.SeesTenant(req.Tenant) {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "tenant %s is not visible to this token", strconv.Quote(req.Tenant)))
		return
	}
	if req.FieldMap != "" && len(req.Rules) == 0 {
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "fieldmap: applies to the rules sent with it; send rules too"))
		return
	}
	rs := e.rules.Load()
	if len(req.Rules) > 0 {
		fm := rs.fieldMap
		if req.FieldMap != "" {
			extra, err := sigma.ParseFieldMap([]byte(req.FieldMap))
			if err != nil {
				auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "fieldmap: %w", err))
				return
			}
			fm = fm.Merge(extra)
		}
		if rs, err = LoadRuleFiles(req.Rules, req.Builtins, fm); err != nil {
			auth.WriteErr(w, domain.Errorf(domain.KindInternal, "%w", err))
			return
		}
		if rs.Len() == 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "no rule loaded", "errors": rs.Errors()})
			return
		}
	}
	select {
	case e.backtests <- struct{}{}:
		defer func() { <-e.backtests }()
	default:
		auth.WriteErr(w, domain.Errorf(domain.KindRateLimited, "another backtest is running on this node; try again when it ends"))
		return
	}
	rep, err := Backtest(r.Context(), log, rs, opts)
	switch {
	case err == nil:
		e.log.Info("backtest", "by", p.ID, "from_seq", rep.FromSeq, "to_seq", rep.ToSeq, "read", rep.Read,
			"rules", len(rep.Rules), "truncated", rep.Truncated, "elapsed", rep.Elapsed)
		writeJSON(w, http.StatusOK, rep)
	case errors.Is(err, ErrBacktestInput):
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "%w", err))
	case r.Context().Err() != nil:
		e.log.Info("backtest abandoned by its client", "by", p.ID)
	default:
		auth.WriteErr(w, domain.Errorf(domain.KindInternal, "%w", err))
	}
}
