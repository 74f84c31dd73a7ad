package main

// `vigil rules`: offline tools for detection rule authors (issue 3). They
// run the same loader and evaluator as the server, without a server.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

func runRules(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: vigil rules test [--builtins] RULES EVENTS.ndjson\n       vigil rules check [--builtins] RULES...")
		return errors.New("rules: missing subcommand (test, check)")
	}
	switch args[0] {
	case "test":
		return runRulesTest(ctx, e, args[1:])
	case "check":
		return runRulesCheck(e, args[1:])
	}
	return fmt.Errorf("rules: unknown subcommand %q (valid: test, check)", args[0])
}

// loadRuleArgs loads rule files and directories given on the command line.
func loadRuleArgs(paths []string, builtins bool, cf *compileFlags) (*detect.RuleSet, error) {
	opts := detect.LoadOptions{NoBuiltins: !builtins}
	cf.apply(&opts)
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		if st.IsDir() {
			if opts.Dir != "" {
				return nil, errors.New("rules: give at most one rule directory")
			}
			opts.Dir = p
			continue
		}
		files = append(files, p)
	}
	opts.Files = files
	rs, err := detect.LoadRules(opts)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

func printRuleErrors(w io.Writer, rs *detect.RuleSet) int {
	for _, se := range rs.Errors() {
		fmt.Fprintf(w, "error: %s\n", se.Error())
	}
	return len(rs.Errors())
}

func runRulesCheck(e env, args []string) error {
	fs := flag.NewFlagSet("vigil rules check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	builtins := fs.Bool("builtins", false, "also load the built-in rules (so correlations may reference them)")
	cf := addCompileFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: vigil rules check [--builtins] RULES...")
	}
	rs, err := loadRuleArgs(fs.Args(), *builtins, cf)
	if err != nil {
		return err
	}
	for _, in := range rs.Infos() {
		name := firstNonEmpty(in.ID, in.Name, in.Title)
		fmt.Fprintf(e.stdout, "%-10s %-28s %-26s %s\n", in.State, name, in.Kind, in.Path)
	}
	if n := printRuleErrors(e.stderr, rs); n > 0 {
		return fmt.Errorf("rules: %d problem(s)", n)
	}
	return nil
}

func runRulesTest(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil rules test", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	builtins := fs.Bool("builtins", false, "also load the built-in rules")
	quiet := fs.Bool("quiet", false, "print only events that match and firings")
	cf := addCompileFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: vigil rules test [--builtins] [--quiet] RULEFILE|RULEDIR EVENTS.ndjson\n\nShows, for each event, which rules match it and which detections would fire.\nEVENTS is NDJSON ('-' for stdin); events without a time get the time they are read.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("rules test: need a rule file (or directory) and an events file")
	}
	rs, err := loadRuleArgs([]string{fs.Arg(0)}, *builtins, cf)
	if err != nil {
		return err
	}
	if n := printRuleErrors(e.stderr, rs); n > 0 && rs.Len() == 0 {
		return fmt.Errorf("rules test: no rule loaded (%d problem(s))", n)
	}
	var in io.Reader = e.stdin
	if p := fs.Arg(1); p != "-" {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("rules test: %w", err)
		}
		defer f.Close()
		in = f
	}
	ev := detect.NewEvaluator(rs, 0, 0)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	lim := event.DefaultLimits()
	line, total, matched, fired := 0, 0, 0, 0
	for sc.Scan() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line++
		raw := strings.TrimSpace(sc.Text())
		if raw == "" || strings.HasPrefix(raw, "#") {
			continue
		}
		evt, err := event.DecodeOne([]byte(raw))
		if err == nil {
			_, err = event.Normalize(evt, firstNonEmpty(evt.Tenant, auth.DefaultTenant), time.Now(), lim)
		}
		if err != nil {
			fmt.Fprintf(e.stdout, "line %d: invalid event: %v\n", line, err)
			continue
		}
		total++
		evt.Seq = uint64(total)
		matches := ev.Matches(evt)
		firings := ev.EvaluateView(evt)
		if len(matches) > 0 {
			matched++
		}
		if len(matches) == 0 && len(firings) == 0 {
			if !*quiet {
				fmt.Fprintf(e.stdout, "line %d  %s  %s: no match\n", line, evt.ID, evt.Type)
			}
			continue
		}
		fmt.Fprintf(e.stdout, "line %d  %s  %s: matches %s\n", line, evt.ID, evt.Type, strings.Join(matches, ", "))
		for _, f := range firings {
			fired++
			fmt.Fprintf(e.stdout, "    FIRES %s %q severity=%s group=[%s] events=%d\n", f.RuleID, f.Title, f.Severity, f.GroupKey, len(f.EventIDs))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("rules test: reading events: %w", err)
	}
	fmt.Fprintf(e.stdout, "%d event(s), %d matched a rule, %d firing(s), %d rule(s) loaded\n", total, matched, fired, rs.Len())
	return nil
}
