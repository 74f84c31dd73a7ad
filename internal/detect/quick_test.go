package detect

import "testing"

func TestQuickLoad(t *testing.T) {
	rs, err := LoadRules(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rs.Errors() {
		t.Error(e)
	}
	for _, in := range rs.Infos() {
		t.Logf("%s %s %s %s %v %v %s", in.ID+in.Name, in.Kind, in.State, in.Severity, in.MitreTactics, in.MitreTechniques, in.OWASPCategory)
	}
}
