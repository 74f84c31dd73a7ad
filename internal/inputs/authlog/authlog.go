// Package authlog holds the built-in parsers for Linux authentication logs
// (sshd, sudo, PAM) as inputs.Mappers: forwarding /var/log/auth.log over
// syslog produces authentication.* and authorization.* events with user,
// src_ip, outcome and action, shaped for the built-in rules
// (internal/detect/builtin/authentication.yml): a failed sshd login is
// category authentication, action "login", outcome "failure", so ten of
// them for one user from one address fire the brute-force rules.
package authlog

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
)

// Mappers returns the parsers in the order they are tried.
func Mappers() []inputs.Mapper {
	return []inputs.Mapper{inputs.MapperFunc(SSHD), inputs.MapperFunc(Sudo), inputs.MapperFunc(PAM)}
}

var (
	sshFailed   = regexp.MustCompile(`^Failed (\S+) for (invalid user )?(\S*) from (\S+) port (\d+)`)
	sshAccepted = regexp.MustCompile(`^Accepted (\S+) for (\S+) from (\S+) port (\d+)`)
	sshInvalid  = regexp.MustCompile(`^Invalid user (\S*) from (\S+)(?: port (\d+))?`)
	pamLine     = regexp.MustCompile(`^pam_unix\(([^:)]+):([^)]+)\): (.*)$`)
	pamSession  = regexp.MustCompile(`^session (opened|closed) for user ([^\s(]+)`)
)

func isSSHD(app string) bool { return app == "" || strings.HasPrefix(app, "sshd") }

// SSHD parses OpenSSH's login lines.
func SSHD(m *inputs.Message) (*event.Event, bool) {
	if !isSSHD(m.AppName) {
		return nil, false
	}
	if g := sshFailed.FindStringSubmatch(m.Text); g != nil {
		d := map[string]any{"method": g[1], "port": g[5]}
		if g[2] != "" {
			d["invalid_user"] = true
		}
		return ev(m, "authentication.ssh.login_failed", event.CategoryAuthentication, event.SeverityLow, g[3], g[4], "login", "failure", d), true
	}
	if g := sshAccepted.FindStringSubmatch(m.Text); g != nil {
		return ev(m, "authentication.ssh.login_succeeded", event.CategoryAuthentication, event.SeverityInfo, g[2], g[3], "login", "success",
			map[string]any{"method": g[1], "port": g[4]}), true
	}
	if g := sshInvalid.FindStringSubmatch(m.Text); g != nil {
		// sshd follows this line with "Failed ... for invalid user": that
		// one counts as the failed login, this one is not a second.
		d := map[string]any{}
		if g[3] != "" {
			d["port"] = g[3]
		}
		return ev(m, "authentication.ssh.invalid_user", event.CategoryAuthentication, event.SeverityLow, g[1], g[2], "invalid_user", "failure", d), true
	}
	return nil, false
}

// Sudo parses sudo's command log lines:
//
//	alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls
//	alice : 3 incorrect password attempts ; TTY=pts/0 ; ... ; COMMAND=/bin/ls
//	bob : user NOT in sudoers ; TTY=pts/0 ; ... ; COMMAND=/bin/sh
func Sudo(m *inputs.Message) (*event.Event, bool) {
	if m.AppName != "sudo" {
		return nil, false
	}
	user, rest, ok := strings.Cut(m.Text, " : ")
	if !ok || strings.ContainsAny(user, " \t") || user == "" {
		return nil, false
	}
	d := map[string]any{}
	var problem string
	for _, part := range strings.Split(rest, " ; ") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.ContainsAny(k, " ") {
			problem = strings.TrimSpace(part)
			continue
		}
		switch k {
		case "TTY":
			d["tty"] = v
		case "PWD":
			d["pwd"] = v
		case "USER":
			d["run_as"] = v
		case "COMMAND":
			d["command"] = v
		default:
			d[strings.ToLower(k)] = v
		}
	}
	if _, ok := d["command"]; !ok {
		return nil, false
	}
	cmd, _ := d["command"].(string)
	switch {
	case problem == "":
		e := ev(m, "authorization.sudo.command", event.CategoryAuthorization, event.SeverityInfo, user, "", "sudo", "success", d)
		e.Resource = cmd
		return e, true
	case strings.Contains(problem, "incorrect password attempt"):
		d["reason"] = problem
		e := ev(m, "authentication.sudo.failed", event.CategoryAuthentication, event.SeverityMedium, user, "", "authentication_failed", "failure", d)
		e.Resource = cmd
		return e, true
	default: // "user NOT in sudoers", "command not allowed", ...
		d["reason"] = problem
		e := ev(m, "authorization.sudo.denied", event.CategoryAuthorization, event.SeverityMedium, user, "", "sudo", "failure", d)
		e.Resource = cmd
		return e, true
	}
}

// PAM parses pam_unix lines (any service):
//
//	pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7  user=root
//	pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)
func PAM(m *inputs.Message) (*event.Event, bool) {
	g := pamLine.FindStringSubmatch(m.Text)
	if g == nil {
		return nil, false
	}
	service, kind, rest := g[1], g[2], g[3]
	d := map[string]any{"service": service, "pam_type": kind}
	switch {
	case kind == "auth" && strings.HasPrefix(rest, "authentication failure"):
		kv := pamFields(rest)
		for _, k := range []string{"logname", "uid", "euid", "tty", "ruser"} {
			if kv[k] != "" {
				d[k] = kv[k]
			}
		}
		user := kv["user"]
		if user == "" {
			user = kv["ruser"]
		}
		// sshd logs its own "Failed password" line for the same attempt,
		// which is the failed login the brute-force rules count; for other
		// services (su, login, sudo's PAM stack) this line is the failure.
		action := "login"
		if service == "sshd" {
			action = "pam_auth_failure"
		}
		return ev(m, "authentication.pam.login_failed", event.CategoryAuthentication, event.SeverityLow, user, kv["rhost"], action, "failure", d), true
	case kind == "session":
		s := pamSession.FindStringSubmatch(rest)
		if s == nil {
			return nil, false
		}
		action := map[string]string{"opened": "session_open", "closed": "session_close"}[s[1]]
		return ev(m, "authentication.pam.session_"+s[1], event.CategoryAuthentication, event.SeverityInfo, s[2], "", action, "success", d), true
	}
	return nil, false
}

// pamFields reads "k=v k=v" (values may be empty: "ruser= rhost=").
func pamFields(s string) map[string]string {
	out := map[string]string{}
	_, s, _ = strings.Cut(s, ";")
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

func ev(m *inputs.Message, typ string, cat event.Category, sev event.Severity, user, ip, action, outcome string, data map[string]any) *event.Event {
	if m.Hostname != "" {
		data["hostname"] = m.Hostname
	}
	if m.AppName != "" {
		data["app_name"] = m.AppName
	}
	if m.ProcID != "" {
		data["proc_id"] = m.ProcID
	}
	raw, _ := json.Marshal(data) // strings and bools always encode
	return &event.Event{Type: typ, Category: cat, Severity: sev, Message: m.Text,
		User: user, SrcIP: ip, Action: action, Outcome: outcome, Data: raw}
}
