package main

// `vigil rules backtest` and `vigil rules coverage` (issue 13): rule tools
// that need the server's log and detections, so they talk to a server.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/detect/attack"
	"github.com/vigil-sec/vigil/internal/detect/lint"
)

// readRuleFiles reads rule files and directories (recursively) into the
// backtest request's shape; a fieldmap.yaml in a directory is returned
// separately.
func readRuleFiles(paths []string) (files []detect.RuleFile, fieldMap string, err error) {
	add := func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		files = append(files, detect.RuleFile{Path: p, Content: string(b)})
		return nil
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, "", fmt.Errorf("rules: %w", err)
		}
		if !st.IsDir() {
			if err := add(p); err != nil {
				return nil, "", err
			}
			continue
		}
		if b, err := os.ReadFile(filepath.Join(p, detect.FieldMapFile)); err == nil {
			fieldMap = string(b)
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ext := strings.ToLower(filepath.Ext(path))
			if d.IsDir() || (ext != ".yml" && ext != ".yaml") || d.Name() == detect.FieldMapFile {
				return nil
			}
			return add(path)
		})
		if err != nil {
			return nil, "", fmt.Errorf("rules: %w", err)
		}
	}
	return files, fieldMap, nil
}

func runRulesBacktest(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	builtins := fs.Bool("builtins", false, "also load the built-in rules (so correlations may read them)")
	since := fs.String("since", "", "evaluate events received this long ago and later (24h, 90m, 7d)")
	fromSeq := fs.Uint64("from-seq", 0, "evaluate from this log seq (wins over --since)")
	toSeq := fs.Uint64("to-seq", 0, "stop at this log seq (default: the head)")
	tenant := fs.String("tenant", "", "only this tenant's events")
	maxEvents := fs.Int("max-events", 0, fmt.Sprintf("read at most this many events (default %d, at most %d)", detect.DefaultBacktestEvents, detect.MaxBacktestEvents))
	maxSeconds := fs.Int("max-seconds", 50, "stop after this long on the server (the client waits 60 s at most)")
	first := fs.Int("first", 5, "matches and detections listed per rule")
	asJSON := fs.Bool("json", false, "print the server's report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *since == "" && *fromSeq == 0 {
		fs.Usage()
		return errors.New("rules backtest: give --since or --from-seq")
	}
	req := detect.BacktestRequest{Builtins: *builtins, Since: *since, FromSeq: *fromSeq, ToSeq: *toSeq, Tenant: *tenant,
		MaxEvents: *maxEvents, MaxSeconds: *maxSeconds, First: *first}
	if fs.NArg() > 0 {
		files, fm, err := readRuleFiles(fs.Args())
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return errors.New("rules backtest: no *.yml or *.yaml file in the given paths")
		}
		req.Rules, req.FieldMap = files, fm
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	var rep detect.BacktestReport
	if err := c.Do(ctx, "POST", "/api/v1/rules/backtest", req, &rep); err != nil {
		return fmt.Errorf("rules backtest: %w", err)
	}
	if *asJSON {
		return printJSON(e.stdout, rep)
	}
	for _, se := range rep.Errors {
		e.warnf("error: %s\n", se.Error())
	}
	e.printf("seq %d..%d: %d event(s) read, %d evaluated, in %s (%.0f events/s)\n",
		rep.FromSeq, rep.ToSeq, rep.Read, rep.Evaluated, rep.Elapsed.Round(time.Millisecond), rep.EventsPerSecond)
	if rep.Truncated != "" {
		e.printf("STOPPED at %s after seq %d: raise the bound or backtest from --from-seq %d\n", rep.Truncated, rep.LastSeq, rep.LastSeq+1)
	}
	if err := printTable(e, func(row rowFunc) {
		row("RULE\tSCANNED\tMATCHES\tFIRINGS\tDETECTIONS\tTITLE\n")
		for _, r := range rep.Rules {
			row("%s\t%d\t%d\t%d\t%d\t%s\n", r.RuleID, r.Scanned, r.Matches, r.Firings, r.Detections, r.Title)
		}
	}); err != nil {
		return err
	}
	for _, r := range rep.Rules {
		if len(r.FirstMatches) == 0 && len(r.FirstDetections) == 0 {
			continue
		}
		e.printf("\n%s (%s)\n", r.RuleID, r.Title)
		if len(r.FirstMatches) > 0 {
			e.printf("  first matches: %s\n", strings.Join(r.FirstMatches, " "))
		}
		for _, d := range r.FirstDetections {
			e.printf("  would create: tenant=%s [%s] %s..%s count=%d first_seq=%d\n", d.Tenant, d.GroupKey,
				d.FirstSeen.Format(time.RFC3339), d.LastSeen.Format(time.RFC3339), d.Count, d.FirstSeq)
		}
	}
	if rep.Approximate {
		e.println("note: too many group keys to track suppression exactly; detection counts are an upper bound")
	}
	return nil
}

