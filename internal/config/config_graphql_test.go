package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGraphQLLimits: the GraphQL limits (issue 8) have defaults and are set
// by the YAML file (graphql:), VIGIL_GRAPHQL_* and --graphql-* flags.
func TestGraphQLLimits(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GraphQL != DefaultGraphQLLimits() {
		t.Fatalf("defaults: %+v, want %+v", cfg.GraphQL, DefaultGraphQLLimits())
	}
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	yaml := "graphql:\n  max_depth: 7\n  max_fields: 50\n  timeout: 3s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_CONFIG": file, "VIGIL_GRAPHQL_MAX_COMPLEXITY": "1234", "VIGIL_GRAPHQL_MAX_FIELDS": "60"}
	cfg, err = Load([]string{"--graphql-timeout", "2s", "--graphql-max-body-kib", "16"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := GraphQLLimits{MaxComplexity: 1234, MaxFields: 60, MaxDepth: 7, MaxBodyKiB: 16, Timeout: 2 * time.Second}
	if cfg.GraphQL != want {
		t.Fatalf("limits = %+v, want %+v", cfg.GraphQL, want)
	}
	if _, err := Load([]string{"--graphql-timeout", "soon"}, none, io.Discard); err == nil {
		t.Error("bad --graphql-timeout accepted")
	}
}
