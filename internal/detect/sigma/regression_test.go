package sigma

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorpusRegressionData replays SigmaHQ's regression_data (Windows
// events exported from .evtx as JSON, one folder per rule) the way a
// producer that forwards Windows/Sysmon records unchanged would send them:
// the EventData (or UserData) fields and the System fields (attributes as
// Tag_Attribute: Provider_Name, the Sigma taxonomy's convention) flat under
// data. Every rule must match one of its events with the default field
// map (issue 13 item 2). Skips without VIGIL_SIGMA_CORPUS or when the
// corpus has no regression_data.
func TestCorpusRegressionData(t *testing.T) {
	dir := corpusDir(t)
	reg := filepath.Join(dir, "regression_data")
	if _, err := os.Stat(reg); err != nil {
		t.Skipf("no regression_data under %s", dir)
	}
	byID := map[string]*Rule{}
	for _, sub := range []string{"rules", "rules-emerging-threats", "rules-threat-hunting"} {
		filepath.WalkDir(filepath.Join(dir, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yml") {
				return err
			}
			b, _ := os.ReadFile(path)
			rules, _ := ParseFile(path, b)
			for _, r := range rules {
				byID[r.ID] = r
			}
			return nil
		})
	}
	var tested, matched int
	var missed []string
	err := filepath.WalkDir(reg, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		id := strings.TrimSuffix(filepath.Base(path), ".json")
		r, ok := byID[id]
		if !ok || r.Detection == nil {
			return nil
		}
		m, err := Compile(r, nil)
		if err != nil {
			return nil // refused rules are counted by TestCorpusLoads
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tested++
		dec := json.NewDecoder(bytes.NewReader(b))
		for {
			var doc struct{ Event map[string]any }
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			js, _ := json.Marshal(map[string]any{"type": "audit.windows", "data": flattenWinEvent(doc.Event)})
			if m.Match(mustEvent(t, string(js))) {
				matched++
				return nil
			}
		}
		missed = append(missed, r.Title+" ("+filepath.Base(filepath.Dir(path))+")")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range missed {
		t.Logf("no match: %s", m)
	}
	t.Logf("regression_data: %d rules with samples, %d match with the default field map", tested, matched)
	if tested == 0 || matched < tested*9/10 {
		t.Errorf("only %d of %d regression samples match", matched, tested)
	}
}

// flattenWinEvent turns an evtx-as-JSON event into the flat field set a
// forwarder sends: System fields (attributes as Tag_Attr), then EventData
// or UserData fields.
func flattenWinEvent(ev map[string]any) map[string]any {
	out := map[string]any{}
	if sys, ok := ev["System"].(map[string]any); ok {
		for k, v := range sys {
			if m, ok := v.(map[string]any); ok {
				if attrs, ok := m["#attributes"].(map[string]any); ok {
					for a, av := range attrs {
						out[k+"_"+a] = av
					}
				}
				continue
			}
			out[k] = v
		}
	}
	for _, part := range []string{"EventData", "UserData"} {
		m, ok := ev[part].(map[string]any)
		if !ok {
			continue
		}
		for k, v := range m {
			if inner, ok := v.(map[string]any); ok && part == "UserData" {
				for ik, iv := range inner {
					if ik != "#attributes" {
						out[ik] = iv
					}
				}
				continue
			}
			out[k] = v
		}
	}
	return out
}
