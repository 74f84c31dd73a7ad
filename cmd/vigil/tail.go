package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/event"
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

func filterFromFlags(vals map[string]*string) (client.Filter, error) {
	q := url.Values{}
	for name, v := range vals {
		if *v != "" {
			q.Set(strings.ReplaceAll(name, "-", "_"), *v)
		}
	}
	f, err := filter.FromQuery(q)
	if err != nil {
		return f, err
	}
	_, err = filter.Compile(f) // report a bad filter before connecting
	return f, err
}

func runTail(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil tail", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var rf remoteFlags
	rf.register(fs)
	filters := registerFilterFlags(fs)
	from := fs.Uint64("from", 0, "replay from this seq, then continue live")
	asJSON := fs.Bool("json", false, "print raw JSON events, one per line")
	noColor := fs.Bool("no-color", false, "never colour output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := filterFromFlags(filters)
	if err != nil {
		return err
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	color := !*noColor && !*asJSON && isTerminal(e.stdout)
	opts := client.SubscribeOptions{Filter: f, From: client.Cursor{Seq: *from},
		OnState: func(connected bool, err error) {
			if !connected {
				fmt.Fprintf(e.stderr, "vigil tail: disconnected (%v); reconnecting\n", err)
			}
		}}
	err = c.Subscribe(ctx, opts, func(ev *client.Event) error {
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
	if ctx.Err() != nil {
		return nil
	}
	return err
}

var severityColor = map[event.Severity]string{
	event.SeverityInfo: "\x1b[37m", event.SeverityLow: "\x1b[36m", event.SeverityMedium: "\x1b[33m",
	event.SeverityHigh: "\x1b[31m", event.SeverityCritical: "\x1b[1;41;97m",
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
