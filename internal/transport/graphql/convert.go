package graphql

import (
	"encoding/json"
	"math"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter/dbsecfilter"
	"github.com/vigil-sec/vigil/internal/stats"
	"github.com/vigil-sec/vigil/internal/transport/graphql/generated"
)

func sp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func toEvent(e *event.Event) *generated.Event {
	return &generated.Event{
		ID: e.ID, Seq: int(e.Seq), Time: e.Time, ReceivedAt: e.ReceivedAt, Type: e.Type,
		Category: string(e.Category), Severity: e.Severity.String(), Source: sp(e.Source),
		Tenant: e.Tenant, Message: sp(e.Message), User: sp(e.User), UserID: sp(e.UserID),
		SrcIP: sp(e.SrcIP), Resource: sp(e.Resource), Action: sp(e.Action), Outcome: sp(e.Outcome),
		Confidence: e.Confidence, RiskScore: e.RiskScore, MitreTactics: nonNil(e.MitreTactics),
		MitreTechniques: nonNil(e.MitreTechniques), Tags: nonNil(e.Tags), Data: e.DataMap(),
		Hash: sp(e.Hash),
	}
}

// dataString returns data.<key> as a string ("" when absent or not a string).
func dataString(e *event.Event, key string) string {
	v, _ := e.Field("data." + key)
	s, _ := v.(string)
	return s
}

func dataInt(e *event.Event, key string) *int {
	v, ok := e.Field("data." + key)
	if !ok {
		return nil
	}
	switch n := v.(type) {
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			i := int(n)
			return &i
		}
	case json.Number:
		if i, err := n.Int64(); err == nil {
			x := int(i)
			return &x
		}
	}
	return nil
}

func firstInt(a, b *int) *int {
	if a != nil {
		return a
	}
	return b
}

func dataBool(e *event.Event, key string) *bool {
	v, ok := e.Field("data." + key)
	if !ok {
		return nil
	}
	b, ok := v.(bool)
	if !ok {
		return nil
	}
	return &b
}

func success(e *event.Event) *bool {
	switch e.Outcome {
	case "success":
		t := true
		return &t
	case "failure":
		f := false
		return &f
	}
	return dataBool(e, "success")
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// enumName turns a producer's value ("login_failed", "half-open") into an
// enum name ("LOGIN_FAILED", "HALF_OPEN").
func enumName(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", " ", "_", ".", "_").Replace(s))
}

// enum converts s when it names a valid value of T.
func enum[T interface {
	~string
	IsValid() bool
}](s string) *T {
	v := T(enumName(s))
	if s == "" || !v.IsValid() {
		return nil
	}
	return &v
}

func authAction(e *event.Event) *generated.AuthAction {
	if strings.EqualFold(e.Action, "login") && e.Outcome == "failure" {
		a := generated.AuthActionLoginFailed
		return &a
	}
	return enum[generated.AuthAction](e.Action)
}

func toAuthentication(e *event.Event) (*generated.AuthenticationEvent, bool) {
	return &generated.AuthenticationEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, Action: authAction(e), ActionName: e.Action,
		Username: sp(e.User), UserID: sp(e.UserID), Success: success(e), SourceIP: sp(e.SrcIP),
		SessionID: sp(dataString(e, "session_id")), MfaMethod: sp(dataString(e, "mfa_method")),
		FailureReason: sp(firstNonEmpty(dataString(e, "failure_reason"), dataString(e, "reason"))),
		Severity:      e.Severity.String(), Message: sp(e.Message), Event: toEvent(e),
	}, true
}

func toAuthorization(e *event.Event) (*generated.AuthorizationEvent, bool) {
	granted := dataBool(e, "granted")
	if granted == nil {
		granted = success(e)
	}
	return &generated.AuthorizationEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, Action: enum[generated.AuthzAction](e.Action),
		ActionName: e.Action, Username: sp(e.User), UserID: sp(e.UserID), Resource: sp(e.Resource),
		Permission: sp(dataString(e, "permission")), Granted: granted,
		Reason: sp(dataString(e, "reason")), Severity: e.Severity.String(), Event: toEvent(e),
	}, true
}

func toAudit(e *event.Event) (*generated.AuditLogEvent, bool) {
	return &generated.AuditLogEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, Action: strings.ToLower(e.Action),
		Username: sp(e.User), Resource: sp(e.Resource),
		Severity: generated.AuditSeverity(enumName(dbsecfilter.AuditSeverity(e.Severity))),
		Success:  success(e), Query: sp(dataString(e, "query")), SourceIP: sp(e.SrcIP),
		Message: sp(e.Message), Event: toEvent(e),
	}, true
}

func toEncryption(e *event.Event) (*generated.EncryptionEvent, bool) {
	return &generated.EncryptionEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, Action: enum[generated.EncryptionAction](e.Action),
		ActionName: e.Action, KeyID: sp(firstNonEmpty(dataString(e, "key_id"), e.Resource)),
		Algorithm: sp(dataString(e, "algorithm")), Success: success(e), Message: sp(e.Message),
		Severity: e.Severity.String(), Event: toEvent(e),
	}, true
}

