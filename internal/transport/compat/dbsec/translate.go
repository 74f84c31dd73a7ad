package dbsec

import (
	"slices"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter/dbsecfilter"
)

// The dialect's model and filter translation live in internal/filter/dbsecfilter
// (shared with GraphQL); these names keep the package's API.

// Config is the configuration message of SPEC 7.3.
type Config = dbsecfilter.Config

// Categories are the eight database security categories, in SPEC order.
func Categories() []event.Category { return dbsecfilter.Categories() }

// EventType is the PascalCase event_type naming a category in this dialect.
func EventType(c event.Category) string { return dbsecfilter.EventType(c) }

// AuditSeverity maps a Vigil severity onto the four audit severities.
func AuditSeverity(s event.Severity) string { return dbsecfilter.AuditSeverity(s) }

// VigilSeverities is the inverse of AuditSeverity.
func VigilSeverities(audit string) ([]string, error) { return dbsecfilter.VigilSeverities(audit) }

// ThreatLevelExpr is the CEL condition "threat level ≥ level".
func ThreatLevelExpr(level string) (string, error) { return dbsecfilter.ThreatLevelExpr(level) }

// DataIDExpr matches events about one object named by resource or data[key].
func DataIDExpr(key, id string) string { return dbsecfilter.DataIDExpr(key, id) }

// BlockedExpr is the CEL condition for "blocked".
const BlockedExpr = dbsecfilter.BlockedExpr

func inCategories(cats []event.Category, c event.Category) bool { return slices.Contains(cats, c) }
