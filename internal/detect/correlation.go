package detect

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/internal/detect/sigma"
	"github.com/vigil-sec/vigil/internal/event"
)

// correlation is a linked Sigma v2 correlation rule.
type correlation struct {
	spec  *sigma.Correlation
	owner *rule
	refs  []*rule
	// groupFields[i][j] is the Vigil field holding group-by value j in
	// matches of refs[i] (aliases applied, then the field map).
	groupFields [][]string
	valueField  []string // value_count: the counted field per ref
}

func (c *correlation) resolveFields(fm sigma.FieldMap) error {
	c.groupFields = make([][]string, len(c.refs))
	c.valueField = make([]string, len(c.refs))
	for i, ref := range c.refs {
		fields := make([]string, len(c.spec.GroupBy))
		for j, g := range c.spec.GroupBy {
			name := g
			if per, ok := c.spec.Aliases[g]; ok {
				alias, ok := per[ref.src.Name]
				if !ok {
					alias, ok = per[ref.src.ID]
				}
				if !ok {
					return fmt.Errorf("correlation.aliases.%s: no field for rule %q", g, ref.src.Key())
				}
				name = alias
			}
			fields[j] = fm.Resolve(name)
		}
		c.groupFields[i] = fields
		if c.spec.Field != "" {
			name := c.spec.Field
			if per, ok := c.spec.Aliases[name]; ok {
				if alias, ok := per[ref.src.Name]; ok {
					name = alias
				} else if alias, ok := per[ref.src.ID]; ok {
					name = alias
				}
			}
			c.valueField[i] = fm.Resolve(name)
		}
	}
	return nil
}

// refIndexes returns the positions at which r appears in c.refs.
func (c *correlation) refIndexes(r *rule) []int {
	var out []int
	for i, x := range c.refs {
		if x == r {
			out = append(out, i)
		}
	}
	return out
}

// hit is one matched event, as seen by a correlation window.
type hit struct {
	at  time.Time
	id  string
	ids []string // temporal steps fed by a chained correlation: its events
}

// window is the state of one correlation for one group key.
type window struct {
	key      string   // its key in corrState.windows
	group    []string // group-by values, in GroupBy order
	lastSeen time.Time
	// touched links the windows in the order they were last touched
	// (corrState.order), so expiry looks only at the stale end.
	touched touchNode[*window]
	fired   bool
	// event_count: the hits within the timespan, oldest first.
	hits []hit
	// value_count: last time each distinct value was seen, also linked in
	// the order they were last seen so pruning looks only at the stale end
	// (a scan of every value per event was O(distinct values): one source
	// spraying 100,000 user names made each event cost milliseconds).
	values     map[string]*touchNode[valueSeen]
	valueOrder touchList[valueSeen]
	// temporal: latest hit per ref position; temporal_ordered: hit that
	// completed each prefix of the sequence, with the sequence's start.
	steps  []hit
	starts []time.Time
}

// corrState holds the windows of one correlation rule, bounded by maxKeys.
type corrState struct {
	windows  map[string]*window
	order    touchList[*window]
	newest   time.Time
	inserts  int
	overflow atomic.Uint64 // read by Stats from other goroutines
}

// firing is one rule firing for one group key.
type firing struct {
	rule      *rule
	tenant    string
	groupKey  string
	group     map[string]string
	eventIDs  []string
	newEvents int
	at        time.Time
	trigger   *event.Event
}

// maxWindowHits bounds one event_count window; beyond it the oldest hits
// are forgotten (the count stays correct, the ids are the newest ones).
const maxWindowHits = 4096

// stateLimits bound correlation memory.
type stateLimits struct {
	maxKeys     int // windows per correlation rule
	maxEventIDs int // ids carried by a firing
}

