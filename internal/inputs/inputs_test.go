package inputs

import (
	"encoding/json"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

func TestChainFallsBackToUnparsed(t *testing.T) {
	never := MapperFunc(func(*Message) (*event.Event, bool) { return nil, false })
	m := &Message{Input: "syslog", Hostname: "web-1", AppName: "cron", Facility: 9, Severity: 3, Text: "job failed"}
	ev := Chain{never}.Map(m)
	if ev.Type != "system.syslog.unparsed" || ev.Category != event.CategorySystem || ev.Message != "job failed" {
		t.Fatalf("fallback event = %+v", ev)
	}
	if ev.Severity != event.SeverityHigh || ev.Source != "web-1/cron" {
		t.Fatalf("severity %v source %q, want high and web-1/cron", ev.Severity, ev.Source)
	}
	var data map[string]any
	if err := json.Unmarshal(ev.Data, &data); err != nil || data["app_name"] != "cron" || data["facility"] != float64(9) {
		t.Fatalf("data = %s (%v)", ev.Data, err)
	}
}

func TestChainFirstMapperWins(t *testing.T) {
	first := MapperFunc(func(m *Message) (*event.Event, bool) {
		return &event.Event{Type: "authentication.login"}, m.AppName == "sshd"
	})
	second := MapperFunc(func(*Message) (*event.Event, bool) { return &event.Event{Type: "audit.other"}, true })
	if ev := (Chain{first, second}).Map(&Message{Input: "syslog", AppName: "sshd", Facility: -1, Severity: -1}); ev.Type != "authentication.login" || ev.Source != "sshd" {
		t.Fatalf("got %s from %q", ev.Type, ev.Source)
	}
	if ev := (Chain{first, second}).Map(&Message{Input: "syslog", AppName: "sudo", Facility: -1, Severity: -1}); ev.Type != "audit.other" {
		t.Fatalf("got %s", ev.Type)
	}
}
