// Package generated holds the gqlgen output for Vigil's GraphQL schema: the
// executable schema (exec.go) and the Go models of its types (models.go).
// Do not edit those files; change internal/transport/graphql/schema.graphql and run
// `go generate ./internal/transport/graphql`. The resolvers live in internal/transport/graphql.
package generated
