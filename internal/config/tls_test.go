package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTLSOptionsFromFlagsEnvAndFile(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load([]string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem", "--allow-plaintext"}, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Cert != "c.pem" || cfg.TLS.Key != "k.pem" || cfg.TLS.ClientCA != "ca.pem" || !cfg.AllowPlaintext {
		t.Fatalf("flags: %+v allow_plaintext=%v", cfg.TLS, cfg.AllowPlaintext)
	}
	if cfg.TLS.ReloadInterval != 5*time.Second {
		t.Fatalf("default reload interval %s", cfg.TLS.ReloadInterval)
	}

	env := map[string]string{"VIGIL_TLS_CERT": "env.pem", "VIGIL_TLS_KEY": "env-key.pem", "VIGIL_ALLOW_PLAINTEXT": "true"}
	if cfg, err = Load(nil, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Cert != "env.pem" || cfg.TLS.Key != "env-key.pem" || !cfg.AllowPlaintext {
		t.Fatalf("env: %+v allow_plaintext=%v", cfg.TLS, cfg.AllowPlaintext)
	}

	file := filepath.Join(t.TempDir(), "vigil.yaml")
	yaml := "tls:\n  cert: f.pem\n  key: f-key.pem\n  client_ca: f-ca.pem\n  reload_interval: 1s\nallow_plaintext: true\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load([]string{"--config", file, "--allow-plaintext=false"}, none, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Cert != "f.pem" || cfg.TLS.Key != "f-key.pem" || cfg.TLS.ClientCA != "f-ca.pem" || cfg.TLS.ReloadInterval != time.Second {
		t.Fatalf("file: %+v", cfg.TLS)
	}
	if cfg.AllowPlaintext {
		t.Fatal("--allow-plaintext=false must win over the file")
	}

	for name, args := range map[string][]string{
		"cert without key":  {"--tls-cert", "c.pem"},
		"key without cert":  {"--tls-key", "k.pem"},
		"client CA alone":   {"--tls-client-ca", "ca.pem"},
		"negative interval": {"--tls-cert", "c", "--tls-key", "k", "--tls-reload-interval", "-1s"},
		"bad bool":          {"--allow-plaintext=maybe"},
	} {
		if _, err := Load(args, none, io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
