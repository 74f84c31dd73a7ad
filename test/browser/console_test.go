// Package browser drives the analyst console in a real headless Chromium
// against a real Vigil node. It skips, saying why, when no Chromium is
// installed (.ci/run installs Debian's chromium). With
// VIGIL_SCREENSHOTS=dir it writes a PNG of each view there (docs/img is
// made that way: VIGIL_SCREENSHOTS=$PWD/docs/img go test ./test/browser/).
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/demo"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testnode"
)

func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium found (install Debian's chromium package; .ci/run does): skipping the console browser tests")
	return ""
}

// browser is one headless Chromium tab with the helpers the tests share.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	chrome := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1360, 820))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(cancelTimeout)
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, b.text("body"))
	}
}

func (b *browser) text(sel string) string {
	s, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	return s
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// waitFor polls a JavaScript condition until it holds or d passes.
func waitFor(expr string, d time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d))
}

// screenshot writes the viewport as <dir>/<name>.png when
// VIGIL_SCREENSHOTS names a directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	b.writeShot(name, chromedp.CaptureScreenshot())
}

// fullScreenshot is screenshot of the whole page, below the fold too.
func (b *browser) fullScreenshot(name string) {
	b.t.Helper()
	b.writeShot(name, chromedp.FullScreenshot(100))
}

func (b *browser) writeShot(name string, capture chromedp.Action[[]byte]) {
	b.t.Helper()
	dir := os.Getenv("VIGIL_SCREENSHOTS")
	if dir == "" {
		return
	}
	shot, err := chromedp.Run(b.ctx, capture)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), shrinkPNG(b.t, shot), 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// shrinkPNG re-encodes a screenshot with a palette of its 256 most
