// Package browser drives the web dashboard in a real headless Chromium
// against a real Vigil node. It skips, saying why, when no Chromium is
// installed (.ci/run installs Debian's chromium).
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/testnode"
)

func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium found (install Debian's chromium package; .ci/run does): skipping the dashboard browser test")
	return ""
}

func TestDashboard(t *testing.T) {
	chrome := findChromium(t)
	n := testnode.Start(t)
	addr, token := n.Addr(), n.AdminToken()
	c, err := client.New("http://"+addr, token)
	if err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	do := func(steps ...chromedp.Action[chromedp.Void]) error { return chromedp.Do(ctx, steps...) }
	text := func(sel string) string {
		s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return s
	}
	poll := func(expr string, d time.Duration) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d))
	}

	if err := do(
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login button")),
		poll(`document.querySelector("#status").textContent === "live"`, 15*time.Second),
	); err != nil {
		t.Fatalf("log in: %v (status %q)", err, text("#status"))
	}
	time.Sleep(300 * time.Millisecond) // the subscribe message is sent on open

	publish := func(evs ...*client.Event) {
		t.Helper()
		if _, err := c.Publish(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	publish(
		&client.Event{Type: "authentication.login", User: "alice@example.com", Action: "login", Outcome: "success", Message: "hello from the browser test"},
		&client.Event{Type: "security.fraud.alert", Message: "card testing"},
		&client.Event{Type: "memory.buffer_overflow_detected", Message: "overflow"},
	)
	if err := do(poll(`document.querySelectorAll("#events tr[data-seq]").length >= 3`, 15*time.Second)); err != nil {
		t.Fatalf("live events did not appear: %v", err)
	}
	if table := text("#events"); !strings.Contains(table, "hello from the browser test") || !strings.Contains(table, "security.fraud.alert") {
		t.Fatalf("event table lacks the published events:\n%s", table)
	}

	// A bad filter shows the server's error naming the field.
	if err := do(
		chromedp.SendKeys(chromedp.CSS("#f-expr"), "risk_score >"),
		chromedp.Click(chromedp.CSS("#filter-form button")),
		poll(`document.querySelector("#filter-error").textContent.includes("expr")`, 10*time.Second),
	); err != nil {
		t.Fatalf("bad filter error not shown: %v (%q)", err, text("#filter-error"))
	}

	// A good filter: only critical events arrive after it.
	if err := do(
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-expr").value = ""; document.querySelector("#f-min-severity").value = "critical"`),
		chromedp.Click(chromedp.CSS("#filter-form button")),
		poll(`document.querySelector("#filter-error").textContent === ""`, 10*time.Second),
	); err != nil {
		t.Fatalf("apply filter: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	publish(&client.Event{Type: "audit.query", Message: "routine read"},
		&client.Event{Type: "encryption.key_rotation_failed", Severity: 4, Message: "rotation failed: HSM down"})
	if err := do(poll(`document.querySelector("#events tr").textContent.includes("rotation failed")`, 10*time.Second)); err != nil {
		t.Fatalf("filtered event did not arrive: %v", err)
	}
	if table := text("#events"); strings.Contains(table, "routine read") {
		t.Fatalf("a non-critical event passed the critical filter:\n%s", table)
	}

	// Detections: failed logins for one user fire the built-in brute-force
	// rule; the card appears on the board and moves when clicked.
	var burst []*client.Event
	for i := 0; i < 6; i++ {
		burst = append(burst, &client.Event{Type: "authentication.login_failed", User: "mallory@example.com", SrcIP: "203.0.113.9", Action: "login_failed", Outcome: "failure"})
	}
	publish(burst...)
	sel := `#detections .column[data-status="active"] li`
	if err := do(
		poll(fmt.Sprintf(`document.querySelector(%q) !== null`, sel), 20*time.Second),
		chromedp.Click(chromedp.CSS(sel+` button[data-action="investigating"]`)),
		poll(`document.querySelector('#detections .column[data-status="investigating"] li') !== null`, 10*time.Second),
	); err != nil {
		t.Fatalf("detection board: %v (%s)", err, text("#detection-error"))
	}

	// Issue 13: the ATT&CK matrix shows the brute-force technique as fired.
	if err := do(poll(`document.querySelector('#attack-matrix [data-tactic="TA0006"] .tech.fired[data-id="T1110.001"]') !== null`, 10*time.Second)); err != nil {
		t.Fatalf("ATT&CK matrix: %v (%s)", err, text("#attack-error"))
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if out := os.Getenv("VIGIL_SCREENSHOT"); out != "" {
		_ = os.WriteFile(out, png, 0o644)
	}
}
