// Package demo generates realistic security traffic for trying Vigil out.
// Every event it makes says what it is: source "vigil-demo" and the tag
// "demo". It covers every category of SPEC 2 (detections come from the
// rule engine reacting to the traffic, not from the generator) and plays
// short attack scenarios — brute force ending in lockout, a rate-limit
// storm, a flapping circuit breaker — so rules and dashboards have
// something to find.
package demo

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Source is the source every demo event carries.
const Source = "vigil-demo"

// Generator produces demo events. It is not safe for concurrent use.
type Generator struct {
	rng      *rand.Rand
	script   []*event.Event // queued scenario steps
	circuits map[string]string
}

// New returns a generator; the same seed gives the same traffic.
func New(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), circuits: map[string]string{}}
}

var (
	users     = []string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com", "frank@example.com", "svc-backup@example.com"}
	goodIPs   = []string{"198.51.100.10", "198.51.100.23", "198.51.100.42", "2001:db8::17"}
	badIPs    = []string{"203.0.113.7", "203.0.113.66", "192.0.2.200"}
	services  = []string{"rustydb-1", "rustydb-2", "auth-gateway", "payments-api", "phase8-engine"}
	tables    = []string{"table:payments", "table:users", "table:audit_log", "table:sessions"}
	keys      = []string{"kms:key/orders-2026", "kms:key/users-pii", "kms:key/backup"}
	circuits  = []string{"payments-upstream", "fraud-scoring", "geo-ip"}
	memEvents = []string{"buffer_overflow_detected", "use_after_free_prevented", "stack_canary_violation", "double_free_detected", "guard_page_hit"}
)

func (g *Generator) pick(list []string) string { return list[g.rng.IntN(len(list))] }

func (g *Generator) base(typ string, sev event.Severity) *event.Event {
	return &event.Event{Type: typ, Severity: sev, Source: g.pick(services), Tags: []string{"demo"}}
}

