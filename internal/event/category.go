package event

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Category is the coarse class of an event (SPEC 2).
type Category string

const (
	CategoryAuthentication Category = "authentication"
	CategoryAuthorization  Category = "authorization"
	CategoryAudit          Category = "audit"
	CategoryEncryption     Category = "encryption"
	CategoryRateLimit      Category = "rate_limit"
	CategoryInsiderThreat  Category = "insider_threat"
	CategoryMemory         Category = "memory"
	CategoryCircuitBreaker Category = "circuit_breaker"
	CategoryAnalysis       Category = "analysis"
	CategoryThreatIntel    Category = "threat_intel"
	CategoryFraud          Category = "fraud"
	CategoryResponse       Category = "response"
	CategoryOrchestration  Category = "orchestration"
	CategoryDetection      Category = "detection"
	CategorySystem         Category = "system"
)

// Categories lists every valid category in SPEC order.
func Categories() []Category {
	return []Category{
		CategoryAuthentication, CategoryAuthorization, CategoryAudit, CategoryEncryption,
		CategoryRateLimit, CategoryInsiderThreat, CategoryMemory, CategoryCircuitBreaker,
		CategoryAnalysis, CategoryThreatIntel, CategoryFraud, CategoryResponse,
		CategoryOrchestration, CategoryDetection, CategorySystem,
	}
}

// categoryAliases maps the leading token(s) of an event type onto a category,
// covering the spellings the three source systems used.
var categoryAliases = map[string]Category{
	"auth": CategoryAuthentication, "authn": CategoryAuthentication,
	"authz": CategoryAuthorization, "access": CategoryAuthorization, "permission": CategoryAuthorization,
	"crypto": CategoryEncryption, "key": CategoryEncryption, "keys": CategoryEncryption,
	"ratelimit": CategoryRateLimit, "ddos": CategoryRateLimit,
	"insider":          CategoryInsiderThreat,
	"memory_hardening": CategoryMemory,
	"circuit":          CategoryCircuitBreaker, "circuitbreaker": CategoryCircuitBreaker,
	"threat": CategoryThreatIntel, "intel": CategoryThreatIntel,
	"incident": CategoryOrchestration,
}

// ParseCategory validates a category name.
func ParseCategory(s string) (Category, error) {
	c := Category(s)
	if c.Valid() {
		return c, nil
	}
	return "", fmt.Errorf("unknown category %q (valid: %s)", s, categoryList())
}

// Valid reports whether c is one of the SPEC categories.
func (c Category) Valid() bool {
	switch c {
	case CategoryAuthentication, CategoryAuthorization, CategoryAudit, CategoryEncryption,
		CategoryRateLimit, CategoryInsiderThreat, CategoryMemory, CategoryCircuitBreaker,
		CategoryAnalysis, CategoryThreatIntel, CategoryFraud, CategoryResponse,
		CategoryOrchestration, CategoryDetection, CategorySystem:
		return true
	}
	return false
}

func categoryList() string {
	names := make([]string, 0, 15)
	for _, c := range Categories() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}

// DeriveCategory infers the category from a dotted type: the first token
// that names a category or a known alias, skipping a leading "security."
// (so "security.fraud.alert" is fraud and "authentication.login" is
// authentication).
func DeriveCategory(typ string) (Category, bool) {
	rest := typ
	for i := 0; i < 2; i++ {
		tok, tail, _ := strings.Cut(rest, ".")
		rest = tail
		if c := Category(tok); c.Valid() {
			return c, true
		}
		if c, ok := categoryAliases[tok]; ok {
			return c, true
		}
		if tok != "security" {
			break
		}
	}
	return "", false
}

// UnmarshalJSON rejects unknown categories with the list of valid ones.
func (c *Category) UnmarshalJSON(b []byte) error {
	s, ok := plainString(b)
	if !ok {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("category must be a string")
		}
	}
	if s == "" {
		*c = ""
		return nil
	}
	parsed, err := ParseCategory(s)
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// Index returns the position of c in Categories(), or -1.
func (c Category) Index() int {
	for i, x := range Categories() {
		if x == c {
			return i
		}
	}
	return -1
}
