package mapping

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/inputs"
)

// BenchmarkMap: the cost a mapping file adds to each input line.
func BenchmarkMap(b *testing.B) {
	ex, err := os.ReadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	set, err := Parse("example.yaml", ex)
	if err != nil {
		b.Fatal(err)
	}
	var many strings.Builder
	for i := 0; i < MaxMappings; i++ {
		fmt.Fprintf(&many, "- {name: m%d, regex: '^app%d: login failed for (?P<user>\\S+)', set: {type: authentication.login, user: '${user}'}}\n", i, i)
	}
	big, err := Parse("many.yaml", []byte(many.String()))
	if err != nil {
		b.Fatal(err)
	}
	var withApp strings.Builder
	for i := 0; i < MaxMappings; i++ {
		fmt.Fprintf(&withApp, "- {name: m%d, app_name: app%d, regex: 'login failed for (?P<user>\\S+)', set: {type: authentication.login, user: '${user}'}}\n", i, i)
	}
	indexed, err := Parse("with-app.yaml", []byte(withApp.String()))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		set  *Set
		m    inputs.Message
	}{
		{"example/match-first", set, inputs.Message{Input: "syslog", AppName: "shopd", Hostname: "web1", Facility: 4, Severity: 6, Text: "auth failure user=alice ip=203.0.113.7 reason=bad_password"}},
		{"example/no-match", set, inputs.Message{Input: "syslog", AppName: "sshd", Hostname: "web1", Facility: 4, Severity: 6, Text: "Failed password for root from 203.0.113.7 port 22 ssh2"}},
		{"1000-regexes-with-app_name/match-last", indexed, inputs.Message{Input: "syslog", AppName: "app999", Facility: 4, Severity: 6, Text: "login failed for alice"}},
		{"1000-regexes/no-match", big, inputs.Message{Input: "syslog", AppName: "sshd", Facility: 4, Severity: 6, Text: "Failed password for root from 203.0.113.7 port 22 ssh2"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := bc.m
				bc.set.Match(&m)
			}
		})
	}
}