// observe feeds one match of rule src (at position(s) in c.refs) for
// event e into correlation c and returns a firing when the condition holds.
func (c *correlation) observe(st *corrState, lim stateLimits, src *rule, e *event.Event, contributed []string) *firing {
	positions := c.refIndexes(src)
	if len(positions) == 0 {
		return nil
	}
	// Group values come from the triggering event, through the fields of
	// the first position this rule holds (aliases are per rule).
	gf := c.groupFields[positions[0]]
	group := make([]string, len(gf))
	for j, f := range gf {
		v, ok := fieldString(e, f)
		if !ok {
			return nil // an event without the group-by field cannot be grouped
		}
		group[j] = v
	}
	key := e.Tenant + "\x1f" + strings.Join(group, "\x1f")
	at := e.Time
	if at.After(st.newest) {
		st.newest = at
	}
	w, ok := st.windows[key]
	if !ok {
		st.inserts++
		if len(st.windows) >= lim.maxKeys || st.inserts%1024 == 0 {
			c.expire(st)
		}
		if len(st.windows) >= lim.maxKeys {
			st.overflow.Add(1)
			return nil
		}
		w = &window{key: key, group: group}
		w.touched.val = w
		st.windows[key] = w
	} else {
		st.order.unlink(&w.touched)
	}
	st.order.pushRecent(&w.touched)
	w.lastSeen = at
	span := c.spec.Timespan
	cutoff := at.Add(-span)
	id := e.ID
	switch c.spec.Type {
	case sigma.EventCount:
		w.prune(cutoff)
		for _, cid := range contributedOr(contributed, id) {
			w.hits = append(w.hits, hit{at: at, id: cid})
		}
		if len(w.hits) > maxWindowHits {
			w.hits = w.hits[len(w.hits)-maxWindowHits:]
		}
		n := len(w.hits)
		if !c.spec.Condition.Holds(float64(n)) {
			w.fired = false
			return nil
		}
		ids := make([]string, 0, min(n, lim.maxEventIDs))
		for i := max(0, n-lim.maxEventIDs); i < n; i++ {
			ids = append(ids, w.hits[i].id)
		}
		return c.fire(w, e, ids, n)
	case sigma.ValueCount:
		if w.values == nil {
			w.values = map[string]*touchNode[valueSeen]{}
		}
		for o := w.valueOrder.oldest; o != nil && o.val.at.Before(cutoff); o = w.valueOrder.oldest {
			w.valueOrder.unlink(o)
			delete(w.values, o.val.v)
		}
		w.prune(cutoff)
		v, ok := fieldString(e, c.valueField[positions[0]])
		if !ok {
			return nil
		}
		if seen := w.values[v]; seen != nil {
			w.valueOrder.unlink(seen)
			seen.val.at = at
			w.valueOrder.pushRecent(seen)
		} else if len(w.values) >= lim.maxKeys {
			st.overflow.Add(1) // distinct values bounded like group keys
		} else {
			seen = &touchNode[valueSeen]{val: valueSeen{v: v, at: at}}
			w.values[v] = seen
			w.valueOrder.pushRecent(seen)
		}
		w.hits = append(w.hits, hit{at: at, id: id})
		if len(w.hits) > maxWindowHits {
			w.hits = w.hits[len(w.hits)-maxWindowHits:]
		}
		n := len(w.values)
		if !c.spec.Condition.Holds(float64(n)) {
			w.fired = false
			return nil
		}
		ids := make([]string, 0, min(len(w.hits), lim.maxEventIDs))
		for i := max(0, len(w.hits)-lim.maxEventIDs); i < len(w.hits); i++ {
			ids = append(ids, w.hits[i].id)
		}
		return c.fire(w, e, ids, len(w.hits))
	case sigma.Temporal:
		if w.steps == nil {
			w.steps = make([]hit, len(c.refs))
		}
		for _, p := range positions {
			w.steps[p] = hit{at: at, id: id, ids: contributed}
		}
		for _, s := range w.steps {
			if s.at.IsZero() || s.at.Before(cutoff) {
				return nil
			}
		}
		return c.fireSteps(w, e, lim)
	case sigma.TemporalOrdered:
		if w.steps == nil {
			w.steps = make([]hit, len(c.refs))
			w.starts = make([]time.Time, len(c.refs))
		}
		// Walk positions from the last so one event cannot complete two
		// consecutive steps of the sequence at once.
		for i := len(positions) - 1; i >= 0; i-- {
			p := positions[i]
			if p == 0 {
				w.steps[0], w.starts[0] = hit{at: at, id: id, ids: contributed}, at
				continue
			}
			prev := w.starts[p-1]
			if w.steps[p-1].at.IsZero() || prev.Before(cutoff) || w.steps[p-1].at.After(at) {
				continue
			}
			w.steps[p], w.starts[p] = hit{at: at, id: id, ids: contributed}, prev
		}
		last := len(c.refs) - 1
		if w.steps[last].at.IsZero() || w.starts[last].Before(cutoff) {
			return nil
		}
		f := c.fireSteps(w, e, lim)
		// The sequence completed: start over, so the next firing needs
		// a new sequence.
		clear(w.steps)
		clear(w.starts)
		w.fired = false
		return f
	}
	return nil
}

