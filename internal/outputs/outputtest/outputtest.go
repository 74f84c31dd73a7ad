// Package outputtest builds the messages and environments the output
// types' tests share. It is imported only by tests.
package outputtest

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outputs"
	"github.com/vigil-sec/vigil/internal/testkit"
)

// Now is the fixed clock of the tests.
var Now = time.Date(2026, 11, 30, 17, 4, 5, 123456789, time.UTC)

// LogBuffer is a concurrency-safe buffer the test logger writes to.
type LogBuffer = testkit.SyncBuffer

// Env is an outputs.Env with a debug logger into the returned buffer, the
// fixed clock and a public URL.
func Env(t testing.TB, client *http.Client) (outputs.Env, *LogBuffer) {
	t.Helper()
	lb := &LogBuffer{}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return outputs.Env{
		HTTP:      client,
		Logger:    slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PublicURL: "https://vigil.example.com",
		Now:       func() time.Time { return Now },
	}, lb
}

// Detection is a message for a detection event with the given detection
// id, status and count; evID is the event's id.
func Detection(evID, detID, status string, count int) outputs.Message {
	typ := "detection.updated"
	if count <= 1 && status == "active" {
		typ = "detection.created"
	}
	d := &outputs.Detection{
		ID: detID, RuleID: "brute-force", Title: "Brute force against admin | \"ssh\"",
		Category: "authentication", Severity: "high", Confidence: 0.9, Status: status,
		MitreTactics: []string{"TA0006"}, MitreTechniques: []string{"T1110"},
		CreatedAt: Now.Add(-time.Minute), UpdatedAt: Now, EventIDs: []string{"e1", "e2"},
		GroupKey: "user=alice", Count: count, Tenant: "acme",
	}
	data, _ := json.Marshal(d)
	ev := &event.Event{
		ID: evID, Seq: 42, Time: Now, ReceivedAt: Now, Type: typ,
		Category: event.CategoryDetection, Severity: event.SeverityHigh,
		Source: "vigil.detect", Tenant: "acme", Message: d.Title, User: "alice",
		SrcIP: "203.0.113.7", Data: data,
		MitreTactics: d.MitreTactics, MitreTechniques: d.MitreTechniques,
	}
	return outputs.Message{Event: ev, Body: ev.JSON(), Detection: d,
		Text: "*" + d.Title + "* (high) rule brute-force, count " + itoa(count)}
}

// Event is a message for a plain (non-detection) event.
func Event(evID string) outputs.Message {
	ev := plainEvent(evID)
	return outputs.Message{Event: ev, Body: ev.JSON(), Text: "login failed for root"}
}

func plainEvent(evID string) *event.Event {
	return &event.Event{
		ID: evID, Seq: 7, Time: Now, ReceivedAt: Now, Type: "auth.login_failed",
		Category: event.CategoryAuthentication, Severity: event.SeverityMedium,
		Source: "sshd", Tenant: "acme", Message: "login failed for root", User: "root",
		SrcIP: "198.51.100.9", Action: "login", Outcome: "failure",
		Data: json.RawMessage(`{"port":22}`),
	}
}

// Test is the message POST /api/v1/outputs/{name}/test sends.
func Test(evID string) outputs.Message {
	ev := plainEvent(evID)
	ev.Type = "system.output_test"
	ev.Category = event.CategorySystem
	ev.Message = "Vigil output test"
	return outputs.Message{Event: ev, Body: ev.JSON(), Text: "Vigil output test", Test: true}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
