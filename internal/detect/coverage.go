package detect

// ATT&CK coverage (docs/detections.md, "ATT&CK coverage"): which Enterprise
// techniques the loaded rules cover and which fired (from the detections),
// as JSON and as an ATT&CK Navigator layer (format 4.5).

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect/attack"
	"github.com/vigil-sec/vigil/internal/domain"
)

// CoveredTechnique is one technique some rule covers or some detection
// names.
type CoveredTechnique struct {
	ID        string    `json:"technique_id"`
	Name      string    `json:"name"`
	Tactics   []string  `json:"tactics"` // tactic ids
	Rules     []string  `json:"rules"`   // ids of the rules tagged with it
	Fired     int       `json:"detections"`
	LastFired time.Time `json:"last_detection,omitzero"`
}

// Coverage is the ATT&CK coverage of a rule set and its detections.
type Coverage struct {
	AttackVersion   string             `json:"attack_version"`
	TotalTechniques int                `json:"total_techniques"`
	Covered         int                `json:"covered"`
	Fired           int                `json:"fired"`
	Techniques      []CoveredTechnique `json:"techniques"`
	// Tactics of the matrix, in its order (for drawing it).
	Tactics []attack.Tactic `json:"tactics"`
	// Unknown ids in rule tags or detections: not Enterprise techniques
	// of this ATT&CK version (a typo, a revoked or a Mobile/ICS id).
	Unknown []string `json:"unknown"`
}