func toRateLimit(e *event.Event) (*generated.RateLimitEvent, bool) {
	return &generated.RateLimitEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, SourceIP: sp(e.SrcIP),
		Endpoint: sp(firstNonEmpty(dataString(e, "endpoint"), e.Resource)), Blocked: stats.Blocked(e),
		RequestCount: firstInt(dataInt(e, "request_count"), dataInt(e, "requests_per_second")), Limit: dataInt(e, "limit"),
		WindowSeconds: dataInt(e, "window_seconds"), Severity: e.Severity.String(), Event: toEvent(e),
	}, true
}

// threatLevel is data.threat_level when valid, else the event's severity
// (info and low are LOW), the same rule as dbsecfilter.ThreatLevelExpr.
func threatLevel(e *event.Event) generated.ThreatLevel {
	if l := enum[generated.ThreatLevel](dataString(e, "threat_level")); l != nil {
		return *l
	}
	switch e.Severity {
	case event.SeverityMedium:
		return generated.ThreatLevelMedium
	case event.SeverityHigh:
		return generated.ThreatLevelHigh
	case event.SeverityCritical:
		return generated.ThreatLevelCritical
	}
	return generated.ThreatLevelLow
}

func toInsider(e *event.Event) (*generated.InsiderThreatEvent, bool) {
	tt := generated.ThreatTypeOther
	if t := enum[generated.ThreatType](firstNonEmpty(dataString(e, "threat_type"), e.Action)); t != nil {
		tt = *t
	}
	var indicators []string
	if v, ok := e.Field("data.indicators"); ok {
		if list, ok := v.([]any); ok {
			for _, x := range list {
				if s, ok := x.(string); ok {
					indicators = append(indicators, s)
				}
			}
		}
	}
	return &generated.InsiderThreatEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, UserID: sp(e.UserID), Username: sp(e.User),
		ThreatType: tt, ThreatLevel: threatLevel(e), RiskScore: e.RiskScore,
		Indicators: nonNil(indicators), Description: sp(firstNonEmpty(dataString(e, "description"), e.Message)),
		Event: toEvent(e),
	}, true
}

// memoryStems are the action stems of each MemoryEventType: an action
// equal to the stem or starting with stem + "_" has that type.
var memoryStems = map[generated.MemoryEventType]string{
	generated.MemoryEventTypeBufferOverflow:       "buffer_overflow",
	generated.MemoryEventTypeUseAfterFree:         "use_after_free",
	generated.MemoryEventTypeDoubleFree:           "double_free",
	generated.MemoryEventTypeStackCanaryViolation: "stack_canary",
	generated.MemoryEventTypeGuardPageViolation:   "guard_page",
	generated.MemoryEventTypeHeapCorruption:       "heap_corruption",
	generated.MemoryEventTypeOutOfBoundsAccess:    "out_of_bounds",
	generated.MemoryEventTypeMemoryLeak:           "memory_leak",
}

func memoryType(action string) *generated.MemoryEventType {
	a := strings.ToLower(action)
	for t, stem := range memoryStems {
		if a == stem || strings.HasPrefix(a, stem+"_") {
			return &t
		}
	}
	return nil
}

func toMemory(e *event.Event) (*generated.MemoryHardeningEvent, bool) {
	return &generated.MemoryHardeningEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time, EventType: memoryType(e.Action),
		EventTypeName: e.Action, Component: sp(firstNonEmpty(dataString(e, "component"), e.Source)),
		Address: sp(dataString(e, "address")), Size: dataInt(e, "size"), Blocked: stats.Blocked(e),
		Severity: e.Severity.String(), Message: sp(e.Message), Event: toEvent(e),
	}, true
}

// circuitState reads data.state, falling back to the action (opened,
// closed, half_opened).
func circuitState(e *event.Event, key string) *generated.CircuitState {
	if s := enum[generated.CircuitState](dataString(e, key)); s != nil {
		return s
	}
	if key != "state" {
		return nil
	}
	var st generated.CircuitState
	switch strings.TrimPrefix(strings.ToLower(e.Action), "circuit_") {
	case "opened", "open":
		st = generated.CircuitStateOpen
	case "closed", "close":
		st = generated.CircuitStateClosed
	case "half_opened", "half_open":
		st = generated.CircuitStateHalfOpen
	default:
		return nil
	}
	return &st
}

func toCircuit(e *event.Event) (*generated.CircuitBreakerEvent, bool) {
	st := circuitState(e, "state")
	if st == nil {
		return nil, false // a circuit event without a state cannot be shown as one
	}
	return &generated.CircuitBreakerEvent{
		ID: e.ID, Seq: int(e.Seq), Timestamp: e.Time,
		CircuitID: firstNonEmpty(dataString(e, "circuit_id"), e.Resource, e.Source),
		State:     *st, PreviousState: circuitState(e, "previous_state"),
		FailureCount: dataInt(e, "failure_count"),
		Reason:       sp(firstNonEmpty(dataString(e, "reason"), e.Message)), Event: toEvent(e),
	}, true
}
