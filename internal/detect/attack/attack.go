// Package attack is MITRE ATT&CK Enterprise as Vigil needs it: tactic and
// technique ids, names, and which tactics each technique serves. The table
// (enterprise-attack.tsv) is generated from MITRE's published STIX data by
// scripts/attackgen; regenerate it for a new ATT&CK release (docs/detections.md,
// "ATT&CK coverage").
package attack

import (
	_ "embed"
	"fmt"
	"sort"
	"strings"
	"sync"
)

//go:embed enterprise-attack.tsv
var tsv string

// Tactic is one Enterprise tactic.
type Tactic struct {
	ID        string `json:"id"`         // TA0006
	ShortName string `json:"short_name"` // credential-access
	Name      string `json:"name"`       // Credential Access
}

// Technique is a technique or sub-technique.
type Technique struct {
	ID      string   `json:"id"`      // T1110.001
	Name    string   `json:"name"`    // Password Guessing
	Tactics []string `json:"tactics"` // short names, e.g. credential-access
}

// Table is one ATT&CK release's Enterprise matrix. It is immutable.
type Table struct {
	Version    string
	tactics    []Tactic
	byTactic   map[string]Tactic // id and short name
	techniques []Technique
	byID       map[string]int
}

// Enterprise returns the embedded table (parsed once).
var Enterprise = sync.OnceValue(func() *Table {
	t, err := Parse(tsv)
	if err != nil {
		panic("attack: embedded table: " + err.Error()) // generated file: a test guards it
	}
	return t
})

// Parse reads a table in the format scripts/attackgen writes.
func Parse(s string) (*Table, error) {
	t := &Table{byTactic: map[string]Tactic{}, byID: map[string]int{}}
	for n, line := range strings.Split(s, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		switch {
		case len(f) == 2 && f[0] == "version":
			t.Version = f[1]
		case len(f) == 3 && strings.HasPrefix(f[0], "TA"):
			ta := Tactic{ID: f[0], ShortName: f[1], Name: f[2]}
			t.tactics = append(t.tactics, ta)
			t.byTactic[ta.ID], t.byTactic[ta.ShortName] = ta, ta
		case len(f) == 3 && strings.HasPrefix(f[0], "T"):
			tech := Technique{ID: f[0], Name: f[1], Tactics: strings.Split(f[2], ",")}
			for _, sn := range tech.Tactics {
				if _, ok := t.byTactic[sn]; !ok {
					return nil, fmt.Errorf("line %d: technique %s names unknown tactic %q", n+1, tech.ID, sn)
				}
			}
			t.byID[tech.ID] = len(t.techniques)
			t.techniques = append(t.techniques, tech)
		default:
			return nil, fmt.Errorf("line %d: not a version, tactic or technique line", n+1)
		}
	}
	if t.Version == "" || len(t.tactics) == 0 || len(t.techniques) == 0 {
		return nil, fmt.Errorf("incomplete table: version %q, %d tactics, %d techniques", t.Version, len(t.tactics), len(t.techniques))
	}
	sort.SliceStable(t.techniques, func(i, j int) bool { return t.techniques[i].ID < t.techniques[j].ID })
	for i, tech := range t.techniques {
		t.byID[tech.ID] = i
	}
	return t, nil
}

// Technique looks a technique or sub-technique up by id (case-insensitive).
func (t *Table) Technique(id string) (Technique, bool) {
	i, ok := t.byID[strings.ToUpper(id)]
	if !ok {
		return Technique{}, false
	}
	return t.techniques[i], true
}

// Tactic looks a tactic up by id (TA0006) or short name (credential-access).
func (t *Table) Tactic(idOrShortName string) (Tactic, bool) {
	k := idOrShortName
	if strings.HasPrefix(strings.ToUpper(k), "TA") {
		k = strings.ToUpper(k)
	} else {
		k = strings.ReplaceAll(strings.ToLower(k), "_", "-")
	}
	ta, ok := t.byTactic[k]
	return ta, ok
}

// Tactics returns the tactics in matrix order.
func (t *Table) Tactics() []Tactic { return append([]Tactic(nil), t.tactics...) }

// Techniques returns every technique and sub-technique, by id.
func (t *Table) Techniques() []Technique { return append([]Technique(nil), t.techniques...) }

// MajorVersion is the version as ATT&CK Navigator layers name it ("18").
func (t *Table) MajorVersion() string {
	v, _, _ := strings.Cut(t.Version, ".")
	return v
}
