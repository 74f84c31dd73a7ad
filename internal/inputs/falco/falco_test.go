package falco

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestMapDocumentedAlert maps Falco's documented alert shape (json_output,
// as http_output posts it; testdata/alert.json follows the example of
// falco.org's output docs with the uuid, source, tags and hostname fields
// of current releases) and checks every mapped field.
func TestMapDocumentedAlert(t *testing.T) {
	body, err := os.ReadFile("testdata/alert.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Map(a)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 30, 10, 20, 5, 408091526, time.UTC)
	if !ev.Time.Equal(want) {
		t.Errorf("time %v, want %v", ev.Time, want)
	}
	checks := map[string][2]string{
		"id":       {ev.ID, "2f5d5a58-3c6d-4a8e-9b8e-7d3a1c0e4f11"},
		"type":     {ev.Type, "threat.falco.read_sensitive_file_untrusted"},
		"category": {string(ev.Category), "threat_intel"},
		"severity": {ev.Severity.String(), "medium"},
		"source":   {ev.Source, "node-1/falco"},
		"user":     {ev.User, "root"},
		"user_id":  {ev.UserID, "0"},
		"resource": {ev.Resource, "/etc/shadow"},
		"src_ip":   {ev.SrcIP, ""},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if !strings.HasPrefix(ev.Message, "10:20:05.408091526: Warning Sensitive file opened") {
		t.Errorf("message %q", ev.Message)
	}
	if !slices.Equal(ev.MitreTactics, []string{"TA0006"}) || !slices.Equal(ev.MitreTechniques, []string{"T1555"}) {
		t.Errorf("mitre tactics %v techniques %v", ev.MitreTactics, ev.MitreTechniques)
	}
	if len(ev.Tags) != 6 || ev.Tags[4] != "mitre_credential_access" {
		t.Errorf("tags %v", ev.Tags)
	}
	// The event passes ingest's validation as it is.
	if _, err := event.Normalize(ev, "acme", time.Now(), event.DefaultLimits()); err != nil {
		t.Fatalf("normalize: %v", err)
	}
	var data map[string]any
	dec := json.NewDecoder(strings.NewReader(string(ev.Data)))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"proc_name": "cat", "proc_cmdline": "cat /etc/shadow", "rule": "Read sensitive file untrusted", "priority": "Warning", "source": "syscall", "evt_time": "1764498005408091526"} {
		if got := fmt.Sprint(data[k]); got != v {
			t.Errorf("data.%s = %s, want %s (nanoseconds must not be rounded)", k, got, v)
		}
	}
}

func TestSeverityTable(t *testing.T) {
	for prio, want := range map[string]event.Severity{
		"Emergency": event.SeverityCritical, "ALERT": event.SeverityCritical, "Critical": event.SeverityCritical,
		"Error": event.SeverityHigh, "Warning": event.SeverityMedium, "Notice": event.SeverityLow,
		"Informational": event.SeverityInfo, "Debug": event.SeverityInfo,
	} {
		if got, err := Severity(prio); err != nil || got != want {
			t.Errorf("Severity(%q) = %v, %v; want %v", prio, got, err, want)
		}
	}
	if _, err := Severity("Loud"); err == nil || !strings.Contains(err.Error(), `"Loud"`) {
		t.Errorf("unknown priority: %v", err)
	}
}

func TestTagsAndAddresses(t *testing.T) {
	a := &Alert{Rule: "Outbound Connection to C2 Servers!!", Priority: "Critical",
		Tags:         []string{"network", "mitre_command_and_control", "mitre_exfiltration", "t1041", "T1059.004", "mitre_remote_service", "T1041", ""},
		OutputFields: map[string]any{"fd.rip": "203.0.113.9", "fd.sip": "10.0.0.1", "user.name": "<NA>"}}
	ev, err := Map(a)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "threat.falco.outbound_connection_to_c2_servers" {
		t.Errorf("type %q", ev.Type)
	}
	if !slices.Equal(ev.MitreTactics, []string{"TA0011", "TA0010"}) {
		t.Errorf("tactics %v", ev.MitreTactics)
	}
	if !slices.Equal(ev.MitreTechniques, []string{"T1041", "T1059.004"}) {
		t.Errorf("techniques %v", ev.MitreTechniques)
	}
	if ev.SrcIP != "203.0.113.9" || ev.User != "" || ev.Source != "falco" || ev.Severity != event.SeverityCritical {
		t.Errorf("src_ip %q user %q source %q severity %v", ev.SrcIP, ev.User, ev.Source, ev.Severity)
	}
	if len(ev.Tags) != 7 {
		t.Errorf("tags %v: the empty one only is left out", ev.Tags)
	}
	// A rule name with nothing to keep, and one over the type limit.
	if got := slug("!!!", 10); got != "unnamed" {
		t.Errorf("slug = %q", got)
	}
	if ev, _ := Map(&Alert{Rule: strings.Repeat("ab ", 100), Priority: "Debug"}); len(ev.Type) > 128 || strings.HasSuffix(ev.Type, "_") {
		t.Errorf("long rule: type %q", ev.Type)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, body := range map[string]string{
		"duplicate key":   `{"rule":"a","priority":"Debug","rule":"b"}`,
		"invalid utf-8":   "{\"rule\":\"a\xff\",\"priority\":\"Debug\"}",
		"no rule":         `{"priority":"Debug"}`,
		"no priority":     `{"rule":"a"}`,
		"bad time":        `{"rule":"a","priority":"Debug","time":"yesterday"}`,
		"tags not list":   `{"rule":"a","priority":"Debug","tags":"x"}`,
		"fields not obj":  `{"rule":"a","priority":"Debug","output_fields":[1]}`,
		"not an object":   `[1,2]`,
		"null":            `null`,
		"rule not string": `{"rule":1,"priority":"Debug"}`,
	} {
		if _, err := Decode([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Case matters: "Rule" is not "rule".
	if _, err := Decode([]byte(`{"Rule":"a","priority":"Debug"}`)); err == nil {
		t.Error(`"Rule" filled rule`)
	}
}
