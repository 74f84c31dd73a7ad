package main

// `vigil inputs`: offline tools for the log inputs (issue 9). `inputs test`
// runs a mapping file over log lines with the same loader and mappers as
// the server, without a server, and shows what each line becomes.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/inputs"
	"github.com/vigil-sec/vigil/internal/inputs/mapping"
)

// inputsCommands are `vigil inputs` subcommands.
func inputsCommands() []command {
	return []command{
		{name: "test", summary: "run a mapping file over log lines and show what each becomes", args: "[flags] MAPPINGS LINES",
			about:   "Shows, for each line of LINES ('-' for stdin), which mapping of the MAPPINGS file matched\n(or \"unparsed\") and the resulting event as JSON. A line may start with a syslog header\n(\"<PRI>\", \"Mmm dd hh:mm:ss\", host, \"tag[pid]:\", as in /var/log/auth.log); the rest is the message text.",
			example: "vigil inputs test my-mappings.yml /var/log/auth.log", run: runInputsTest},
	}
}

func runInputsTest(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	appName := fs.String("app-name", "", "app name (syslog TAG) of lines whose header names none")
	hostname := fs.String("hostname", "", "hostname of lines whose header names none")
	input := fs.String("input", "syslog", "input name the mappings see (their input: condition)")
	raw := fs.Bool("raw", false, "take each line as the message text (do not read a <PRI>/BSD syslog header)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("inputs test: need a mappings file and a file of lines")
	}
	set, err := mapping.Load(fs.Arg(0))
	if err != nil {
		var le *mapping.Error
		if errors.As(err, &le) {
			for _, p := range le.Problems {
				e.warnf("error: %s\n", p)
			}
			return fmt.Errorf("inputs test: %d problem(s) in %s", len(le.Problems), fs.Arg(0))
		}
		return err
	}
	if set == nil {
		return errors.New("inputs test: the mappings file name is empty")
	}
	var in io.Reader = e.stdin
	if p := fs.Arg(1); p != "-" {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("inputs test: %w", err)
		}
		defer func() { _ = f.Close() }() // read-only: closing cannot lose data
		in = f
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	lim := event.DefaultLimits()
	line, total, mapped := 0, 0, 0
	for sc.Scan() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		total++
		msg := &inputs.Message{Input: *input, Facility: -1, Severity: -1, Text: text}
		if !*raw {
			parseBSDHeader(msg, time.Now())
		}
		if msg.AppName == "" {
			msg.AppName = *appName
		}
		if msg.Hostname == "" {
			msg.Hostname = *hostname
		}
		name := "unparsed"
		// The chain the server runs (so source, time and the unparsed
		// fallback are the server's), told which mapping took the line.
		chain := make(inputs.Chain, 0, len(set.Mappings))
		for _, m := range set.Mappings {
			chain = append(chain, inputs.MapperFunc(func(msg *inputs.Message) (*event.Event, bool) {
				ev, ok := m.Map(msg)
				if ok {
					name = "mapping " + m.Name
				}
				return ev, ok
			}))
		}
		ev := chain.Map(msg)
		if name != "unparsed" {
			mapped++
		}
		if _, err := event.Normalize(ev, auth.DefaultTenant, time.Now(), lim); err != nil {
			e.printf("line %d: %s: invalid event: %v\n", line, name, err)
			continue
		}
		e.printf("line %d: %s\n%s\n", line, name, ev.JSON())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("inputs test: reading lines: %w", err)
	}
	e.printf("%d line(s), %d mapped, %d unparsed, %d mapping(s) loaded\n", total, mapped, total-mapped, len(set.Mappings))
	return nil
}

// parseBSDHeader reads an optional RFC 3164 header off msg.Text: "<PRI>",
// a "Mmm dd hh:mm:ss" timestamp, then the hostname and a "tag[pid]:"
// when a timestamp was there (the /var/log/auth.log form). It is a
// convenience for testing mappings; the syslog listener has its own
// parser. A line without a header is left as it is.
func parseBSDHeader(msg *inputs.Message, now time.Time) {
	s := msg.Text
	if strings.HasPrefix(s, "<") {
		if end := strings.IndexByte(s, '>'); end > 1 && end <= 4 {
			if pri, err := strconv.Atoi(s[1:end]); err == nil && pri >= 0 && pri <= 191 {
				msg.Facility, msg.Severity = pri/8, pri%8
				s = s[end+1:]
			}
		}
	}
	if len(s) < 16 || s[15] != ' ' {
		msg.Text = s
		return
	}
	ts, err := time.Parse(time.Stamp, strings.Replace(s[:15], "  ", " 0", 1))
	if err != nil {
		msg.Text = s
		return
	}
	// RFC 3164 has no year: this year, or last year for a date ahead.
	t := time.Date(now.Year(), ts.Month(), ts.Day(), ts.Hour(), ts.Minute(), ts.Second(), 0, time.Local)
	if t.After(now.Add(24 * time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	msg.Time = t
	host, rest, ok := strings.Cut(s[16:], " ")
	if !ok {
		msg.Text = s[16:]
		return
	}
	msg.Hostname = host
	if tag, body, ok := strings.Cut(rest, ": "); ok && tag != "" && !strings.ContainsAny(tag, " ") {
		if i := strings.IndexByte(tag, '['); i > 0 && strings.HasSuffix(tag, "]") {
			msg.ProcID = tag[i+1 : len(tag)-1]
			tag = tag[:i]
		}
		msg.AppName = tag
		rest = body
	}
	msg.Text = rest
}
