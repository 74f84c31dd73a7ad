package cef

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		hdr      [7]string
		ext      map[string]string
	}{
		{"spec example",
			`CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232`,
			[7]string{"0", "Security", "threatmanager", "1.0", "100", "worm successfully stopped", "10"},
			map[string]string{"src": "10.0.0.1", "dst": "2.1.2.2", "spt": "1232"}},
		{"escaped pipe and backslash in the header",
			`CEF:0|security|threat\|manager|1.0|100|detected a \\ in packet|10|`,
			[7]string{"0", "security", "threat|manager", "1.0", "100", `detected a \ in packet`, "10"},
			map[string]string{}},
		{"escaped equals, backslash, newlines in values; pipe unescaped in extension",
			`CEF:0|V|P|1|sig|N|5|msg=a\=b c\\d\nline2\r cs1=x|y`,
			[7]string{"0", "V", "P", "1", "sig", "N", "5"},
			map[string]string{"msg": "a=b c\\d\nline2\r", "cs1": "x|y"}},
		{"values with spaces, key starts after the last space",
			`CEF:1|V|P|1|sig|N|Low|suser=John Smith act=blocked by policy request=http://x/?a=b&c=d outcome=failure`,
			[7]string{"1", "V", "P", "1", "sig", "N", "Low"},
			map[string]string{"suser": "John Smith", "act": "blocked by policy", "request": "http://x/?a=b&c=d", "outcome": "failure"}},
		{"no extension", `CEF:0|V|P|1|sig|N|3|`, [7]string{"0", "V", "P", "1", "sig", "N", "3"}, map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got := [7]string{r.Version, r.Vendor, r.Product, r.DeviceVersion, r.SignatureID, r.Name, r.Severity}
			if got != tc.hdr {
				t.Fatalf("header %q, want %q", got, tc.hdr)
			}
			if !reflect.DeepEqual(r.Ext, tc.ext) {
				t.Fatalf("extension %q, want %q", r.Ext, tc.ext)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"CEF:0|a|b|c", "CEF:7|a|b|c|d|e|f|", "LEEF:1.0|a|b|c|d|", `CEF:0|a|b|c|d|e\|f|`} {
		if _, err := Parse(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestSeverity(t *testing.T) {
	for in, want := range map[string]event.Severity{"0": event.SeverityLow, "3": event.SeverityLow, "4": event.SeverityMedium, "6": event.SeverityMedium,
		"7": event.SeverityHigh, "8": event.SeverityHigh, "9": event.SeverityCritical, "10": event.SeverityCritical,
		"Low": event.SeverityLow, "Medium": event.SeverityMedium, "High": event.SeverityHigh, "Very-High": event.SeverityCritical, "Unknown": event.SeverityInfo, "": event.SeverityInfo} {
		if got := Severity(in); got != want {
			t.Errorf("Severity(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestMapper(t *testing.T) {
	text := `CEF:0|Acme|Gateway X|2.1|4625|Failed logon|7|suser=alice src=203.0.113.7 dst=10.0.0.5 outcome=Failure cs1Label=Policy Name cs1=strict login cs2=unlabelled cn1Label=Attempts cn1=4 rt=1764496800000`
	m := &inputs.Message{Input: "syslog", Hostname: "gw1", AppName: "CEF", Text: text, Facility: 4, Severity: 6}
	ev := inputs.Chain{Mapper{}}.Map(m)
	if ev.Type != "authentication.cef.gateway_x.4625" || ev.Category != event.CategoryAuthentication || ev.Severity != event.SeverityHigh {
		t.Fatalf("type %s category %s severity %v", ev.Type, ev.Category, ev.Severity)
	}
	if ev.User != "alice" || ev.SrcIP != "203.0.113.7" || ev.Outcome != "failure" || ev.Action != "login" || ev.Message != "Failed logon" {
		t.Fatalf("fields: %+v", ev)
	}
	if ev.Time.UnixMilli() != 1764496800000 {
		t.Fatalf("time %v", ev.Time)
	}
	var d map[string]any
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Policy Name": "strict login", "cs2": "unlabelled", "Attempts": "4", "dst": "10.0.0.5", "cef_vendor": "Acme", "cef_signature_id": "4625"} {
		if d[k] != v {
			t.Errorf("data[%q] = %v, want %q (data %v)", k, d[k], v, d)
		}
	}
	if _, ok := d["cs1Label"]; ok {
		t.Error("label keys should be consumed")
	}
	if _, err := event.Normalize(ev, "default", ev.Time, event.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	// A host name before CEF: (some devices) is tolerated; text that merely
	// contains CEF: inside a word is not CEF.
	if _, ok := (Mapper{}).Map(&inputs.Message{Text: "fw1 " + text}); !ok {
		t.Error("leading host name: not claimed")
	}
	if _, ok := (Mapper{}).Map(&inputs.Message{Text: "xCEF:0|a|b|c|d|e|1|"}); ok {
		t.Error("CEF: inside a word claimed")
	}
}

func TestCategory(t *testing.T) {
	for name, want := range map[string]event.Category{"Failed logon": event.CategoryAuthentication, "Privilege escalation": event.CategoryAuthorization,
		"Trojan detected": event.CategoryThreatIntel, "SYN flood": event.CategoryRateLimit, "Certificate expired": event.CategoryEncryption, "Config changed": event.CategoryAudit} {
		if got := Category(&Record{Name: name}); got != want {
			t.Errorf("%q: %s, want %s", name, got, want)
		}
	}
}

// TestCEFSrcNotAnAddress: a device that sends a host name in src (seen in
// the wild) keeps it under data.src instead of making an invalid event that
// ingest refuses and syslog would drop; an address is normalised.
func TestCEFSrcNotAnAddress(t *testing.T) {
	for src, want := range map[string][2]string{"fw01.corp": {"", "fw01.corp"}, "0": {"", "0"}, " 203.0.113.7 ": {"203.0.113.7", ""}, "2001:DB8::1": {"2001:db8::1", ""}} {
		r, err := Parse("CEF:0|V|P|1|sig|N|5|src=" + src)
		if err != nil {
			t.Fatal(err)
		}
		ev := ToEvent(r, "")
		var data map[string]any
		_ = json.Unmarshal(ev.Data, &data)
		got, _ := data["src"].(string)
		if ev.SrcIP != want[0] || strings.TrimSpace(got) != want[1] {
			t.Errorf("src=%q: src_ip %q data.src %q, want %q %q", src, ev.SrcIP, got, want[0], want[1])
		}
	}
}

// FuzzCEF: Parse never panics, and whatever it accepts maps to an event
// that passes ingest validation (type, category, UTF-8 strings).
func FuzzCEF(f *testing.F) {
	for _, s := range []string{
		`CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232`,
		`CEF:0|security|threat\|manager|1.0|100|detected a \\ in packet|10|msg=a\=b\nc cs1Label=x cs1=y`,
		`CEF:1|V|P|1|sig|N|Very-High|suser=John Smith act=blocked request=http://x/?a=b`,
		`CEF:0|||||||`, `CEF:0|a|b|c|d|e|f|=x ==y k=`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) {
			return // the syslog input makes text valid UTF-8 before mapping
		}
		ev := ToEvent(r, s)
		if len(ev.Type) > 128 || strings.Contains(ev.Type, "..") {
			t.Fatalf("type %q", ev.Type)
		}
		lim := event.DefaultLimits()
		lim.MaxStringLen, lim.MaxEventBytes = 1<<20, 1<<24
		if _, err := event.Normalize(ev, "default", ev.Time, lim); err != nil {
			t.Fatalf("%q: invalid event: %v", s, err)
		}
	})
}
