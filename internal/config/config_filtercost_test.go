package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFilterCostLimitFromFile: access.limits.max_filter_cost_per_token is
// read from the YAML file (unset: 0, which the limiter takes as its
// default of 1,000).
func TestFilterCostLimitFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(file, []byte("access:\n  limits:\n    max_filter_cost_per_token: 40\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(nil, func(k string) string { return map[string]string{"VIGIL_CONFIG": file}[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Access.Limits.MaxFilterCostPerToken; got != 40 {
		t.Fatalf("max_filter_cost_per_token = %d, want 40", got)
	}
}
