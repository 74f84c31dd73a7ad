package auth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.77":           "203.0.113.0",
		"10.1.2.3":               "10.1.2.0",
		"2001:db8:abcd:1234::1":  "2001:db8:abcd::",
		"::ffff:198.51.100.9":    "198.51.100.0",
		"fe80::1%eth0":           "fe80::",
		"not-an-ip":              "not-an-ip",
		"2001:db8:abcd:ffff:1:2": "2001:db8:abcd:ffff:1:2", // not a valid address: unchanged
	} {
		if got := TruncateIP(in); got != want {
			t.Errorf("TruncateIP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskSQL(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT * FROM users WHERE email = 'alice@example.com' AND id = 42": "SELECT * FROM users WHERE email = ? AND id = ?",
		"UPDATE t SET a='it''s', b=E'x\\'y' WHERE c IN (1, 2.5, 0x1F)":      "UPDATE t SET a=?, b=? WHERE c IN (?, ?, ?)",
		`INSERT INTO "Users" VALUES ("bob", -3) -- secret 99`:               "INSERT INTO ? VALUES (?, -?) ",
		"SELECT col1, t2.x FROM t2 /* pin 1234 */ WHERE y > 10":             "SELECT col1, t2.x FROM t2   WHERE y > ?",
		"SELECT 'unterminated": "SELECT ?",
	} {
		if got := MaskSQL(in); got != want {
			t.Errorf("MaskSQL(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

func TestPolicyMasksViewerOnly(t *testing.T) {
	pol := NewPolicy(nil)
	e := &event.Event{ID: "e1", Seq: 7, Type: "audit.query", Category: event.CategoryAudit, Tenant: "acme",
		User: "alice@example.com", SrcIP: "203.0.113.77", Message: "login from 198.51.100.23 by bob@corp.example",
		Hash: "abc", PrevHash: "def", Chain: "node-1",
		Data: json.RawMessage(`{"query":"SELECT * FROM accounts WHERE owner='alice@example.com' AND pin=9876","client":{"ip":"2001:db8:1:2::9","mail":"carol@x.org"},"n":12345678901234567890}`)}
	viewer := &Principal{ID: "v", Role: RoleViewer, Tenant: "acme"}
	analyst := &Principal{ID: "a", Role: RoleAnalyst, Tenant: "acme"}

	got, ok := pol.Visible(analyst, e)
	if !ok || got != e {
		t.Fatalf("analyst must see the event itself, unmasked")
	}
	got, ok = pol.Visible(viewer, e)
	if !ok {
		t.Fatal("viewer of the same tenant must see the event")
	}
	if got == e {
		t.Fatal("viewer got the shared, unmasked event")
	}
	b := string(got.JSON())
	for _, leak := range []string{"alice@", "bob@", "carol@", "203.0.113.77", "198.51.100.23", "2001:db8:1:2::9", "9876", `"hash"`, `"prev_hash"`} {
		if strings.Contains(b, leak) {
			t.Errorf("masked event leaks %q: %s", leak, b)
		}
	}
	for _, want := range []string{`"src_ip":"203.0.113.0"`, `"user":"***@example.com"`, "198.51.100.0", "***@corp.example", "2001:db8:1::",
		"owner=? AND pin=?", "12345678901234567890"} {
		if !strings.Contains(b, want) {
			t.Errorf("masked event lacks %q: %s", want, b)
		}
	}
	if e.SrcIP != "203.0.113.77" || e.Hash != "abc" || !strings.Contains(string(e.Data), "alice@") {
		t.Fatal("masking modified the shared event")
	}
	if _, ok := pol.Visible(&Principal{Role: RoleViewer, Tenant: "other"}, e); ok {
		t.Fatal("viewer of another tenant sees the event")
	}
	if _, ok := pol.Visible(&Principal{Role: RolePublisher, Tenant: "acme"}, e); ok {
		t.Fatal("publisher may not read")
	}
	if _, ok := pol.Visible(&Principal{Role: RoleAnalyst, Tenant: "acme", Categories: []event.Category{event.CategoryFraud}}, e); ok {
		t.Fatal("category-limited analyst sees another category")
	}
}

func TestPolicyConfigurableRules(t *testing.T) {
	pol := NewPolicy(MaskConfig{RoleAnalyst: {DropFields: []string{"user_id", "data.card.number"}}})
	e := &event.Event{ID: "e", Type: "fraud.alert", Category: event.CategoryFraud, Tenant: "t", UserID: "u-1",
		SrcIP: "203.0.113.7", Data: json.RawMessage(`{"card":{"number":"4111","brand":"visa"}}`)}
	got, _ := pol.Visible(&Principal{Role: RoleAnalyst, Tenant: "t"}, e)
	b := string(got.JSON())
	if strings.Contains(b, "u-1") || strings.Contains(b, "4111") || !strings.Contains(b, "visa") || !strings.Contains(b, "203.0.113.7") {
		t.Fatalf("drop rules not applied as configured: %s", b)
	}
	if v, _ := pol.Visible(&Principal{Role: RoleViewer, Tenant: "t"}, e); v == e || v.SrcIP != "203.0.113.0" {
		t.Fatal("configuring analysts must leave the viewer default in place")
	}
	open := NewPolicy(MaskConfig{RoleViewer: {}})
	if v, _ := open.Visible(&Principal{Role: RoleViewer, Tenant: "t"}, e); v != e {
		t.Fatal("an explicit empty viewer entry must unmask viewers")
	}
}
