package config

import "time"

// The GraphQL part of the configuration lives here, not in internal/transport/graphql,
// so that the configuration model imports no transport (the dependency
// rule, internal/archtest); internal/transport/graphql.Limits is this type.

// GraphQLLimits bound what one GraphQL operation may make the server spend (issue
// 8): before issue 8 one 50 KB query of 1,000 aliases of events(limit:1000)
// ran for 106 s in 2.7 GB. A zero value takes the default, a negative one
// disables the limit. They apply to HTTP requests and to operations sent
// over either WebSocket protocol alike.
type GraphQLLimits struct {
	// MaxComplexity is gqlgen's complexity limit: every field costs 1 plus
	// its selection, and a list query (events, detections) costs its
	// limit argument (default 100) times its selection.
	MaxComplexity int `yaml:"max_complexity"`
	// MaxFields bounds the fields one request selects, aliases and
	// fragment expansions included. It is checked on the parsed query
	// before validation and the complexity walk, so a fragment that
	// spreads another fragment twice, ten levels deep, costs at most this
	// many steps to refuse.
	MaxFields int `yaml:"max_fields"`
	// MaxDepth bounds how deeply selections nest (a root field is depth 1).
	MaxDepth int `yaml:"max_depth"`
	// MaxBodyKiB bounds the HTTP request body and each WebSocket message.
	MaxBodyKiB int `yaml:"max_body_kib"`
	// Timeout bounds a query or mutation (subscriptions are streams: they
	// end when the client or the server ends them, not by a deadline).
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultGraphQLLimits are the defaults of GraphQLLimits.
func DefaultGraphQLLimits() GraphQLLimits {
	return GraphQLLimits{MaxComplexity: 50_000, MaxFields: 500, MaxDepth: 15, MaxBodyKiB: 1024, Timeout: 10 * time.Second}
}

// WithDefaults fills zero values with the defaults.
func (l GraphQLLimits) WithDefaults() GraphQLLimits {
	d := DefaultGraphQLLimits()
	if l.MaxComplexity == 0 {
		l.MaxComplexity = d.MaxComplexity
	}
	if l.MaxFields == 0 {
		l.MaxFields = d.MaxFields
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxBodyKiB == 0 {
		l.MaxBodyKiB = d.MaxBodyKiB
	}
	if l.Timeout == 0 {
		l.Timeout = d.Timeout
	}
	return l
}

// BodyBytes is the body limit in bytes, or 0 for none (defaults not applied).
func (l GraphQLLimits) BodyBytes() int64 {
	if l.MaxBodyKiB < 0 {
		return 0
	}
	return int64(l.MaxBodyKiB) << 10
}

// MaxBodyBytes is the body limit in bytes once defaults apply, or 0 for none
// (the server's strict-JSON check reads no more than this).
func (l GraphQLLimits) MaxBodyBytes() int64 { return l.WithDefaults().BodyBytes() }
