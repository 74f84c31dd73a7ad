package main

// `vigil rules`: offline tools for detection rule authors (issue 3). They
// run the same loader and evaluator as the server, without a server.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

// rulesCommands are `vigil rules` subcommands; a new one is one entry.
func rulesCommands() []command {
	return []command{
		{name: "test", summary: "show which events match which rules, and which detections would fire", args: "[flags] RULEFILE|RULEDIR EVENTS.ndjson",
			about:   "EVENTS is NDJSON ('-' for stdin); events without a time get the time they are read.",
			example: "vigil rules test examples/rules examples/events.ndjson\nvigil rules test --builtins --quiet my-rule.yml events.ndjson", run: runRulesTest},
		{name: "check", summary: "load rule files and report every problem (file:line)", args: "[flags] RULES...",
			example: "vigil rules check examples/rules", run: runRulesCheck},
		// Issue 13: detection engineering over the durable log.
		{name: "backtest", summary: "evaluate rules over stored history without creating detections", args: "[--since 24h|--from-seq N] [--tenant T] [RULEFILE|RULEDIR...]",
			about:   "Reports, per rule, events scanned, matches, firings and the detections it would have created\n(correlations included, by event time). Without rule files: the rules the server runs.",
			example: "vigil rules backtest --since 24h examples/rules", run: runRulesBacktest},
		{name: "coverage", summary: "ATT&CK techniques the loaded rules cover and which fired (Navigator layer)", args: "[--navigator out.json] [RULEFILE|RULEDIR...]",
			about:   "With rule files it works offline (coverage only); without, it asks the server (GET /api/v1/attack/coverage).",
			example: "vigil rules coverage --navigator layer.json", run: runRulesCoverage},
		{name: "lint", summary: "check rule files for missing ids, bad tags, unknown ATT&CK ids, dead selections", args: "[--warnings-as-errors] [--builtins] RULEDIR|RULEFILE...",
			about:   "Checks what the loader refuses, id (UUID), title, level, status, logsource, tags, ATT&CK ids,\nunused search identifiers, always-true/false conditions. Prints file:line: severity: message [check];\nexits 1 on errors (and on warnings with --warnings-as-errors).",
			example: "vigil rules lint examples/rules", run: func(_ context.Context, e env, args []string) error { return runRulesLint(e, args) }},
	}
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

func printRuleErrors(e env, rs *detect.RuleSet) int {
	for _, se := range rs.Errors() {
		e.warnf("error: %s\n", se.Error())
	}
	return len(rs.Errors())
}

func runRulesCheck(_ context.Context, e env, args []string) error {
	fs := e.flagSet()
	builtins := fs.Bool("builtins", false, "also load the built-in rules (so correlations may reference them)")
	cf := addCompileFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("rules check: give at least one rule file or directory")
	}
	rs, err := loadRuleArgs(fs.Args(), *builtins, cf)
	if err != nil {
		return err
	}
	for _, in := range rs.Infos() {
		name := firstNonEmpty(in.ID, in.Name, in.Title)
		e.printf("%-10s %-28s %-26s %s\n", in.State, name, in.Kind, in.Path)
	}
	if n := printRuleErrors(e, rs); n > 0 {
		return fmt.Errorf("rules: %d problem(s)", n)
	}
	return nil
}

func runRulesTest(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	builtins := fs.Bool("builtins", false, "also load the built-in rules")
	quiet := fs.Bool("quiet", false, "print only events that match and firings")
	cf := addCompileFlags(fs)
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
	if n := printRuleErrors(e, rs); n > 0 && rs.Len() == 0 {
		return fmt.Errorf("rules test: no rule loaded (%d problem(s))", n)
	}
	var in io.Reader = e.stdin
	if p := fs.Arg(1); p != "-" {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("rules test: %w", err)
		}
		defer func() { _ = f.Close() }() // read-only: closing cannot lose data
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
			e.printf("line %d: invalid event: %v\n", line, err)
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
				e.printf("line %d  %s  %s: no match\n", line, evt.ID, evt.Type)
			}
			continue
		}
		e.printf("line %d  %s  %s: matches %s\n", line, evt.ID, evt.Type, strings.Join(matches, ", "))
		for _, f := range firings {
			fired++
			e.printf("    FIRES %s %q severity=%s group=[%s] events=%d\n", f.RuleID, f.Title, f.Severity, f.GroupKey, len(f.EventIDs))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("rules test: reading events: %w", err)
	}
	e.printf("%d event(s), %d matched a rule, %d firing(s), %d rule(s) loaded\n", total, matched, fired, rs.Len())
	return nil
}
