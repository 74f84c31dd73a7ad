package detect

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect/attack"
)

// TestCoverageNavigatorLayer: the built-in rules' techniques are covered,
// the brute-force detection marks T1110.001 as fired, and the layer has
// every field ATT&CK Navigator requires for a 4.5 layer: name, versions
// (attack, navigator, layer = 4.5), domain enterprise-attack, and
// techniques with a valid techniqueID, a numeric score and a comment.
func TestCoverageNavigatorLayer(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	run := startEngine(t, l, Options{})
	e := run.e
	seqs := failures(t, l, "alice", time.Now().UTC(), 5)
	waitCursor(t, e, seqs[4])
	waitFor(t, "the brute-force detection", func() bool { return len(detectionsOf(e, admin, "SEC-AUTH-002")) == 1 })

	code, body := get(t, e.HandleCoverage, admin, "/api/v1/attack/coverage", "")
	if code != http.StatusOK {
		t.Fatalf("coverage: %d %s", code, body)
	}
	var c Coverage
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	var bf *CoveredTechnique
	for i := range c.Techniques {
		if c.Techniques[i].ID == "T1110.001" {
			bf = &c.Techniques[i]
		}
	}
	if c.AttackVersion != attack.Enterprise().Version || c.Covered == 0 || c.Fired != 1 || bf == nil ||
		bf.Fired != 1 || bf.Name != "Password Guessing" || !containsString(bf.Rules, "SEC-AUTH-002") ||
		len(bf.Tactics) != 1 || bf.Tactics[0] != "TA0006" {
		t.Fatalf("coverage: %+v (T1110.001: %+v)", c, bf)
	}

	code, body = get(t, e.HandleCoverage, admin, "/api/v1/attack/coverage?format=navigator", "")
	if code != http.StatusOK {
		t.Fatalf("navigator: %d %s", code, body)
	}
	var layer map[string]any
	if err := json.Unmarshal(body, &layer); err != nil {
		t.Fatal(err)
	}
	if s, _ := layer["name"].(string); s == "" {
		t.Errorf("name: %v", layer["name"])
	}
	v, _ := layer["versions"].(map[string]any)
	if v == nil || v["layer"] != "4.5" || v["attack"] != "18" || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v["navigator"].(string)) {
		t.Errorf("versions: %v", layer["versions"])
	}
	if layer["domain"] != "enterprise-attack" {
		t.Errorf("domain: %v", layer["domain"])
	}
	techs, _ := layer["techniques"].([]any)
	if len(techs) == 0 {
		t.Fatal("no techniques")
	}
	idRe := regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)
	fired := false
	for _, x := range techs {
		tm := x.(map[string]any)
		id, _ := tm["techniqueID"].(string)
		if !idRe.MatchString(id) {
			t.Errorf("techniqueID %q", id)
		}
		if _, ok := attack.Enterprise().Technique(id); !ok {
			t.Errorf("techniqueID %s is not an ATT&CK %s technique", id, c.AttackVersion)
		}
		if _, ok := tm["score"].(float64); !ok {
			t.Errorf("%s: score %v", id, tm["score"])
		}
		if _, ok := tm["comment"].(string); !ok {
			t.Errorf("%s: comment %v", id, tm["comment"])
		}
		if c, ok := tm["color"].(string); ok && !regexp.MustCompile(`^#[0-9a-f]{6}$`).MatchString(c) {
			t.Errorf("%s: color %q", id, c)
		}
		if id == "T1110.001" {
			fired = tm["color"] == colorFired && strings.Contains(tm["comment"].(string), "1 detection(s)")
		}
	}
	if !fired {
		t.Error("T1110.001 not marked as fired")
	}
	if code, _ := get(t, e.HandleCoverage, admin, "/api/v1/attack/coverage?format=xml", ""); code != http.StatusBadRequest {
		t.Errorf("format=xml: %d", code)
	}
	if code, _ := get(t, e.HandleCoverage, publisher, "/api/v1/attack/coverage", ""); code != http.StatusForbidden {
		t.Errorf("publisher: %d", code)
	}
}

// TestCoverageUnknownTechnique: a rule tag naming a technique ATT&CK does
// not have is reported as unknown, not covered.
func TestCoverageUnknownTechnique(t *testing.T) {
	rs := buildRuleSet([]ruleSource{{path: "x.yml", origin: "file", data: []byte(
		"title: x\nid: X\ntags: [attack.t9999, attack.t1078]\nlogsource: {product: vigil}\ndetection:\n  sel: {action: x}\n  condition: sel\n")}},
		nil)
	c := ComputeCoverage(rs, nil)
	if c.Covered != 1 || len(c.Unknown) != 1 || c.Unknown[0] != "T9999" || c.Techniques[0].ID != "T1078" {
		t.Fatalf("coverage: %+v", c)
	}
}