func runRulesCoverage(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	builtins := fs.Bool("builtins", false, "with rule files: also count the built-in rules")
	navigator := fs.String("navigator", "", "write an ATT&CK Navigator layer (format 4.5) to this file")
	name := fs.String("name", "Vigil detection coverage", "layer name")
	cf := addCompileFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cov detect.Coverage
	if fs.NArg() > 0 {
		rs, err := loadRuleArgs(fs.Args(), *builtins, cf)
		if err != nil {
			return err
		}
		printRuleErrors(e, rs)
		cov = detect.ComputeCoverage(rs, nil)
	} else {
		c, err := rf.client(e)
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "GET", "/api/v1/attack/coverage", nil, &cov); err != nil {
			return fmt.Errorf("rules coverage: %w", err)
		}
	}
	e.printf("ATT&CK Enterprise %s: %d of %d techniques covered by rules, %d with detections\n",
		cov.AttackVersion, cov.Covered, cov.TotalTechniques, cov.Fired)
	perTactic := map[string]int{}
	for _, t := range cov.Techniques {
		if len(t.Rules) > 0 {
			for _, ta := range t.Tactics {
				perTactic[ta]++
			}
		}
	}
	if err := printTable(e, func(row rowFunc) {
		row("TACTIC\tNAME\tTECHNIQUES COVERED\n")
		for _, ta := range attack.Enterprise().Tactics() {
			row("%s\t%s\t%d\n", ta.ID, ta.Name, perTactic[ta.ID])
		}
	}); err != nil {
		return err
	}
	if len(cov.Unknown) > 0 {
		e.printf("not ATT&CK Enterprise %s techniques (typo, revoked, a newer ATT&CK release, or another domain): %s\n", cov.AttackVersion, strings.Join(cov.Unknown, ", "))
	}
	if *navigator != "" {
		b, err := json.MarshalIndent(cov.Layer(*name), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*navigator, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("rules coverage: %w", err)
		}
		e.printf("Navigator layer written to %s (open it at https://mitre-attack.github.io/attack-navigator/)\n", *navigator)
	}
	return nil
}

func runRulesLint(e env, args []string) error {
	fs := e.flagSet()
	builtins := fs.Bool("builtins", false, "load the built-in rules too, so correlations may name them (they are not linted)")
	strict := fs.Bool("warnings-as-errors", false, "exit non-zero on warnings too")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("rules lint: give a rule directory or files")
	}
	findings, err := lint.Paths(fs.Args(), lint.Options{Builtins: *builtins})
	if err != nil {
		return err
	}
	if *asJSON {
		if findings == nil {
			findings = []lint.Finding{}
		}
		if err := printJSON(e.stdout, findings); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			e.println(f.String())
		}
	}
	errs, warns := lint.Summary(findings)
	if !*asJSON {
		e.printf("%d error(s), %d warning(s)\n", errs, warns)
	}
	if errs > 0 || *strict && warns > 0 {
		return fmt.Errorf("rules lint: %d error(s), %d warning(s)", errs, warns)
	}
	return nil
}