// frequent colours (a UI is mostly flat colours), about a third the size.
func shrinkPNG(t *testing.T, in []byte) []byte {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(in))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	freq := map[color.RGBA]int{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			freq[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	cols := make([]color.RGBA, 0, len(freq))
	for c := range freq {
		cols = append(cols, c)
	}
	sort.Slice(cols, func(i, j int) bool { return freq[cols[i]] > freq[cols[j]] })
	pal := make(color.Palette, 0, 256)
	for _, c := range cols[:min(256, len(cols))] {
		pal = append(pal, c)
	}
	out := image.NewPaletted(bounds, pal)
	near := map[color.RGBA]uint8{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			i, ok := near[c]
			if !ok {
				i = uint8(pal.Index(c))
				near[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, out); err != nil {
		t.Fatalf("encode screenshot: %v", err)
	}
	return buf.Bytes()
}

// signIn opens the console with the token in the URL fragment and waits
// until the live subscription is confirmed.
func (b *browser) signIn(addr, token string) {
	b.t.Helper()
	b.do("sign in",
		chromedp.Navigate("http://"+addr+"/#token="+token),
		waitFor(`document.querySelector("#conn") && document.querySelector("#conn").dataset.state === "live"`, 20*time.Second),
	)
	if loc := b.eval(`location.href`); strings.Contains(loc, token) {
		b.t.Fatalf("the token stayed in the address bar: %s", loc)
	}
}

// start starts a node and a browser and returns the node's address, its
// admin token and a client with it.
func start(t *testing.T) (b *browser, addr, token string, c *client.Client) {
	t.Helper()
	b = newBrowser(t)
	n := testnode.Start(t)
	addr, token = n.Addr(), n.AdminToken()
	c, err := client.New("http://"+addr, token)
	if err != nil {
		t.Fatal(err)
	}
	return b, addr, token, c
}

// mintedToken is a token POST /api/v1/tokens made.
type mintedToken struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// mint makes a token with c (an admin's client).
func mint(t *testing.T, c *client.Client, req map[string]any) mintedToken {
	t.Helper()
	var out mintedToken
	if err := c.Do(context.Background(), "POST", "/api/v1/tokens", req, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func publish(t *testing.T, c *client.Client, evs ...*client.Event) {
	t.Helper()
	if _, err := c.Publish(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func bruteForce(t *testing.T, c *client.Client) {
	t.Helper()
	var burst []*client.Event
	for i := 0; i < 6; i++ {
		burst = append(burst, &client.Event{Type: "authentication.login_failed", User: "mallory@example.com", SrcIP: "203.0.113.9",
			Action: "login_failed", Outcome: "failure", Message: fmt.Sprintf("bad password %d", i)})
	}
	publish(t, c, burst...)
}

// bruteForceRow waits for the brute-force detection's row in the table
// and returns the detection id.
func (b *browser) bruteForceRow() string {
	b.t.Helper()
	const find = `[...document.querySelectorAll("#det-table tbody tr[data-id]")].find(r => r.textContent.includes("Brute Force"))`
	b.do("brute-force detection row", waitFor(find+` !== undefined`, 20*time.Second))
	return b.eval(find + `.dataset.id`)
}

// TestConsoleRefusesWrongToken: a wrong token gets the plain refusal on the
// sign-in form, and the console does not keep retrying it.
func TestConsoleRefusesWrongToken(t *testing.T) {
	b := newBrowser(t)
	n := testnode.Start(t)
	b.do("open with a wrong token",
		chromedp.Navigate("http://"+n.Addr()+"/#token=not-a-valid-token"),
		waitFor(`document.querySelector("#login-error") !== null`, 15*time.Second),
	)
	if got := b.text("#login-error"); !strings.Contains(got, "token refused (401) — check the token") {
		t.Fatalf("refusal text = %q", got)
	}
	b.screenshot("signin-refused")
	// No retry loop: after the refusal no further request checks the token
	// and no WebSocket is opened. Absence can only be checked by waiting a
	// bounded time (longer than the first retry delay of 1 s).
	time.Sleep(2500 * time.Millisecond)
	calls := b.eval(`String(performance.getEntriesByType("resource").filter(e => e.name.includes("/api/")).length)`)
	if calls != "1" {
		t.Fatalf("after the refusal the console made %s API requests, want exactly the one that was refused", calls)
	}
	if b.eval(`String(document.querySelector("#token") !== null)`) != "true" {
		t.Fatal("the sign-in form is not shown after the refusal")
	}
}

// TestConsoleDetectionWorkflow: a brute-force burst appears as a detection
// row; its page shows the contributing events and the history; status and
// assignee changes persist (checked over REST); the ATT&CK matrix shows
// T1110.
func TestConsoleDetectionWorkflow(t *testing.T) {
	b, addr, token, c := start(t)
	b.signIn(addr, token)

	bruteForce(t, c)
	id := b.bruteForceRow()
	row := fmt.Sprintf(`#det-table tbody tr[data-id=%q]`, id)

	var det struct {
		ID       string   `json:"id"`
		Status   string   `json:"status"`
		Assignee string   `json:"assignee"`
		EventIDs []string `json:"event_ids"`
	}
	get := func() {
		t.Helper()
		if err := c.Do(context.Background(), "GET", "/api/v1/detections/"+id, nil, &det); err != nil {
			t.Fatal(err)
		}
	}
	get()
	if len(det.EventIDs) == 0 {
		t.Fatalf("detection %s has no event ids", id)
	}

	// Open it: the detail page lists every contributing event by id.
	b.do("open the detection",
		chromedp.Click(chromedp.CSS(row+" td.title a")),
		waitFor(`document.querySelector("#detail") !== null`, 10*time.Second),
		waitFor(fmt.Sprintf(`document.querySelectorAll("#d-events tr[data-event-id]").length >= %d`, len(det.EventIDs)), 15*time.Second),
	)
	if loc := b.eval(`location.hash`); loc != "#/detections/"+id {
		t.Fatalf("detail URL = %q, want #/detections/%s", loc, id)
	}
	shown := b.text("#d-events")
	for _, eid := range det.EventIDs {
		if !strings.Contains(shown, eid) {
			t.Fatalf("contributing event %s not shown:\n%s", eid, shown)
		}
	}
	if got := b.text("#d-techniques"); !strings.Contains(got, "T1110") || !strings.Contains(got, "Brute Force") {
		t.Fatalf("techniques = %q, want T1110 with its name", got)
	}

	// Change status and assignee from the page; both reach the server and
	// the history on the page.
	b.do("set status investigating",
		chromedp.Click(chromedp.CSS(`#d-status-actions button[data-status="investigating"]`)),
		waitFor(`document.querySelector("#detail .detail-head .status").textContent.includes("investigating")`, 10*time.Second),
	)
	b.do("assign",
		chromedp.SendKeys(chromedp.CSS("#d-assignee"), "carol"),
		chromedp.Click(chromedp.CSS("#d-assignee-save")),
		waitFor(`document.querySelector("#d-history").textContent.includes("carol")`, 10*time.Second),
	)
	get()
	if det.Status != "investigating" || det.Assignee != "carol" {
		t.Fatalf("over REST: status %q assignee %q, want investigating and carol", det.Status, det.Assignee)
	}
	hist := b.text("#d-history")
	for _, want := range []string{"status", "investigating", "assignee", "carol"} {
		if !strings.Contains(hist, want) {
			t.Fatalf("history lacks %q:\n%s", want, hist)
		}
	}
	if b.eval(`String(document.querySelectorAll('#d-status-actions button[data-status="reopen"]').length)`) != "0" {
		t.Fatal("an open detection offers reopen")
	}
	b.do("open a contributing event",
		chromedp.Click(chromedp.CSS(`#d-events tr[data-event-id]`)),
		waitFor(`document.querySelector("#event-json") !== null`, 5*time.Second),
	)
	b.do("close it", chromedp.Click(chromedp.CSS("#flyout-close")))

	// Overview: the ATT&CK matrix has a T1110 cell; clicking it filters
	// the table to the detections carrying it.
	b.do("overview",
		chromedp.Navigate("http://"+addr+"/#/overview"),
		waitFor(`document.querySelector('#attack .mcell[data-technique="T1110"]') !== null`, 15*time.Second),
		waitFor(`document.querySelector("#total-count") && Number(document.querySelector("#total-count").textContent) >= 6`, 15*time.Second),
		waitFor(`document.querySelector("#rate-chart .uplot") !== null`, 10*time.Second),
	)
	b.do("matrix click filters",
		chromedp.Click(chromedp.CSS(`#attack .mcell[data-technique="T1110"]`)),
		waitFor(`location.hash === "#/detections" && document.querySelector("#det-technique-chip") !== null`, 10*time.Second),
		waitFor(fmt.Sprintf(`document.querySelector('#det-table tr[data-id=%q]') !== null`, id), 10*time.Second),
	)
	// Bulk actions on a selection: assign, then resolve; both persist.
	// (a bulk action that succeeded clears the selection)
	selectRow := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).click()`, row+" td.cb input"))
	b.do("bulk assign",
		selectRow,
		waitFor(`document.querySelector("#bulk") !== null`, 5*time.Second),
		chromedp.SendKeys(chromedp.CSS("#bulk-assignee"), "dave"),
		chromedp.Click(chromedp.CSS("#bulk-assign")),
		waitFor(fmt.Sprintf(`document.querySelector(%q).textContent.includes("dave") && document.querySelector("#bulk") === null`, row), 10*time.Second),
	)
	b.do("bulk resolve",
		selectRow,
		waitFor(`document.querySelector('#bulk button[data-bulk-status="resolved"]') !== null`, 5*time.Second),
		chromedp.Click(chromedp.CSS(`#bulk button[data-bulk-status="resolved"]`)),
		waitFor(fmt.Sprintf(`document.querySelector(%q).dataset.status === "resolved"`, row), 10*time.Second),
	)
	get()
	if det.Status != "resolved" || det.Assignee != "dave" {
		t.Fatalf("after the bulk actions, over REST: status %q assignee %q, want resolved and dave", det.Status, det.Assignee)
	}
	// Nothing went wrong on the way: no API error and no CSP violation
	// (the console reports both in its error bar).
	if errs := b.eval(`document.querySelector("#errors") ? document.querySelector("#errors").textContent : ""`); errs != "" {
		t.Fatalf("the console reported errors: %s", errs)
	}
}

// TestConsoleLiveEvents: events arrive, a row opens the full event, and a
// filter that does not compile shows its column and keeps the previous
// filter's stream flowing.
func TestConsoleLiveEvents(t *testing.T) {
	b, addr, token, c := start(t)
	b.signIn(addr, token)
	b.do("events view", chromedp.Navigate("http://"+addr+"/#/events"), waitFor(`document.querySelector("#filter-form") !== null`, 5*time.Second))

	// A good filter first: only authentication events.
	b.do("apply category filter",
		chromedp.SetValue(chromedp.CSS("#f-categories"), "authentication"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-categories").dispatchEvent(new Event("change", {bubbles: true}))`),
		chromedp.Click(chromedp.CSS(`#filter-form button[type="submit"]`)),
		waitFor(`document.querySelector('#chips .chip[data-key="categories"]') !== null`, 10*time.Second),
	)
	publish(t, c,
		&client.Event{Type: "authentication.login", User: "alice@example.com", Action: "login", Outcome: "success", Message: "first login"},
		&client.Event{Type: "audit.query", Message: "routine read"})
	b.do("first event", waitFor(`document.querySelector("#events").textContent.includes("first login")`, 10*time.Second))

	// A bad CEL filter: the error names the column, the old filter stays.
	b.do("bad filter",
		chromedp.SendKeys(chromedp.CSS("#f-expr"), "risk_score >"),
		chromedp.Click(chromedp.CSS(`#filter-form button[type="submit"]`)),
		waitFor(`document.querySelector("#filter-error") !== null`, 10*time.Second),
	)
	if got := b.text("#filter-error"); !strings.Contains(got, "column 13") || strings.Contains(got, "NUM_FLOAT") {
		t.Fatalf("filter error = %q, want the column and no parser dump", got)
	}
	publish(t, c,
		&client.Event{Type: "authentication.login", User: "bob@example.com", Action: "login", Outcome: "success", Message: "second login"},
		&client.Event{Type: "audit.query", Message: "another routine read"})
	b.do("old stream still flowing", waitFor(`document.querySelector("#events").textContent.includes("second login")`, 10*time.Second))
	if got := b.text("#events"); strings.Contains(got, "routine read") {
		t.Fatalf("an audit event passed the authentication filter:\n%s", got)
	}
	if got := b.text("#chips"); !strings.Contains(got, "category: authentication") || strings.Contains(got, "cel:") {
		t.Fatalf("chips = %q, want the old filter only", got)
	}

	// Pause holds new rows back; resume shows them.
	b.do("pause", chromedp.Click(chromedp.CSS("#ev-pause")), waitFor(`document.querySelector("#ev-pending") !== null`, 5*time.Second))
	publish(t, c, &client.Event{Type: "authentication.login", User: "dave@example.com", Action: "login", Outcome: "success", Message: "while paused"})
	b.do("held", waitFor(`document.querySelector("#ev-pending").textContent.startsWith("1 ")`, 10*time.Second))
	if strings.Contains(b.text("#events"), "while paused") {
		t.Fatal("a row was added while paused")
	}
	b.do("resume", chromedp.Click(chromedp.CSS("#ev-pause")), waitFor(`document.querySelector("#events").textContent.includes("while paused")`, 5*time.Second))

	// Removing the filter chip starts a new stream and clears the table.
	b.do("remove chip",
		chromedp.Click(chromedp.CSS(`#chips .chip[data-key="categories"] button`)),
		waitFor(`document.querySelector('#chips .chip') === null && document.querySelectorAll("#events tr").length === 0`, 10*time.Second),
	)
	publish(t, c, &client.Event{Type: "audit.query", Message: "unfiltered now"})
	b.do("new stream", waitFor(`document.querySelector("#events").textContent.includes("unfiltered now")`, 10*time.Second))

	// A row opens the full event.
	b.do("open event",
		chromedp.Click(chromedp.CSS("#events tr")),
		waitFor(`document.querySelector("#event-json") !== null`, 5*time.Second),
	)
	var ev map[string]any
	if err := json.Unmarshal([]byte(b.text("#event-json")), &ev); err != nil || ev["id"] == nil {
		t.Fatalf("event JSON not shown: %v", err)
	}
}

// TestConsoleViewer: a viewer token sees the detection but no status or
// edit controls, and no bulk selection.
func TestConsoleViewer(t *testing.T) {
	b, addr, _, c := start(t)
	minted := mint(t, c, map[string]any{"name": "soc-viewer", "role": "viewer"})
	bruteForce(t, c)
	b.signIn(addr, minted.Token)
	row := fmt.Sprintf(`#det-table tbody tr[data-id=%q]`, b.bruteForceRow())
	if got := b.text("#who"); !strings.Contains(got, "viewer") {
		t.Fatalf("top bar = %q, want the viewer role", got)
	}
	if b.eval(`String(document.querySelectorAll("#det-table input[type=checkbox]").length)`) != "0" {
		t.Fatal("a viewer gets bulk-selection checkboxes")
	}
	b.do("open", chromedp.Click(chromedp.CSS(row+" td.title a")), waitFor(`document.querySelector("#detail") !== null`, 10*time.Second))
	if b.eval(`String(document.querySelector("#d-status-actions") === null && document.querySelector("input#d-assignee") === null)`) != "true" {
		t.Fatal("a viewer is offered status or assignee controls")
	}
	// The contributing events come masked from the server (SPEC 9: a
	// viewer sees e-mail and IPs masked) and the console shows them so.
	b.do("viewer's events", waitFor(`document.querySelectorAll("#d-events tr[data-event-id]").length >= 5`, 15*time.Second))
	if got := b.text("#d-events"); strings.Contains(got, "mallory@example.com") || strings.Contains(got, "203.0.113.9") {
		t.Fatalf("a viewer sees unmasked event fields:\n%s", got)
	}
}

// TestConsoleScreenshots makes the pictures in docs/console.md: a node fed
// with `vigil demo` traffic, each view captured. It runs only when
// VIGIL_SCREENSHOTS names the output directory.
func TestConsoleScreenshots(t *testing.T) {
	if os.Getenv("VIGIL_SCREENSHOTS") == "" {
		t.Skip("set VIGIL_SCREENSHOTS=dir to write the console's screenshots")
	}
	b, addr, token, c := start(t)
	gen := demo.New(7)
	for batch := 0; batch < 6; batch++ {
		evs := make([]*client.Event, 500)
		for i := range evs {
			ev := gen.Next()
			demo.Stamp(ev, time.Now())
			evs[i] = testenv.ClientEvent(ev)
		}
		publish(t, c, evs...)
	}
	bruteForce(t, c)
	b.signIn(addr, token)
	id := b.bruteForceRow()
	b.do("several detections", waitFor(`document.querySelectorAll("#det-table tbody tr").length >= 5`, 20*time.Second))
	b.screenshot("detections")
	b.do("detail",
		chromedp.Navigate("http://"+addr+"/#/detections/"+id),
		waitFor(`document.querySelectorAll("#d-events tr[data-event-id]").length >= 5`, 15*time.Second),
		chromedp.SendKeys(chromedp.CSS("#d-assignee"), "carol"),
		chromedp.Click(chromedp.CSS("#d-assignee-save")),
		waitFor(`document.querySelector("#d-history").textContent.includes("carol")`, 10*time.Second),
		chromedp.Click(chromedp.CSS(`#d-status-actions button[data-status="investigating"]`)),
		waitFor(`document.querySelector("#d-history").textContent.includes("investigating")`, 10*time.Second),
	)
	b.screenshot("detection-detail")
	b.do("overview",
		chromedp.Navigate("http://"+addr+"/#/overview"),
		waitFor(`document.querySelector('#attack .mcell[data-technique="T1110"]') !== null && document.querySelector("#rate-chart .uplot") !== null`, 15*time.Second),
	)
	b.fullScreenshot("overview")
	b.do("events",
		chromedp.Navigate("http://"+addr+"/#/events"),
		waitFor(`document.querySelector("#filter-form") !== null`, 5*time.Second),
	)
	traffic := make(chan struct{})
	go func() { // live traffic while the events view is open; waited for below
		defer close(traffic)
		for i := 0; i < 20; i++ {
			evs := []*client.Event{testenv.ClientEvent(gen.Next()), testenv.ClientEvent(gen.Next()), testenv.ClientEvent(gen.Next())}
			for _, e := range evs {
				e.Time = time.Now() // what demo.Stamp does, on the client's type
			}
			if _, err := c.Publish(context.Background(), evs); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	b.do("rows", waitFor(`document.querySelectorAll("#events tr").length >= 40`, 15*time.Second))
	<-traffic
	b.screenshot("events")
	b.do("bad filter",
		chromedp.SendKeys(chromedp.CSS("#f-expr"), `risk_score > 70 && user ==`),
		chromedp.Click(chromedp.CSS(`#filter-form button[type="submit"]`)),
		waitFor(`document.querySelector("#filter-error") !== null`, 10*time.Second),
	)
	b.screenshot("events-bad-filter")
	b.do("open event", chromedp.Click(chromedp.CSS("#events tr")), waitFor(`document.querySelector("#event-json") !== null`, 5*time.Second))
	b.screenshot("event-detail")
}

// TestGraphiQL: a browser asking GET /graphql for HTML gets the bundled
// GraphiQL; with the console's token it runs a query and a subscription
// (graphql-ws) that delivers an event published afterwards.
func TestGraphiQL(t *testing.T) {
	b, addr, token, c := start(t)
	publish(t, c, &client.Event{Type: "authentication.login", User: "alice@example.com", Action: "login", Outcome: "success", Message: "before graphiql"})
	setQuery := func(q string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue(%q)`, q))
	}
	b.do("open GraphiQL",
		chromedp.Navigate("http://"+addr+"/graphql#token="+token),
		waitFor(`document.querySelector(".graphiql-query-editor .CodeMirror") !== null`, 20*time.Second),
	)
	if loc := b.eval(`location.href`); strings.Contains(loc, token) {
		t.Fatalf("the token stayed in the address bar: %s", loc)
	}
	b.do("run a query",
		setQuery(`{ events(limit: 5) { events { message } } }`),
		chromedp.Click(chromedp.CSS(".graphiql-execute-button")),
		waitFor(`document.querySelector(".graphiql-response").textContent.includes("before graphiql")`, 15*time.Second),
	)
	b.do("start a subscription",
		setQuery(`subscription { events(filter: {types: ["authentication.login"]}) { seq message } }`),
		chromedp.Click(chromedp.CSS(".graphiql-execute-button")),
		waitFor(`document.querySelector(".graphiql-execute-button") && document.querySelector(".graphiql-execute-button").getAttribute("aria-label").toLowerCase().includes("stop")`, 10*time.Second),
	)
	// The subscription is live once the server counts it; then publish.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st struct {
			ConnectedClients int `json:"connected_clients"`
		}
		if err := c.Do(context.Background(), "GET", "/api/v1/status", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.ConnectedClients > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GraphiQL subscription never connected")
		}
		time.Sleep(50 * time.Millisecond)
	}
	publish(t, c, &client.Event{Type: "authentication.login", User: "bob@example.com", Action: "login", Outcome: "success", Message: "live through graphql-ws"})
	b.do("subscription delivers", waitFor(`document.querySelector(".graphiql-response").textContent.includes("live through graphql-ws")`, 15*time.Second))
	b.screenshot("graphiql")
}

// TestConsoleTenantToken: a tenant-scoped token sees its tenant's
// detections only, and the top bar says which tenant it is.
func TestConsoleTenantToken(t *testing.T) {
	b, addr, _, admin := start(t)
	tenantToken := func(role, tenant string) string {
		return mint(t, admin, map[string]any{"name": tenant + "-" + role, "role": role, "tenant": tenant}).Token
	}
	acmePub, err := client.New("http://"+addr, tenantToken("publisher", "acme"))
	if err != nil {
		t.Fatal(err)
	}
	bruteForce(t, admin)   // default tenant
	bruteForce(t, acmePub) // tenant acme
	var all struct {
		Count int `json:"count"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for all.Count < 2 { // both detections exist before the analyst looks
		if time.Now().After(deadline) {
			t.Fatalf("want 2 detections, have %d", all.Count)
		}
		time.Sleep(50 * time.Millisecond)
		if err := admin.Do(context.Background(), "GET", "/api/v1/detections", nil, &all); err != nil {
			t.Fatal(err)
		}
	}
	b.signIn(addr, tenantToken("analyst", "acme"))
	b.bruteForceRow()
	if got := b.text("#who"); !strings.Contains(got, "tenant acme") {
		t.Fatalf("top bar = %q, want tenant acme", got)
	}
	if rows := b.eval(`String(document.querySelectorAll("#det-table tbody tr[data-id]").length)`); rows != "1" {
		t.Fatalf("the acme analyst sees %s detections, want its own 1:\n%s", rows, b.text("#det-table"))
	}
}

// TestConsoleRevokedToken: a token revoked while the console is open ends
// the session with the plain refusal instead of a reconnect loop.
func TestConsoleRevokedToken(t *testing.T) {
	b, addr, _, admin := start(t)
	minted := mint(t, admin, map[string]any{"name": "soon-revoked", "role": "analyst"})
	b.signIn(addr, minted.Token)
	if err := admin.Do(context.Background(), "DELETE", "/api/v1/tokens/"+minted.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	b.do("refusal after revocation", waitFor(`document.querySelector("#login-error") !== null`, 20*time.Second))
	if got := b.text("#login-error"); !strings.Contains(got, "token refused (401)") {
		t.Fatalf("after revocation the console says %q", got)
	}
}
