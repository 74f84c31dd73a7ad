package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/filter"
)

// filterFlags maps --flag names onto the filter's query form, so the CLI
// and the SSE/history query strings share one parser (filter.FromQuery).
var filterFlagNames = []string{
	"categories", "types", "min-severity", "severities", "users", "user-ids", "src-ips",
	"resources", "actions", "outcomes", "sources", "mitre-tactics", "mitre-techniques",
	"statuses", "min-confidence", "expr",
}

func registerFilterFlags(fs *flag.FlagSet) map[string]*string {
	vals := map[string]*string{}
	for _, name := range filterFlagNames {
		vals[name] = fs.String(name, "", "filter: "+strings.ReplaceAll(name, "-", "_")+" (comma-separated lists)")
	}
	return vals
}

// filterFromFlags returns the filter and its query form (for the history
// API, which takes the same parameters).
func filterFromFlags(vals map[string]*string) (client.Filter, url.Values, error) {
	q := url.Values{}
	for name, v := range vals {
		if *v != "" {
			q.Set(strings.ReplaceAll(name, "-", "_"), *v)
		}
	}
	f, err := filter.FromQuery(q)
	if err != nil {
		return toClientFilter(f), q, err
	}
	_, err = filter.Compile(f) // report a bad filter before connecting
	return toClientFilter(f), q, err
}

// maxTail is the history API's page limit (SPEC 5: limit max 10,000).
const maxTail = 10000

func runTail(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	filters := registerFilterFlags(fs)
	from := fs.Uint64("from", 0, "replay from this seq, then continue live")
	since := fs.String("since", "", "replay events logged since `DURATION|TIME` (10m: the last ten minutes; or an RFC 3339 time), then continue live")
	tailN := fs.Int("tail", -1, "replay the last `N` matching events (with --since: the last N since then), then continue live; -1: none")
	retry := fs.Bool("retry", false, "keep retrying when the first connection fails (default: give up; after a connection was up it always reconnects)")
	asJSON := fs.Bool("json", false, "print raw JSON events, one per line")
	noColor := fs.Bool("no-color", false, "never colour output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tail: unexpected argument %q (filters are flags, e.g. --users alice)", fs.Arg(0))
	}
	f, q, err := filterFromFlags(filters)
	if err != nil {
		return err
	}
	var sinceT time.Time
	if *since != "" {
		if sinceT, err = parseSince(*since, time.Now()); err != nil {
			return err
		}
	}
	switch {
	case *from > 0 && (*since != "" || *tailN >= 0):
		return errors.New("tail: --from replays from a seq; it does not combine with --since or --tail")
	case *tailN > maxTail:
		return fmt.Errorf("tail: --tail %d: at most %d", *tailN, maxTail)
	case *tailN < -1:
		return fmt.Errorf("tail: --tail %d: must be 0 or more", *tailN)
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	start := client.Cursor{Seq: *from, Time: sinceT}
	if *tailN >= 0 {
		if start, err = tailStart(ctx, c, q, *tailN, sinceT); err != nil {
			// The history request failed (a refused token, no server), not
			// the flag: say what was being done.
			return fmt.Errorf("tail: reading the last %d matching events: %w", *tailN, err)
		}
	}
	color := !*noColor && !*asJSON && isTerminal(e.stdout)
	// Without --retry, a first connection that fails ends tail with its
	// error (a wrong --server should not look like a quiet stream).
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var connected bool
	var firstErr error
	opts := client.SubscribeOptions{Filter: f, From: start,
		OnState: func(up bool, err error) {
			if up {
				connected = true
				return
			}
			if !connected && !*retry {
				firstErr = err
				cancel()
				return
			}
			e.warnf("vigil tail: disconnected (%v); reconnecting\n", err)
		}}
	err = c.Subscribe(subCtx, opts, func(ev *client.Event) error {
		if *asJSON {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", b)
			return err
		}
		_, err := io.WriteString(e.stdout, formatLine(ev, color)+"\n")
		return err
	})
	if firstErr != nil {
		return fmt.Errorf("tail: %w", firstErr)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// parseSince reads --since: a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("tail: --since %s: give a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("tail: --since %q: want a duration (10m, 2h) or an RFC 3339 time (2026-11-30T10:00:00Z)", s)
	}
	return t, nil
}

// tailStart finds where the last n matching events (since since, if set)
// begin, with the history API, so the subscription replays them and then
// continues live with no gap: the newest n, newest first; start at the
// oldest of them. Fewer than n means there are no more matching events
// before them: replay from since (or the start of the log). n = 0 means
// live only: start after the newest event visible now.
func tailStart(ctx context.Context, c *client.Client, q url.Values, n int, since time.Time) (client.Cursor, error) {
	hq := url.Values{}
	for k, v := range q {
		hq[k] = v
	}
	if !since.IsZero() {
		hq.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if n == 0 {
		// Live only; "latest" is what the stream does by itself.
		return client.Cursor{}, nil
	}
	hq.Set("limit", strconv.Itoa(n))
	events, _, err := c.History(ctx, hq)
	if err != nil {
		return client.Cursor{}, err
	}
	if len(events) < n {
		if !since.IsZero() {
			return client.Cursor{Time: since}, nil
		}
		return client.Cursor{Seq: 1}, nil
	}
	oldest := events[0].Seq
	for _, ev := range events {
		oldest = min(oldest, ev.Seq)
	}
	return client.Cursor{Seq: oldest}, nil
}

var severityColor = map[client.Severity]string{
	client.SeverityInfo: "\x1b[37m", client.SeverityLow: "\x1b[36m", client.SeverityMedium: "\x1b[33m",
	client.SeverityHigh: "\x1b[31m", client.SeverityCritical: "\x1b[1;41;97m",
}

// formatLine renders one event for people: time, severity, category, type
// and the fields an analyst scans for.
func formatLine(ev *client.Event, color bool) string {
	var b strings.Builder
	sev := strings.ToUpper(ev.Severity.String())
	if color {
		sev = severityColor[ev.Severity] + fmt.Sprintf("%-8s", sev) + "\x1b[0m"
	} else {
		sev = fmt.Sprintf("%-8s", sev)
	}
	fmt.Fprintf(&b, "%6d %s %s %-15s %s", ev.Seq, ev.Time.UTC().Format(time.RFC3339), sev, ev.Category, ev.Type)
	for _, kv := range [][2]string{{"user", ev.User}, {"src_ip", ev.SrcIP}, {"resource", ev.Resource}, {"action", ev.Action}, {"outcome", ev.Outcome}, {"source", ev.Source}, {"tenant", ev.Tenant}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if ev.Message != "" {
		fmt.Fprintf(&b, " %q", ev.Message)
	}
	return b.String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
