package sigma

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldMap translates Sigma field names into Vigil event field names (as
// understood by event.Event.Field: a top-level JSON name or "data.a.b").
// Resolution order: an explicit entry (exact, then case-insensitive); a
// name that already is a Vigil field or starts with "data."; otherwise the
// name is looked up under data ("TargetUserName" → "data.TargetUserName",
// "process.name" → "data.process.name"), which is where producers put
// product-specific fields.
type FieldMap map[string]string

// vigilFields are the top-level event fields rules may name directly.
var vigilFields = map[string]bool{
	"id": true, "seq": true, "time": true, "received_at": true, "type": true, "category": true,
	"severity": true, "source": true, "tenant": true, "message": true, "user": true, "user_id": true,
	"src_ip": true, "resource": true, "action": true, "outcome": true, "confidence": true,
	"risk_score": true, "mitre_tactics": true, "mitre_techniques": true, "tags": true, "data": true,
}

// DefaultFieldMap maps the common Sigma taxonomy and ECS names onto Vigil's
// flat fields. docs/detections.md lists it.
func DefaultFieldMap() FieldMap {
	return FieldMap{
		// user
		"User": "user", "UserName": "user", "Username": "user", "username": "user",
		"TargetUserName": "user", "SubjectUserName": "user", "AccountName": "user",
		"user.name": "user", "userIdentity.userName": "user",
		"UserId": "user_id", "UserID": "user_id", "user.id": "user_id", "TargetUserSid": "user_id",
		// network source
		"SourceIp": "src_ip", "SourceIP": "src_ip", "IpAddress": "src_ip", "ClientIP": "src_ip",
		"ClientIp": "src_ip", "src": "src_ip", "src-ip": "src_ip", "c-ip": "src_ip", "source.ip": "src_ip",
		"SourceAddress": "src_ip", "sourceIPAddress": "src_ip", "client.ip": "src_ip",
		// what happened
		"EventType": "type", "event.type": "type", "event.category": "category",
		"event.action": "action", "Action": "action", "eventName": "action",
		"event.outcome": "outcome", "Outcome": "outcome",
		"Message": "message", "message": "message",
		"event.severity": "severity", "Severity": "severity",
		// where
		"Computer": "source", "ComputerName": "source", "Hostname": "source", "host.name": "source",
		"service.name": "source", "Source": "source",
		// on what
		"ObjectName": "resource", "TargetObject": "resource", "Resource": "resource", "url.path": "resource",
		"RiskScore": "risk_score", "Confidence": "confidence",
	}
}

// Resolve returns the Vigil field name for a Sigma field name.
func (m FieldMap) Resolve(name string) string {
	if v, ok := m[name]; ok {
		return v
	}
	if vigilFields[name] || strings.HasPrefix(name, "data.") {
		return name
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return "data." + name
}

// alwaysSet are Vigil fields every event has, so a fallback after them
// would never be read: for these, data.<Field> is tried first.
var alwaysSet = map[string]bool{"id": true, "seq": true, "time": true, "received_at": true, "type": true,
	"category": true, "severity": true, "tenant": true}

// ResolveAll returns the Vigil fields a Sigma field is read from, in order:
// the first one present in an event is used. A name the map sends to
// another field falls back to data.<name>, where producers that forward
// Sysmon, Windows or cloud records unchanged put them (TargetObject,
// User, eventName, …). When the mapped field is one every event has
// (type, category, severity, …) data.<name> comes first, since "absent"
// never happens there (Sysmon's EventType is data.EventType, not Vigil's
// type).
func (m FieldMap) ResolveAll(name string) []string {
	mapped := m.Resolve(name)
	fallback := "data." + name
	if mapped == fallback || vigilFields[name] || strings.HasPrefix(name, "data.") {
		return []string{mapped}
	}
	if alwaysSet[mapped] {
		return []string{fallback, mapped}
	}
	return []string{mapped, fallback}
}

// Merge returns a copy of m with the entries of extra added (extra wins).
func (m FieldMap) Merge(extra FieldMap) FieldMap {
	out := make(FieldMap, len(m)+len(extra))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// ParseFieldMap reads a field-mapping file:
//
//	fields:
//	  TargetUserName: user
//	  WorkstationName: data.workstation
func ParseFieldMap(data []byte) (FieldMap, error) {
	var doc struct {
		Fields map[string]string `yaml:"fields"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("field map: %w", err)
	}
	for k, v := range doc.Fields {
		if k == "" || v == "" {
			return nil, fmt.Errorf("field map: empty name in %q: %q", k, v)
		}
		if !vigilFields[v] && !strings.HasPrefix(v, "data.") {
			return nil, fmt.Errorf("field map: %s → %q: target must be a Vigil field (user, src_ip, ...) or data.<path>", k, v)
		}
	}
	return FieldMap(doc.Fields), nil
}
