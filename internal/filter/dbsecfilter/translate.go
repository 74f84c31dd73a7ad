// Package dbsecfilter is the database-security dialect's model (SPEC 7.3):
// its categories, event type names, audit severities and the translation
// of its configuration message into the one filter model. The WebSocket
// dialect (internal/transport/compat/dbsec) and the GraphQL subscriptions (internal/transport/graphql)
// both use it, so neither transport imports the other.
package dbsecfilter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// Categories are the eight database security categories, in SPEC order.
func Categories() []event.Category {
	return []event.Category{
		event.CategoryAuthentication, event.CategoryAuthorization, event.CategoryAudit,
		event.CategoryEncryption, event.CategoryRateLimit, event.CategoryInsiderThreat,
		event.CategoryMemory, event.CategoryCircuitBreaker,
	}
}

// EventType is the PascalCase event_type naming a category in this dialect.
func EventType(c event.Category) string {
	switch c {
	case event.CategoryAuthentication:
		return "Authentication"
	case event.CategoryAuthorization:
		return "Authorization"
	case event.CategoryAudit:
		return "AuditLog"
	case event.CategoryEncryption:
		return "Encryption"
	case event.CategoryRateLimit:
		return "RateLimit"
	case event.CategoryInsiderThreat:
		return "InsiderThreat"
	case event.CategoryMemory:
		return "MemoryHardening"
	case event.CategoryCircuitBreaker:
		return "CircuitBreaker"
	}
	// Not one of the eight: a PascalCase rendering of the category name.
	parts := strings.Split(string(c), "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// AuditSeverity maps a Vigil severity onto the four audit severities:
// info and low are info, medium is warning, high is error, critical is
// critical.
func AuditSeverity(s event.Severity) string {
	switch s {
	case event.SeverityMedium:
		return "warning"
	case event.SeverityHigh:
		return "error"
	case event.SeverityCritical:
		return "critical"
	}
	return "info"
}

// VigilSeverities is the inverse of AuditSeverity: the Vigil severities an
// audit severity stands for.
func VigilSeverities(audit string) ([]string, error) {
	switch strings.ToLower(audit) {
	case "info":
		return []string{"info", "low"}, nil
	case "warning":
		return []string{"medium"}, nil
	case "error":
		return []string{"high"}, nil
	case "critical":
		return []string{"critical"}, nil
	}
	return nil, fmt.Errorf("unknown audit severity %q (valid: info, warning, error, critical)", audit)
}

// threatLevels orders insider-threat levels; the numbers equal Vigil's
// severity levels (low=1 … critical=4) so an event without
// data.threat_level is judged by its severity.
var threatLevels = map[string]int{"low": 1, "medium": 2, "high": 3, "critical": 4}

// Config is the configuration message of SPEC 7.3. Every field is
// optional; the whole message replaces the previous configuration.
type Config struct {
	EventTypes      []string `json:"event_types,omitempty"` // actions
	UsernameFilter  string   `json:"username_filter,omitempty"`
	SeverityFilter  string   `json:"severity_filter,omitempty"` // audit severity: exact
	ResourceFilter  string   `json:"resource_filter,omitempty"`
	SourceIPFilter  string   `json:"source_ip_filter,omitempty"` // an address or CIDR prefix
	BlockedOnly     bool     `json:"blocked_only,omitempty"`
	MinThreatLevel  string   `json:"min_threat_level,omitempty"` // low, medium, high, critical
	UserIDFilter    string   `json:"user_id_filter,omitempty"`
	KeyIDFilter     string   `json:"key_id_filter,omitempty"`
	CircuitIDFilter string   `json:"circuit_id_filter,omitempty"`
}

// celString renders s as a CEL string literal.
func celString(s string) string { return strconv.Quote(s) }

// BlockedExpr is the CEL condition for "blocked": data.blocked is true, or
// the action names a block (the same rule as stats.Blocked).
const BlockedExpr = `(has(data.blocked) && data.blocked == true) || action == "blocked" || action == "request_blocked"`

// ThreatLevelExpr is the CEL condition "threat level ≥ level": the level is
// data.threat_level (low … critical, any case) when present, else the
// event's severity.
func ThreatLevelExpr(level string) (string, error) {
	n, ok := threatLevels[strings.ToLower(level)]
	if !ok {
		return "", fmt.Errorf("unknown threat level %q (valid: low, medium, high, critical)", level)
	}
	return fmt.Sprintf(`(has(data.threat_level) && type(data.threat_level) == string ? {"low": 1, "medium": 2, "high": 3, "critical": 4, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}[data.threat_level] : severity_level) >= %d`, n), nil
}

// DataIDExpr matches events about one object named either by resource or
// by data.<key> (data.key_id for keys, data.circuit_id for circuits).
func DataIDExpr(key, id string) string {
	q := celString(id)
	return fmt.Sprintf(`resource == %s || (has(data.%s) && string(data.%s) == %s)`, q, key, key, q)
}

// Filter translates the configuration into the native filter for an
// endpoint limited to cats: the one place this dialect's filter keys get
// their meaning. A bad value returns a *filter.Error naming the key.
func (c Config) Filter(cats []event.Category) (filter.Filter, error) {
	f := filter.Filter{}
	for _, cat := range cats {
		f.Categories = append(f.Categories, string(cat))
	}
	for _, a := range c.EventTypes {
		if a == "" {
			return f, &filter.Error{Field: "event_types", Reason: "empty action"}
		}
		f.Actions = append(f.Actions, strings.ToLower(a))
	}
	if c.UsernameFilter != "" {
		f.Users = []string{c.UsernameFilter}
	}
	if c.SeverityFilter != "" {
		sevs, err := VigilSeverities(c.SeverityFilter)
		if err != nil {
			return f, &filter.Error{Field: "severity_filter", Reason: err.Error()}
		}
		f.Severities = sevs
	}
	if c.ResourceFilter != "" {
		f.Resources = []string{c.ResourceFilter}
	}
	if c.SourceIPFilter != "" {
		f.SrcIPs = []string{c.SourceIPFilter}
	}
	if c.UserIDFilter != "" {
		f.UserIDs = []string{c.UserIDFilter}
	}
	var exprs []string
	if c.BlockedOnly {
		exprs = append(exprs, BlockedExpr)
	}
	if c.MinThreatLevel != "" {
		x, err := ThreatLevelExpr(c.MinThreatLevel)
		if err != nil {
			return f, &filter.Error{Field: "min_threat_level", Reason: err.Error()}
		}
		exprs = append(exprs, x)
	}
	if c.KeyIDFilter != "" {
		exprs = append(exprs, DataIDExpr("key_id", c.KeyIDFilter))
	}
	if c.CircuitIDFilter != "" {
		exprs = append(exprs, DataIDExpr("circuit_id", c.CircuitIDFilter))
	}
	for i, x := range exprs {
		exprs[i] = "(" + x + ")"
	}
	f.Expr = strings.Join(exprs, " && ")
	return f, nil
}

// Compile translates and compiles; errors name this dialect's keys (the
// native field names are mapped back).
func (c Config) Compile(cats []event.Category) (*filter.Matcher, error) {
	f, err := c.Filter(cats)
	if err != nil {
		return nil, err
	}
	m, err := filter.Compile(f)
	if err != nil {
		var fe *filter.Error
		if ok := asFilterError(err, &fe); ok {
			return nil, &filter.Error{Field: nativeToDialect(fe.Field), Reason: fe.Reason}
		}
		return nil, err
	}
	return m, nil
}

func asFilterError(err error, target **filter.Error) bool {
	fe, ok := err.(*filter.Error)
	if ok {
		*target = fe
	}
	return ok
}

func nativeToDialect(field string) string {
	switch field {
	case "actions":
		return "event_types"
	case "users":
		return "username_filter"
	case "severities", "min_severity":
		return "severity_filter"
	case "resources":
		return "resource_filter"
	case "src_ips":
		return "source_ip_filter"
	case "user_ids":
		return "user_id_filter"
	}
	return field
}

// inCategories reports whether c is one of cats.
