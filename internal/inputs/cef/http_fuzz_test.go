package cef

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/internal/event"
)

// FuzzCEFHTTPBody fuzzes what POST /api/v1/inputs/cef does with a body
// before it reaches ingest: split into non-blank lines, map each. It never
// panics; line numbers are 1-based, increasing and within the body; a line
// that maps gives an event ingest accepts, and a line that does not names
// why (the handler answers 400 with it).
func FuzzCEFHTTPBody(f *testing.F) {
	for _, s := range []string{
		"CEF:0|Security|threatmanager|1.0|100|worm stopped|10|src=10.0.0.1 suser=bob\n",
		"<13>Jan  1 00:00:00 fw1 CEF:0|V|P|1|sig|N|5|dvchost=fw1 act=blocked\r\n\r\nCEF:0|a|b|c|d|e|f|\n",
		"\n\n   \nnot cef at all\n",
		"CEF:0|x|y|1|2|n|3|msg=a\\=b cs1Label=L cs1=v\nCEF:0|x|y|1|2|n|Very-High|\xff\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		lines := splitLines(body)
		total := strings.Count(string(body), "\n") + 1
		prev := 0
		for _, l := range lines {
			if l.n <= prev || l.n > total {
				t.Fatalf("line number %d after %d (body has %d lines)", l.n, prev, total)
			}
			prev = l.n
			if strings.TrimSpace(l.text) == "" || strings.ContainsAny(l.text, "\n") {
				t.Fatalf("line %d is blank or holds a newline: %q", l.n, l.text)
			}
			ev, err := mapLine(l.text)
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("line %d refused without a reason", l.n)
				}
				continue
			}
			if !utf8.ValidString(l.text) || !strings.Contains(l.text, "CEF:") {
				t.Fatalf("line %d mapped although it is not UTF-8 CEF: %q", l.n, l.text)
			}
			lim := event.DefaultLimits()
			lim.MaxStringLen, lim.MaxEventBytes = 1<<20, 1<<24
			if _, err := event.Normalize(ev, "default", ev.Time, lim); err != nil {
				t.Fatalf("line %d %q: ingest would refuse the mapped event: %v", l.n, l.text, err)
			}
		}
	})
}
