package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The replicas option (issue 8 item 2) follows the flag > env > YAML order
// and refuses values JetStream cannot take or the embedded server cannot
// honour.
func TestReplicasOption(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none, io.Discard)
	if err != nil || cfg.Replicas != 0 {
		t.Fatalf("default replicas = %d (%v), want 0 (automatic)", cfg.Replicas, err)
	}
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(file, []byte("nats: nats://127.0.0.1:4222\nreplicas: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load([]string{"--config", file}, none, io.Discard); err != nil || cfg.Replicas != 5 {
		t.Fatalf("yaml replicas = %d (%v), want 5", cfg.Replicas, err)
	}
	env := map[string]string{"VIGIL_REPLICAS": "3", "VIGIL_CONFIG": file}
	if cfg, err = Load(nil, func(k string) string { return env[k] }, io.Discard); err != nil || cfg.Replicas != 3 {
		t.Fatalf("env replicas = %d (%v), want 3", cfg.Replicas, err)
	}
	if cfg, err = Load([]string{"--replicas", "1"}, func(k string) string { return env[k] }, io.Discard); err != nil || cfg.Replicas != 1 {
		t.Fatalf("flag replicas = %d (%v), want 1", cfg.Replicas, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats", "nats://x:4222", "--replicas", "6"}, "between 1 and 5"},
		{[]string{"--nats", "nats://x:4222", "--replicas", "-1"}, "between 1 and 5"},
		{[]string{"--replicas", "3"}, "external NATS"},
		{[]string{"--replicas", "three"}, "replicas"},
	} {
		if _, err := Load(tc.args, none, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}
