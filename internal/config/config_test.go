package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedenceFlagsOverEnvOverFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	yaml := "listen: 127.0.0.1:7000\ndata_dir: /from/file\nrules: /rules/from/file\nping_interval: 10s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_CONFIG": file, "VIGIL_DATA_DIR": "/from/env", "VIGIL_LISTEN": "127.0.0.1:7001"}
	cfg, err := Load([]string{"--listen", "127.0.0.1:7002"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7002" {
		t.Errorf("listen = %s: the flag must win", cfg.Listen)
	}
	if cfg.DataDir != "/from/env" {
		t.Errorf("data dir = %s: the environment must win over the file", cfg.DataDir)
	}
	if cfg.Rules != "/rules/from/file" || cfg.PingInterval != 10*time.Second {
		t.Errorf("file values lost: rules %q ping %s", cfg.Rules, cfg.PingInterval)
	}
	if cfg.NATS != "" || cfg.QueueSize != 4096 {
		t.Errorf("defaults lost: nats %q queue %d", cfg.NATS, cfg.QueueSize)
	}
}

func TestDefaultsAndErrors(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.DataDir != "./vigil-data" || cfg.NATS != "" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.Limits.MaxEventBytes != 64<<10 || cfg.Limits.MaxBatchCount != 10_000 || cfg.Limits.MaxBatchBytes != 16<<20 {
		t.Fatalf("SPEC 2 limits: %+v", cfg.Limits)
	}
	for name, args := range map[string][]string{
		"bad duration": {"--ping-interval", "soon"},
		"bad sync":     {"--sync", "sometimes"},
		"stray arg":    {"extra"},
	} {
		if _, err := Load(args, none, io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	file := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(file, []byte("listne: x\n"), 0o600)
	if _, err := Load([]string{"--config", file}, none, io.Discard); err == nil || !strings.Contains(err.Error(), "listne") {
		t.Errorf("unknown YAML key: %v", err)
	}
}

// TestInputMappingsOption: --input-mappings, VIGIL_INPUT_MAPPINGS and the
// YAML key inputs.mappings, flag over environment over file.
func TestInputMappingsOption(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(file, []byte("inputs:\n  mappings: /from/file.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_CONFIG": file}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", "/from/file.yaml"},
		{nil, "/from/env.yaml", "/from/env.yaml"},
		{[]string{"--input-mappings", "/from/flag.yaml"}, "/from/env.yaml", "/from/flag.yaml"},
	} {
		env["VIGIL_INPUT_MAPPINGS"] = tc.env
		cfg, err := Load(tc.args, getenv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Inputs.Mappings != tc.want {
			t.Errorf("args %v env %q: mappings = %q, want %q", tc.args, tc.env, cfg.Inputs.Mappings, tc.want)
		}
	}
}

// Issue 12: the per-connection byte bound, from flag, environment or
// file; a bound of zero or less is refused, naming the option.
func TestQueueKiBOption(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none, io.Discard)
	if err != nil || cfg.QueueKiB != 4096 {
		t.Fatalf("default queue-kib %d, %v", cfg.QueueKiB, err)
	}
	if cfg, err = Load(nil, func(k string) string { return map[string]string{"VIGIL_QUEUE_KIB": "512"}[k] }, io.Discard); err != nil || cfg.QueueKiB != 512 {
		t.Fatalf("VIGIL_QUEUE_KIB: %d, %v", cfg.QueueKiB, err)
	}
	file := filepath.Join(t.TempDir(), "q.yaml")
	_ = os.WriteFile(file, []byte("queue_kib: 64\n"), 0o600)
	if cfg, err = Load([]string{"--config", file}, none, io.Discard); err != nil || cfg.QueueKiB != 64 {
		t.Fatalf("queue_kib in YAML: %d, %v", cfg.QueueKiB, err)
	}
	for _, v := range []string{"0", "-1"} {
		if _, err := Load([]string{"--queue-kib", v}, none, io.Discard); err == nil || !strings.Contains(err.Error(), "queue-kib") {
			t.Errorf("--queue-kib %s: %v; want an error naming queue-kib", v, err)
		}
	}
}

// Issue 12 item 5: the recent-event ring's bounds from flag, environment
// or file; 0 MB turns it off, a negative size or count is refused naming
// the option.
func TestReplayCacheOptions(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none, io.Discard)
	if err != nil || cfg.ReplayCacheMB != 64 || cfg.ReplayCacheEvents != 1<<20 {
		t.Fatalf("defaults: %d MiB, %d events, %v", cfg.ReplayCacheMB, cfg.ReplayCacheEvents, err)
	}
	env := map[string]string{"VIGIL_REPLAY_CACHE_MB": "0", "VIGIL_REPLAY_CACHE_EVENTS": "5000"}
	if cfg, err = Load(nil, func(k string) string { return env[k] }, io.Discard); err != nil || cfg.ReplayCacheMB != 0 || cfg.ReplayCacheEvents != 5000 {
		t.Fatalf("environment: %d MiB, %d events, %v", cfg.ReplayCacheMB, cfg.ReplayCacheEvents, err)
	}
	file := filepath.Join(t.TempDir(), "r.yaml")
	_ = os.WriteFile(file, []byte("replay_cache_mb: 256\nreplay_cache_events: 100000\n"), 0o600)
	if cfg, err = Load([]string{"--config", file}, none, io.Discard); err != nil || cfg.ReplayCacheMB != 256 || cfg.ReplayCacheEvents != 100000 {
		t.Fatalf("YAML: %d MiB, %d events, %v", cfg.ReplayCacheMB, cfg.ReplayCacheEvents, err)
	}
	if cfg, err = Load([]string{"--config", file, "--replay-cache-mb", "8"}, none, io.Discard); err != nil || cfg.ReplayCacheMB != 8 {
		t.Fatalf("flag over file: %d MiB, %v", cfg.ReplayCacheMB, err)
	}
	for _, args := range [][]string{{"--replay-cache-mb", "-1"}, {"--replay-cache-events", "0"}, {"--replay-cache-events", "-5"}} {
		if _, err := Load(args, none, io.Discard); err == nil || !strings.Contains(err.Error(), args[0][2:]) {
			t.Errorf("%v: %v; want an error naming %s", args, err, args[0][2:])
		}
	}
}

// Issue 12 item 1: ingest admission's bounds from flag, environment or
// file; 0 turns holding off, negative durations are refused naming them.
func TestIngestAdmissionOptions(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none, io.Discard)
	if err != nil || cfg.IngestMaxDeliveryLag != 5*time.Millisecond || cfg.IngestMaxHold != time.Second {
		t.Fatalf("defaults: lag %v, hold %v, %v", cfg.IngestMaxDeliveryLag, cfg.IngestMaxHold, err)
	}
	env := map[string]string{"VIGIL_INGEST_MAX_DELIVERY_LAG": "0s", "VIGIL_INGEST_MAX_HOLD": "250ms"}
	if cfg, err = Load(nil, func(k string) string { return env[k] }, io.Discard); err != nil || cfg.IngestMaxDeliveryLag != 0 || cfg.IngestMaxHold != 250*time.Millisecond {
		t.Fatalf("environment: lag %v, hold %v, %v", cfg.IngestMaxDeliveryLag, cfg.IngestMaxHold, err)
	}
	file := filepath.Join(t.TempDir(), "a.yaml")
	_ = os.WriteFile(file, []byte("ingest_max_delivery_lag: 40ms\ningest_max_hold: 3s\n"), 0o600)
	if cfg, err = Load([]string{"--config", file}, none, io.Discard); err != nil || cfg.IngestMaxDeliveryLag != 40*time.Millisecond || cfg.IngestMaxHold != 3*time.Second {
		t.Fatalf("YAML: lag %v, hold %v, %v", cfg.IngestMaxDeliveryLag, cfg.IngestMaxHold, err)
	}
	for _, args := range [][]string{{"--ingest-max-delivery-lag", "-1s"}, {"--ingest-max-hold", "-5ms"}} {
		if _, err := Load(args, none, io.Discard); err == nil || !strings.Contains(err.Error(), args[0][2:]) {
			t.Errorf("%v: %v; want an error naming %s", args, err, args[0][2:])
		}
	}
}