func contributedOr(ids []string, id string) []string {
	if len(ids) > 0 {
		return ids[len(ids)-1:] // a chained firing counts once
	}
	return []string{id}
}

func (w *window) prune(cutoff time.Time) {
	i := 0
	for i < len(w.hits) && w.hits[i].at.Before(cutoff) {
		i++
	}
	// Reslicing, not copying: append reallocates (copying only the live
	// hits) once the capacity left behind the dropped prefix runs out, so
	// pruning is amortised O(1) per hit.
	w.hits = w.hits[i:]
}

func (c *correlation) fire(w *window, e *event.Event, ids []string, n int) *firing {
	newEvents := 1
	if !w.fired {
		newEvents = n // the first firing of a window brings the whole window
		w.fired = true
	}
	return &firing{rule: c.owner, tenant: e.Tenant, groupKey: c.groupKey(w.group), group: c.groupMap(w.group),
		eventIDs: ids, newEvents: newEvents, at: e.Time, trigger: e}
}

func (c *correlation) fireSteps(w *window, e *event.Event, lim stateLimits) *firing {
	ids := make([]string, 0, len(w.steps))
	seen := map[string]bool{}
	for _, s := range w.steps {
		stepIDs := s.ids
		if len(stepIDs) == 0 {
			stepIDs = []string{s.id}
		}
		for _, id := range stepIDs {
			if id != "" && !seen[id] && len(ids) < lim.maxEventIDs {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return &firing{rule: c.owner, tenant: e.Tenant, groupKey: c.groupKey(w.group), group: c.groupMap(w.group),
		eventIDs: ids, newEvents: len(ids), at: e.Time, trigger: e}
}

func (c *correlation) groupKey(vals []string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = c.spec.GroupBy[i] + "=" + v
	}
	return strings.Join(parts, " ")
}

func (c *correlation) groupMap(vals []string) map[string]string {
	m := make(map[string]string, len(vals))
	for i, v := range vals {
		// Keyed by the Vigil field of the first ref so user / src_ip can
		// be copied onto the detection event.
		m[c.groupFields[0][i]] = v
	}
	return m
}

// expire drops windows idle for longer than the timespan. It looks only at
// the least recently touched end of the list and stops at the first window
// still in its timespan, so a full state (maxKeys live groups: many
// distinct users within the timespan) costs O(1) per new key instead of a
// scan of every window per event, which stalled the engine at 200,000
// distinct users. Windows are ordered by arrival, not by event time: one
// touched late with an old event time expires when it reaches the stale
// end.
func (c *correlation) expire(st *corrState) {
	cutoff := st.newest.Add(-c.spec.Timespan)
	for n := st.order.oldest; n != nil && n.val.lastSeen.Before(cutoff); n = st.order.oldest {
		st.order.unlink(n)
		delete(st.windows, n.val.key)
	}
}

// valueSeen is one distinct value of a value_count window and when it
// was last seen.
type valueSeen struct {
	v  string
	at time.Time
}

// touchList orders entries by when they were last touched, oldest first:
// expiry pops from the stale end instead of scanning every entry.
type touchList[T any] struct{ oldest, recent *touchNode[T] }

// touchNode is one entry of a touchList.
type touchNode[T any] struct {
	val        T
	prev, next *touchNode[T]
}

// unlink takes n out of the list.
func (l *touchList[T]) unlink(n *touchNode[T]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.oldest = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.recent = n.prev
	}
	n.prev, n.next = nil, nil
}

// pushRecent puts n at the most recently touched end.
func (l *touchList[T]) pushRecent(n *touchNode[T]) {
	n.prev, n.next = l.recent, nil
	if l.recent != nil {
		l.recent.next = n
	} else {
		l.oldest = n
	}
	l.recent = n
}

// reset drops every window.
func (st *corrState) reset() {
	clear(st.windows)
	st.order = touchList[*window]{}
}

// fieldString reads one field of e as a string.
func fieldString(e *event.Event, field string) (string, bool) {
	v, ok := e.Field(field)
	if !ok || v == nil {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, x != ""
	case []string:
		s := append([]string(nil), x...)
		sort.Strings(s)
		return strings.Join(s, ","), len(s) > 0
	}
	return fmt.Sprint(v), true
}