// ComputeCoverage joins the rules' technique tags with the detections'
// techniques. Rules that failed to load cover nothing.
func ComputeCoverage(rs *RuleSet, detections []Detection) Coverage {
	tb := attack.Enterprise()
	c := Coverage{AttackVersion: tb.Version, TotalTechniques: len(tb.Techniques()), Techniques: []CoveredTechnique{}, Unknown: []string{},
		Tactics: tb.Tactics()}
	byID := map[string]*CoveredTechnique{}
	unknown := map[string]bool{}
	get := func(id string) *CoveredTechnique {
		id = strings.ToUpper(id)
		if ct, ok := byID[id]; ok {
			return ct
		}
		tech, ok := tb.Technique(id)
		if !ok {
			unknown[id] = true
			return nil
		}
		ct := &CoveredTechnique{ID: id, Name: tech.Name, Rules: []string{}}
		for _, sn := range tech.Tactics {
			if ta, ok := tb.Tactic(sn); ok {
				ct.Tactics = append(ct.Tactics, ta.ID)
			}
		}
		byID[id] = ct
		return ct
	}
	if rs != nil {
		for _, r := range rs.rules {
			for _, id := range r.info.MitreTechniques {
				if ct := get(id); ct != nil && !containsString(ct.Rules, r.meta.RuleID) {
					ct.Rules = append(ct.Rules, r.meta.RuleID)
				}
			}
		}
	}
	for i := range detections {
		d := &detections[i]
		for _, id := range d.MitreTechniques {
			if ct := get(id); ct != nil {
				ct.Fired++
				if d.LastSeen.After(ct.LastFired) {
					ct.LastFired = d.LastSeen
				}
			}
		}
	}
	for _, ct := range byID {
		if len(ct.Rules) > 0 {
			c.Covered++
		}
		if ct.Fired > 0 {
			c.Fired++
		}
		c.Techniques = append(c.Techniques, *ct)
	}
	sort.Slice(c.Techniques, func(i, j int) bool { return c.Techniques[i].ID < c.Techniques[j].ID })
	for id := range unknown {
		c.Unknown = append(c.Unknown, id)
	}
	sort.Strings(c.Unknown)
	return c
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// NavigatorLayer is an ATT&CK Navigator layer, format 4.5.
type NavigatorLayer struct {
	Name        string               `json:"name"`
	Versions    NavigatorVersions    `json:"versions"`
	Domain      string               `json:"domain"`
	Description string               `json:"description"`
	Sorting     int                  `json:"sorting"`
	HideDisable bool                 `json:"hideDisabled"`
	Techniques  []NavigatorTechnique `json:"techniques"`
	Gradient    NavigatorGradient    `json:"gradient"`
	Legend      []NavigatorLegend    `json:"legendItems"`
	Metadata    []NavigatorMeta      `json:"metadata"`
}

// NavigatorVersions are the layer's versions.
type NavigatorVersions struct {
	Attack    string `json:"attack"`
	Navigator string `json:"navigator"`
	Layer     string `json:"layer"`
}

// NavigatorTechnique is one technique of a layer.
type NavigatorTechnique struct {
	TechniqueID       string          `json:"techniqueID"`
	Tactic            string          `json:"tactic,omitempty"`
	Score             int             `json:"score"`
	Color             string          `json:"color,omitempty"`
	Comment           string          `json:"comment"`
	Enabled           bool            `json:"enabled"`
	ShowSubtechniques bool            `json:"showSubtechniques"`
	Metadata          []NavigatorMeta `json:"metadata,omitempty"`
}

// NavigatorGradient colours scores.
type NavigatorGradient struct {
	Colors   []string `json:"colors"`
	MinValue int      `json:"minValue"`
	MaxValue int      `json:"maxValue"`
}

// NavigatorLegend is one legend entry.
type NavigatorLegend struct {
	Label string `json:"label"`
	Color string `json:"color"`
}

// NavigatorMeta is a name/value pair.
type NavigatorMeta struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Colours of the layer: covered techniques are shaded by score (number of
// rules); techniques with detections are red.
const (
	colorFired   = "#e3524f"
	colorCovered = "#66b1ff"
)

// Layer renders c as a Navigator layer: score = rules covering the
// technique; techniques with detections are coloured red; the comment
// names the rules and the detection count. A technique named by
// detections only (its rule is gone) is listed with score 0.
func (c Coverage) Layer(name string) NavigatorLayer {
	l := NavigatorLayer{
		Name:     name,
		Versions: NavigatorVersions{Attack: strings.SplitN(c.AttackVersion, ".", 2)[0], Navigator: "5.1.0", Layer: "4.5"},
		Domain:   "enterprise-attack",
		Description: fmt.Sprintf("Vigil detection coverage: %d of %d techniques covered by rules, %d with detections.",
			c.Covered, c.TotalTechniques, c.Fired),
		Sorting:    3, // by score, descending
		Techniques: []NavigatorTechnique{},
		Legend: []NavigatorLegend{
			{Label: "covered by rules (shade: number of rules)", Color: colorCovered},
			{Label: "detections fired", Color: colorFired},
		},
		Metadata: []NavigatorMeta{{Name: "generated_by", Value: "vigil"}, {Name: "attack_version", Value: c.AttackVersion}},
	}
	maxScore := 1
	parents := map[string]bool{}
	for _, ct := range c.Techniques {
		nt := NavigatorTechnique{TechniqueID: ct.ID, Score: len(ct.Rules), Enabled: true}
		var parts []string
		if len(ct.Rules) > 0 {
			rules := ct.Rules
			more := ""
			if len(rules) > 20 {
				rules, more = rules[:20], fmt.Sprintf(" and %d more", len(ct.Rules)-20)
			}
			parts = append(parts, fmt.Sprintf("%d rule(s): %s%s", len(ct.Rules), strings.Join(rules, ", "), more))
		} else {
			parts = append(parts, "no loaded rule")
		}
		if ct.Fired > 0 {
			nt.Color = colorFired
			parts = append(parts, fmt.Sprintf("%d detection(s), last %s", ct.Fired, ct.LastFired.UTC().Format(time.RFC3339)))
		}
		nt.Comment = strings.Join(parts, "; ")
		maxScore = max(maxScore, nt.Score)
		if p, _, sub := strings.Cut(ct.ID, "."); sub {
			parents[p] = true
		}
		l.Techniques = append(l.Techniques, nt)
	}
	// Expand the parents of covered sub-techniques, so they show.
	for i := range l.Techniques {
		if parents[l.Techniques[i].TechniqueID] {
			l.Techniques[i].ShowSubtechniques = true
			delete(parents, l.Techniques[i].TechniqueID)
		}
	}
	for _, p := range sortedSet(parents) {
		l.Techniques = append(l.Techniques, NavigatorTechnique{TechniqueID: p, Score: 0, Comment: "parent of covered sub-techniques",
			Enabled: true, ShowSubtechniques: true})
	}
	l.Gradient = NavigatorGradient{Colors: []string{"#ffffff", colorCovered}, MinValue: 0, MaxValue: maxScore}
	return l
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// HandleCoverage serves GET /api/v1/attack/coverage: the loaded rules'
// ATT&CK coverage and the techniques of the detections the token may see;
// ?format=navigator returns an ATT&CK Navigator layer (4.5).
func (e *Engine) HandleCoverage(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !p.CanRead() {
		auth.WriteErr(w, domain.Errorf(domain.KindForbidden, "role %s may not read rules", p.Role))
		return
	}
	c := ComputeCoverage(e.rules.Load(), e.techniqueSightings(p))
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, http.StatusOK, c)
	case "navigator":
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "Vigil detection coverage"
		}
		if len(name) > 200 {
			auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "name: at most 200 bytes"))
			return
		}
		writeJSON(w, http.StatusOK, c.Layer(name))
	default:
		auth.WriteErr(w, domain.Errorf(domain.KindInvalid, "format: unknown value %q (valid: json, navigator)", f))
	}
}

// techniqueSightings returns, for every detection p may see, only what
// coverage reads (techniques and last seen): no clone of ids and history.
func (e *Engine) techniqueSightings(p *auth.Principal) []Detection {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Detection, 0, len(e.byID))
	for _, d := range e.byID {
		if len(d.MitreTechniques) > 0 && visible(p, d) {
			out = append(out, Detection{MitreTechniques: d.MitreTechniques, LastSeen: d.LastSeen})
		}
	}
	return out
}
