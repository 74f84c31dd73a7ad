package attack

import "testing"

// TestEnterpriseTable: the embedded table parses and holds what v18 has.
func TestEnterpriseTable(t *testing.T) {
	tb := Enterprise()
	if tb.Version != "18.1" || tb.MajorVersion() != "18" {
		t.Fatalf("version %q", tb.Version)
	}
	if n := len(tb.Tactics()); n != 14 {
		t.Fatalf("%d tactics, want 14", n)
	}
	if n := len(tb.Techniques()); n < 650 {
		t.Fatalf("%d techniques", n)
	}
	tech, ok := tb.Technique("t1110.001")
	if !ok || tech.Name != "Password Guessing" || len(tech.Tactics) != 1 || tech.Tactics[0] != "credential-access" {
		t.Fatalf("T1110.001: %+v %v", tech, ok)
	}
	if _, ok := tb.Technique("T9999"); ok {
		t.Fatal("T9999 exists")
	}
	if ta, ok := tb.Tactic("credential_access"); !ok || ta.ID != "TA0006" {
		t.Fatalf("credential_access: %+v", ta)
	}
	if ta, ok := tb.Tactic("ta0040"); !ok || ta.ShortName != "impact" {
		t.Fatalf("TA0040: %+v", ta)
	}
	if _, err := Parse("version\t1\nTA0001\tx\tX\nT1000\tA\tnope\n"); err == nil {
		t.Fatal("a technique with an unknown tactic parsed")
	}
}
