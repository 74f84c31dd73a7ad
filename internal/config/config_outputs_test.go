package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputsAndPublicURL: the outputs: list is kept as YAML for the app
// (which decodes it with the output types), public_url is read from the
// file, the environment or the flag, and must be an absolute URL.
func TestOutputsAndPublicURL(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	src := "public_url: https://vigil.example.com\noutputs:\n  - name: a\n    type: webhook\n    url: http://x/\n  - name: b\n    type: slack\n    anything: goes here\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_CONFIG": file}
	cfg, err := Load(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Outputs) != 2 || cfg.PublicURL != "https://vigil.example.com" {
		t.Fatalf("outputs %d, public url %q", len(cfg.Outputs), cfg.PublicURL)
	}
	cfg, err = Load([]string{"--public-url", "http://10.0.0.1:8080/vigil"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.PublicURL != "http://10.0.0.1:8080/vigil" {
		t.Fatalf("flag: %v %q", err, cfg.PublicURL)
	}
	for _, bad := range []string{"vigil.example.com", "ftp://x/", "https://"} {
		_, err := Load([]string{"--public-url", bad}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "public-url") {
			t.Fatalf("%q: err = %v", bad, err)
		}
	}
}
