package graphql

// gqlgen is a go.mod tool dependency, so this works offline from the module
// cache and survives `go mod tidy`.
//go:generate go tool gqlgen generate --config gqlgen.yml
