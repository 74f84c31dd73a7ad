package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSyslogOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vigil.yaml")
	yaml := "syslog:\n  listen: 127.0.0.1:5514\n  tenant: netops\n  allow: [10.0.0.0/8, 192.0.2.15]\n  idle_timeout: 30s\n  max_connections: 50\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_CONFIG": file, "VIGIL_SYSLOG_TENANT": "edge"}
	cfg, err := Load([]string{"--syslog-max-message-kib", "16"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Syslog
	if s.Listen != "127.0.0.1:5514" || s.Tenant != "edge" || s.MaxMessageKiB != 16 || s.MaxConnections != 50 || s.IdleTimeout != 30*time.Second {
		t.Fatalf("%+v", s)
	}
	p, err := s.AllowPrefixes()
	if err != nil || len(p) != 2 || p[0].String() != "10.0.0.0/8" || p[1].String() != "192.0.2.15/32" {
		t.Fatalf("allow %v %v", p, err)
	}
	if d := Defaults().Syslog; d.Listen != "" || d.Tenant != "default" || d.MaxMessageKiB != 64 || d.MaxConnections != 1000 {
		t.Fatalf("defaults %+v", d)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--syslog-allow", "10.0.0.0/8,not-a-cidr"}, `"not-a-cidr" is not a CIDR`},
		{[]string{"--syslog-tenant", "a b"}, "syslog tenant"},
		{[]string{"--syslog-tls-cert", "c.pem"}, "--syslog-tls-key"},
		{[]string{"--syslog-tls-client-ca", "ca.pem"}, "--syslog-tls-client-ca needs"},
		{[]string{"--syslog-max-connections", "0"}, "must be positive"},
	} {
		_, err := Load(tc.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