func data(v map[string]any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func ptr(f float64) *float64 { return &f }

// Next returns the next demo event. Its source is always "vigil-demo"; the
// service the scenario pretends it came from is the tag "service:<name>",
// so demo traffic can never pass for a real service's events.
func (g *Generator) Next() *event.Event {
	e := g.next()
	if e.Source != "" && e.Source != Source {
		e.Tags = append(e.Tags, "service:"+e.Source)
	}
	e.Source = Source
	return e
}

func (g *Generator) next() *event.Event {
	if len(g.script) > 0 {
		e := g.script[0]
		g.script = g.script[1:]
		return e
	}
	switch r := g.rng.IntN(100); {
	case r < 2:
		g.bruteForce()
		return g.next()
	case r < 3:
		g.rateLimitStorm()
		return g.next()
	case r < 4:
		g.circuitFlap()
		return g.next()
	case r < 22:
		return g.login()
	case r < 30:
		return g.authorization()
	case r < 40:
		return g.audit()
	case r < 45:
		return g.encryption()
	case r < 53:
		return g.rateLimit(g.pick(goodIPs), false)
	case r < 58:
		return g.insider()
	case r < 61:
		return g.memory()
	case r < 65:
		return g.circuit(g.pick(circuits))
	case r < 71:
		return g.analysis()
	case r < 77:
		return g.threatIntel()
	case r < 84:
		return g.fraud()
	case r < 89:
		return g.response()
	case r < 94:
		return g.orchestration()
	default:
		return g.system()
	}
}

func (g *Generator) login() *event.Event {
	user := g.pick(users)
	if g.rng.IntN(5) == 0 {
		e := g.base("authentication.login_failed", event.SeverityLow)
		e.Source = "auth-gateway"
		e.User, e.SrcIP, e.Action, e.Outcome = user, g.pick(goodIPs), "login_failed", "failure"
		e.Message = "invalid password for " + user
		e.Data = data(map[string]any{"method": "password", "user_agent": "Mozilla/5.0"})
		return e
	}
	actions := []string{"login", "logout", "mfa_challenge", "mfa_verified", "session_created", "session_refreshed"}
	a := g.pick(actions)
	e := g.base("authentication."+a, event.SeverityInfo)
	e.Source = "auth-gateway"
	e.User, e.UserID, e.SrcIP, e.Action, e.Outcome = user, "u-"+fmt.Sprint(len(user)), g.pick(goodIPs), a, "success"
	e.Message = a + " " + user
	e.Data = data(map[string]any{"method": "password+totp", "session_id": fmt.Sprintf("s-%06d", g.rng.IntN(1e6))})
	return e
}

// bruteForce queues a burst of failures from one address against one user
// and, usually, the lockout that follows.
func (g *Generator) bruteForce() {
	user, ip := g.pick(users), g.pick(badIPs)
	n := 8 + g.rng.IntN(8)
	for i := 0; i < n; i++ {
		e := g.base("authentication.login_failed", event.SeverityMedium)
		e.Source = "auth-gateway"
		e.User, e.SrcIP, e.Action, e.Outcome = user, ip, "login_failed", "failure"
		e.Message = fmt.Sprintf("invalid password for %s (attempt %d)", user, i+1)
		e.MitreTactics, e.MitreTechniques = []string{"TA0006"}, []string{"T1110.001"}
		e.Data = data(map[string]any{"method": "password", "attempt": i + 1})
		g.script = append(g.script, e)
	}
	if g.rng.IntN(3) > 0 {
		e := g.base("authentication.account_locked", event.SeverityHigh)
		e.Source = "auth-gateway"
		e.User, e.SrcIP, e.Action, e.Outcome = user, ip, "account_locked", "success"
		e.Message = "account locked after repeated failures: " + user
		e.Data = data(map[string]any{"failed_attempts": n, "lock_minutes": 30})
		g.script = append(g.script, e)
	}
}

func (g *Generator) authorization() *event.Event {
	user := g.pick(users)
	if g.rng.IntN(6) == 0 {
		e := g.base("authorization.privilege_escalation", event.SeverityHigh)
		e.User, e.SrcIP, e.Action, e.Outcome, e.Resource = user, g.pick(goodIPs), "grant", "success", "role:admin"
		e.Message = user + " granted role admin to self"
		e.MitreTactics, e.MitreTechniques = []string{"TA0004"}, []string{"T1078"}
		e.Data = data(map[string]any{"granted_role": "admin", "granted_by": user, "previous_role": "analyst"})
		return e
	}
	granted := g.rng.IntN(4) > 0
	e := g.base("authorization.access_check", event.SeverityInfo)
	e.User, e.SrcIP, e.Resource = user, g.pick(goodIPs), g.pick(tables)
	e.Action, e.Outcome = "access_granted", "success"
	if !granted {
		e.Action, e.Outcome, e.Severity = "access_denied", "failure", event.SeverityLow
	}
	e.Message = fmt.Sprintf("%s %s on %s", user, e.Action, e.Resource)
	e.Data = data(map[string]any{"permission": "SELECT", "policy": "rbac-default"})
	return e
}

func (g *Generator) audit() *event.Event {
	user := g.pick(users)
	table := g.pick(tables)
	rows := g.rng.IntN(200)
	sev, auditSev := event.SeverityInfo, "info"
	if g.rng.IntN(40) == 0 {
		rows = 50_000 + g.rng.IntN(200_000) // a bulk export: exfiltration by volume
		sev, auditSev = event.SeverityHigh, "warning"
	}
	e := g.base("audit.query", sev)
	e.User, e.SrcIP, e.Resource, e.Action, e.Outcome = user, g.pick(goodIPs), table, "select", "success"
	e.Message = fmt.Sprintf("%s read %d rows from %s", user, rows, table)
	e.Data = data(map[string]any{
		"query":          fmt.Sprintf("SELECT * FROM %s WHERE customer_id = %d AND email = 'x%d@example.com'", table[6:], g.rng.IntN(9999), g.rng.IntN(99)),
		"rows_returned":  rows,
		"bytes_returned": rows * 512,
		"audit_severity": auditSev,
	})
	return e
}

func (g *Generator) encryption() *event.Event {
	key := g.pick(keys)
	actions := []string{"key_rotation_started", "key_rotation_completed", "encrypt", "decrypt"}
	a := g.pick(actions)
	sev, outcome := event.SeverityInfo, "success"
	if g.rng.IntN(8) == 0 {
		a, sev, outcome = "key_rotation_failed", event.SeverityHigh, "failure"
	}
	e := g.base("encryption."+a, sev)
	e.Source, e.Resource, e.Action, e.Outcome = "rustydb-1", key, a, outcome
	e.Message = a + " " + key
	d := map[string]any{"key_id": key, "algorithm": "AES-256-GCM", "key_version": 3 + g.rng.IntN(5)}
	if outcome == "failure" {
		d["error"] = "HSM unavailable: timeout after 5s"
	}
	e.Data = data(d)
	return e
}

func (g *Generator) rateLimit(ip string, blocked bool) *event.Event {
	e := g.base("rate_limit.request", event.SeverityInfo)
	e.SrcIP, e.Resource, e.Action, e.Outcome = ip, "endpoint:/api/login", "allowed", "success"
	rps := 5 + g.rng.IntN(40)
	if blocked {
		e.Type, e.Action, e.Outcome, e.Severity = "rate_limit.blocked", "blocked", "failure", event.SeverityMedium
		rps = 800 + g.rng.IntN(4000)
		e.MitreTactics, e.MitreTechniques = []string{"TA0040"}, []string{"T1498"}
	}
	e.Message = fmt.Sprintf("%s %d req/s from %s", e.Action, rps, ip)
	e.Data = data(map[string]any{"blocked": blocked, "requests_per_second": rps, "limit": 100, "window_seconds": 1})
	return e
}

func (g *Generator) rateLimitStorm() {
	ip := g.pick(badIPs)
	for i := 0; i < 20+g.rng.IntN(20); i++ {
		g.script = append(g.script, g.rateLimit(ip, true))
	}
}

func (g *Generator) insider() *event.Event {
	levels := []string{"low", "medium", "high", "critical"}
	lvl := levels[g.rng.IntN(len(levels))]
	sev, _ := event.ParseSeverity(lvl)
	user := g.pick(users)
	e := g.base("insider_threat.score_changed", sev)
	e.User, e.UserID, e.Action = user, "u-"+fmt.Sprint(len(user)), "risk_score_updated"
	score := map[string]float64{"low": 20, "medium": 50, "high": 75, "critical": 92}[lvl] + float64(g.rng.IntN(8))
	e.RiskScore, e.Confidence = ptr(score), ptr(0.6+g.rng.Float64()*0.4)
	e.Message = fmt.Sprintf("insider threat score of %s is %.0f", user, score)
	e.Data = data(map[string]any{"threat_level": lvl, "threat_type": g.pick([]string{"data_hoarding", "after_hours_access", "unusual_privilege_use"}), "indicators": []string{"off_hours_login", "bulk_download"}})
	return e
}

func (g *Generator) memory() *event.Event {
	kind := g.pick(memEvents)
	e := g.base("memory."+kind, event.SeverityCritical)
	e.Source, e.Action, e.Outcome = g.pick([]string{"rustydb-1", "rustydb-2"}), kind, "success"
	e.Message = kind + " in query executor; request aborted"
	e.MitreTactics, e.MitreTechniques = []string{"TA0002"}, []string{"T1203"}
	e.Data = data(map[string]any{"memory_event_type": kind, "address": fmt.Sprintf("0x%x", g.rng.Uint64()&0xffffffffffff), "component": "executor", "blocked": true})
	return e
}

func (g *Generator) circuit(id string) *event.Event {
	prev := g.circuits[id]
	if prev == "" {
		prev = "closed"
	}
	next := map[string]string{"closed": "open", "open": "half_open", "half_open": "closed"}[prev]
	g.circuits[id] = next
	sev := event.SeverityLow
	if next == "open" {
		sev = event.SeverityMedium
	}
	e := g.base("circuit_breaker.state_changed", sev)
	e.Source, e.Resource, e.Action = "payments-api", "circuit:"+id, "state_change"
	e.Message = fmt.Sprintf("circuit %s %s -> %s", id, prev, next)
	e.Data = data(map[string]any{"circuit_id": id, "state": next, "previous_state": prev, "failure_count": g.rng.IntN(50)})
	return e
}

func (g *Generator) circuitFlap() {
	id := g.pick(circuits)
	for i := 0; i < 9; i++ {
		g.script = append(g.script, g.circuit(id))
	}
}

func (g *Generator) analysis() *event.Event {
	e := g.base("security.analysis.complete", event.SeverityLow)
	e.Source, e.Action = "phase8-engine", "analysis_complete"
	score := g.rng.Float64() * 100
	e.RiskScore, e.Confidence = ptr(score), ptr(0.7+g.rng.Float64()*0.3)
	e.Message = fmt.Sprintf("behaviour analysis finished, risk %.0f", score)
	e.Data = data(map[string]any{"analysis_results": map[string]any{"anomalies_found": g.rng.IntN(5), "model": "isolation-forest-v3", "entities_scored": 100 + g.rng.IntN(900), "risk_score": score}})
	return e
}

func (g *Generator) threatIntel() *event.Event {
	ip := g.pick(badIPs)
	e := g.base("security.threat.detected", event.SeverityHigh)
	e.Source, e.SrcIP, e.Action = "phase8-engine", ip, "threat_detected"
	e.Confidence = ptr(0.75 + g.rng.Float64()*0.25)
	e.MitreTactics, e.MitreTechniques = []string{"TA0011"}, []string{"T1071.001"}
	e.Message = "known C2 address contacted: " + ip
	e.Data = data(map[string]any{"threat_intelligence": map[string]any{"indicator": ip, "indicator_type": "ipv4", "feed": "demo-feed", "threat_type": "command_and_control", "first_seen": "2026-10-01T00:00:00Z"}})
	return e
}

func (g *Generator) fraud() *event.Event {
	user := g.pick(users)
	amount := float64(50+g.rng.IntN(9000)) + 0.99
	sev := event.SeverityMedium
	if amount > 5000 {
		sev = event.SeverityHigh
	}
	e := g.base("security.fraud.alert", sev)
	e.Source, e.User, e.SrcIP, e.Action = "payments-api", user, g.pick(append(goodIPs, badIPs...)), "fraud_alert"
	e.Confidence, e.RiskScore = ptr(0.5+g.rng.Float64()*0.5), ptr(40+g.rng.Float64()*60)
	e.Message = fmt.Sprintf("suspicious payment of %.2f EUR by %s", amount, user)
	e.Data = data(map[string]any{"fraud_details": map[string]any{"transaction_id": fmt.Sprintf("tx-%08d", g.rng.IntN(1e8)), "amount": amount, "currency": "EUR", "fraud_type": g.pick([]string{"card_testing", "account_takeover", "velocity"}), "merchant": "demo-shop",
		"fraud_score": *e.Confidence}}) // issue 4: fraud_score as in the Phase 8 schema
	return e
}

func (g *Generator) response() *event.Event {
	e := g.base("security.response.executed", event.SeverityMedium)
	e.Source, e.Action, e.Outcome = "phase8-engine", "response_executed", "success"
	act := g.pick([]string{"block_ip", "disable_account", "revoke_sessions", "quarantine_host"})
	e.Message = "automated response executed: " + act
	e.Data = data(map[string]any{"response_details": map[string]any{"action": act, "target": g.pick(badIPs), "playbook": "pb-credential-attack", "duration_ms": 20 + g.rng.IntN(400),
		"status": "success"}}) // issue 4: status as in the Phase 8 schema
	return e
}

func (g *Generator) orchestration() *event.Event {
	e := g.base("security.orchestration.update", event.SeverityLow)
	e.Source, e.Action = "phase8-engine", "incident_update"
	st := g.pick([]string{"opened", "triaged", "contained", "closed"})
	e.Message = "incident workflow " + st
	e.Data = data(map[string]any{"orchestration_details": map[string]any{"incident_id": fmt.Sprintf("INC-%04d", g.rng.IntN(9999)), "workflow": "credential-attack", "status": st, "assignee": g.pick(users)}})
	return e
}

func (g *Generator) system() *event.Event {
	e := g.base("system.heartbeat", event.SeverityInfo)
	e.Action = "heartbeat"
	e.Message = e.Source + " alive"
	e.Data = data(map[string]any{"uptime_seconds": g.rng.IntN(1e6), "version": "demo"})
	return e
}

// Stamp sets the event time to now (the generator leaves it to the caller
// so tests can fix it).
func Stamp(e *event.Event, now time.Time) { e.Time = now }
