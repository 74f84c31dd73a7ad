package detect

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/event"
)

// benchRules writes n Sigma rules in SigmaHQ style, spread over categories
// and modifiers (equals lists, contains|all, startswith, re, cidr,
// numeric, keywords, base64offset, windash), every tenth one a correlation.
func benchRules(tb testing.TB, dir string, n int) {
	tb.Helper()
	templates := []string{
		`logsource: {product: vigil, category: authentication}
detection:
  selection:
    user|startswith: 'svc_%[1]d'
    action: [login, login_failed]
  filter_internal:
    src_ip|cidr: ['10.0.0.0/8', '192.168.0.0/16']
  condition: selection and not filter_internal`,
		`logsource: {product: vigil, category: audit}
detection:
  selection:
    data.query|contains|all: ['select', 'from table_%[1]d']
  condition: selection`,
		`logsource: {product: vigil, category: authorization}
detection:
  selection:
    resource|re: '^table:(payments|cards)_%[1]d$'
    outcome: failure
  condition: selection`,
		`logsource: {product: vigil, category: insider_threat}
detection:
  selection:
    risk_score|gte: %[1]d
    data.threat_type|endswith: ['_hoarding', '_access']
  condition: selection`,
		`logsource: {product: vigil}
detection:
  keywords:
    - 'mimikatz%[1]d'
    - 'sekurlsa::logonpasswords'
  condition: keywords`,
		`logsource: {product: vigil, category: system}
detection:
  selection:
    data.CommandLine|windash|contains: ' -enc%[1]d '
  encoded:
    data.CommandLine|base64offset|contains: 'IEX%[1]d'
  condition: 1 of selection or encoded`,
		`logsource: {product: vigil, category: rate_limit}
detection:
  selection:
    data.requests_per_second|gt: %[1]d00
    resource|contains: '/api/'
  condition: selection`,
		`logsource: {product: vigil, category: encryption}
detection:
  selection:
    action: ['key_rotation_failed', 'decrypt_failed_%[1]d']
  condition: selection`,
		`logsource: {product: vigil, category: authentication}
detection:
  sel_a:
    message|contains: 'attempt %[1]d'
  sel_b:
    TargetUserName|endswith: '@example.com'
  condition: all of sel_*`,
	}
	for i := 0; i < n; i++ {
		var body string
		if i%10 == 9 {
			body = fmt.Sprintf(`title: Bench correlation %[1]d
id: BENCH-%[1]d
correlation:
  type: event_count
  rules: [BENCH-%[2]d]
  group-by: [user]
  timespan: 5m
  condition: {gte: 20}
level: medium
tags: [attack.credential-access]
`, i, i-1)
		} else {
			body = fmt.Sprintf("title: Bench rule %[1]d\nid: BENCH-%[1]d\nstatus: test\nlevel: medium\ntags: [attack.t1110]\n", i) +
				fmt.Sprintf(templates[i%len(templates)], i) + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("bench_%03d.yml", i)), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkEvaluate measures rule evaluation: the built-in rules plus 100
// Sigma rules over realistic demo traffic (every category, brute-force
// bursts, storms). Each iteration evaluates one fresh event (its data is
// decoded once, as in production).
func BenchmarkEvaluate(b *testing.B) {
	dir := b.TempDir()
	benchRules(b, dir, 100)
	rs, err := LoadRules(LoadOptions{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	if len(rs.Errors()) > 0 {
		b.Fatal(rs.Errors()[0])
	}
	g := demo.New(42)
	evs := make([]*event.Event, 8192)
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range evs {
		e := g.Next()
		if _, err := event.Normalize(e, "default", start, event.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
		e.Time = start.Add(time.Duration(i) * 10 * time.Millisecond)
		evs[i] = e
	}
	ev := NewEvaluator(rs, 0, 0)
	fired := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := evs[i%len(evs)].Clone()
		// Keep time moving so windows behave as in a live stream.
		e.Time = start.Add(time.Duration(i) * 10 * time.Millisecond)
		fired += len(ev.Evaluate(e))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(rs.Len()), "rules")
	if strings.Contains(os.Getenv("VIGIL_BENCH_VERBOSE"), "1") {
		b.Logf("%d firings, %d windows", fired, ev.Windows())
	}
}
