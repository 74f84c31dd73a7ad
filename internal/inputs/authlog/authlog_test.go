package authlog

import (
	"encoding/json"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
)

func TestMappers(t *testing.T) {
	cases := []struct {
		name, app, text                        string
		typ                                    string // "" : not claimed
		cat                                    event.Category
		user, ip, action, outcome, dataKey, dv string
	}{
		{"ssh failed", "sshd", "Failed password for alice from 203.0.113.7 port 52144 ssh2",
			"authentication.ssh.login_failed", event.CategoryAuthentication, "alice", "203.0.113.7", "login", "failure", "method", "password"},
		{"ssh failed invalid user", "sshd", "Failed password for invalid user admin from 2001:db8::1 port 4242 ssh2",
			"authentication.ssh.login_failed", event.CategoryAuthentication, "admin", "2001:db8::1", "login", "failure", "invalid_user", "true"},
		{"ssh failed publickey, sshd-session", "sshd-session", "Failed publickey for root from 198.51.100.2 port 22 ssh2: RSA SHA256:abc",
			"authentication.ssh.login_failed", event.CategoryAuthentication, "root", "198.51.100.2", "login", "failure", "method", "publickey"},
		{"ssh accepted publickey", "sshd", "Accepted publickey for bob from 192.0.2.1 port 50000 ssh2: ED25519 SHA256:xyz",
			"authentication.ssh.login_succeeded", event.CategoryAuthentication, "bob", "192.0.2.1", "login", "success", "method", "publickey"},
		{"ssh accepted password", "sshd", "Accepted password for bob from 192.0.2.1 port 50000 ssh2",
			"authentication.ssh.login_succeeded", event.CategoryAuthentication, "bob", "192.0.2.1", "login", "success", "port", "50000"},
		{"ssh invalid user", "sshd", "Invalid user oracle from 203.0.113.9 port 61000",
			"authentication.ssh.invalid_user", event.CategoryAuthentication, "oracle", "203.0.113.9", "invalid_user", "failure", "port", "61000"},
		{"ssh invalid user, old format", "sshd", "Invalid user oracle from 203.0.113.9",
			"authentication.ssh.invalid_user", event.CategoryAuthentication, "oracle", "203.0.113.9", "invalid_user", "failure", "", ""},
		{"ssh line from another program", "nginx", "Failed password for alice from 203.0.113.7 port 1 ssh2",
			"", "", "", "", "", "", "", ""},
		{"sudo command", "sudo", "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls -la",
			"authorization.sudo.command", event.CategoryAuthorization, "alice", "", "sudo", "success", "command", "/bin/ls -la"},
		{"sudo incorrect password", "sudo", "alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
			"authentication.sudo.failed", event.CategoryAuthentication, "alice", "", "authentication_failed", "failure", "run_as", "root"},
		{"sudo not in sudoers", "sudo", "mallory : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
			"authorization.sudo.denied", event.CategoryAuthorization, "mallory", "", "sudo", "failure", "reason", "user NOT in sudoers"},
		{"sudo session line is not a command", "sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
			"authentication.pam.session_opened", event.CategoryAuthentication, "root", "", "session_open", "success", "service", "sudo"},
		{"pam sshd auth failure", "sshd", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7  user=root",
			"authentication.pam.login_failed", event.CategoryAuthentication, "root", "203.0.113.7", "pam_auth_failure", "failure", "service", "sshd"},
		{"pam su auth failure", "su", "pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=root",
			"authentication.pam.login_failed", event.CategoryAuthentication, "root", "", "login", "failure", "logname", "alice"},
		{"pam session closed", "sshd", "pam_unix(sshd:session): session closed for user alice",
			"authentication.pam.session_closed", event.CategoryAuthentication, "alice", "", "session_close", "success", "pam_type", "session"},
		{"unrelated", "sshd", "Server listening on 0.0.0.0 port 22.", "", "", "", "", "", "", "", ""},
	}
	chain := inputs.Chain(Mappers())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &inputs.Message{Input: "syslog", AppName: tc.app, Hostname: "web1", Text: tc.text, Facility: 4, Severity: 6}
			ev := chain.Map(m)
			if tc.typ == "" {
				if ev.Type != "system.syslog.unparsed" {
					t.Fatalf("claimed: %+v", ev)
				}
				return
			}
			if ev.Type != tc.typ || ev.Category != tc.cat || ev.User != tc.user || ev.SrcIP != tc.ip || ev.Action != tc.action || ev.Outcome != tc.outcome {
				t.Fatalf("got type=%s cat=%s user=%q ip=%q action=%q outcome=%q", ev.Type, ev.Category, ev.User, ev.SrcIP, ev.Action, ev.Outcome)
			}
			if ev.Message != tc.text || ev.Source != "web1/"+tc.app {
				t.Fatalf("message %q source %q", ev.Message, ev.Source)
			}
			var d map[string]any
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			if tc.dataKey != "" {
				if got := jsonString(d[tc.dataKey]); got != tc.dv {
					t.Fatalf("data.%s = %q, want %q (data %v)", tc.dataKey, got, tc.dv, d)
				}
			}
			if _, err := event.Normalize(ev, "default", ev.Time, event.DefaultLimits()); err != nil {
				t.Fatalf("not a valid event: %v", err)
			}
		})
	}
}

func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		if x {
			return "true"
		}
		return "false"
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}
