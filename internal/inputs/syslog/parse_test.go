package syslog

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	p := NewParser()
	m, ok := p.Parse([]byte(`<165>1 2026-11-30T10:11:12.5Z web1 sshd 4242 ID47 [exampleSDID@32473 iut="3" eventSource="App"] `+"\ufeff"+`Failed password for root from 203.0.113.7 port 22 ssh2`), "192.0.2.1:5000")
	if !ok {
		t.Fatal("RFC 5424 not parsed")
	}
	if m.Facility != 20 || m.Severity != 5 || m.Hostname != "web1" || m.AppName != "sshd" || m.ProcID != "4242" || m.MsgID != "ID47" ||
		m.Text != "Failed password for root from 203.0.113.7 port 22 ssh2" || m.Fields["exampleSDID@32473.iut"] != "3" ||
		!m.Time.Equal(time.Date(2026, 11, 30, 10, 11, 12, 5e8, time.UTC)) || m.Remote != "192.0.2.1:5000" || m.Input != "syslog" {
		t.Fatalf("%+v", m)
	}
	m, ok = p.Parse([]byte(`<38>Nov 30 10:11:12 web1 sshd[4242]: Accepted publickey for bob from 192.0.2.1 port 50000 ssh2`), "")
	if !ok || m.Facility != 4 || m.Severity != 6 || m.Hostname != "web1" || m.AppName != "sshd" || m.ProcID != "4242" ||
		m.Text != "Accepted publickey for bob from 192.0.2.1 port 50000 ssh2" || m.Time.Month() != time.November {
		t.Fatalf("RFC 3164: ok=%v %+v", ok, m)
	}
	// Nil fields ("-") are empty.
	m, ok = p.Parse([]byte(`<14>1 - - - - - - hello`), "")
	if !ok || m.Hostname != "" || m.AppName != "" || m.Text != "hello" || !m.Time.IsZero() {
		t.Fatalf("nil fields: ok=%v %+v", ok, m)
	}
	// Not syslog: the raw line, valid UTF-8, no facility.
	m, ok = p.Parse([]byte("plain text \xff here"), "")
	if ok || m.Text != "plain text \uFFFD here" || m.Facility != -1 || m.Severity != -1 {
		t.Fatalf("not syslog: ok=%v %+v", ok, m)
	}
}
