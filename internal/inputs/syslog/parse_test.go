package syslog

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	p := NewParser(nil)
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

// TestParseBSDZoneAndYear: an RFC 3164 timestamp is read in the configured
// zone, and one that would be more than a week ahead in the current year
// (December's line read in January) is last year's.
func TestParseBSDZoneAndYear(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	p := NewParser(berlin)
	p.now = func() time.Time { return time.Date(2027, 1, 1, 0, 0, 5, 0, time.UTC) }
	m, ok := p.Parse([]byte(`<38>Dec 31 23:59:58 web1 sshd[1]: Accepted publickey for bob from 192.0.2.1 port 1 ssh2`), "")
	if want := time.Date(2026, 12, 31, 22, 59, 58, 0, time.UTC); !ok || !m.Time.Equal(want) {
		t.Fatalf("Dec 31 in Berlin read on 1 Jan 2027: %v (ok %v), want %v", m.Time.UTC(), ok, want)
	}
	// The same day's line keeps the current year.
	m, _ = p.Parse([]byte(`<38>Jan  1 00:59:00 web1 sshd[1]: hello`), "")
	if want := time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC); !m.Time.Equal(want) {
		t.Fatalf("Jan 1 00:59 Berlin: %v, want %v", m.Time.UTC(), want)
	}
	// An RFC 3339 timestamp in a BSD-style line is absolute: kept as sent.
	m, _ = p.Parse([]byte(`<38>2027-03-01T10:00:00Z web1 sshd[1]: hello`), "")
	if want := time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC); !m.Time.Equal(want) {
		t.Fatalf("RFC 3339 in a BSD line: %v, want %v", m.Time.UTC(), want)
	}
}
