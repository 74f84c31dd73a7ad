package config

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// --pipeline may be repeated or a comma list; the flag wins over the
// environment, which wins over the file (issue 13).
func TestPipelineOption(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load([]string{"--pipeline", "a.yml,b.yml", "--pipeline", "c.yml", "--sigma-placeholders", "ph.yml"}, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Pipelines, []string{"a.yml", "b.yml", "c.yml"}) || cfg.SigmaPlaceholders != "ph.yml" {
		t.Fatalf("pipelines %v placeholders %q", cfg.Pipelines, cfg.SigmaPlaceholders)
	}
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(file, []byte("pipeline: [f1.yml, f2.yml]\nsigma_placeholders: f.yml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load([]string{"--config", file}, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Pipelines, []string{"f1.yml", "f2.yml"}) || cfg.SigmaPlaceholders != "f.yml" {
		t.Fatalf("file: pipelines %v placeholders %q", cfg.Pipelines, cfg.SigmaPlaceholders)
	}
	env := map[string]string{"VIGIL_PIPELINE": "e1.yml, e2.yml"}
	cfg, err = Load([]string{"--config", file}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Pipelines, []string{"e1.yml", "e2.yml"}) {
		t.Fatalf("env: pipelines %v, want the environment over the file", cfg.Pipelines)
	}
}
