package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// cliExit runs args as main does and returns the exit code and output.
func cliExit(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	e := env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	code = exitCode(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// TestHelpEveryCommand: `vigil CMD -h` and `vigil help CMD` exit 0 and show
// the one-line description, the usage line, the flags and an example, for
// every command and subcommand in the table (so a new entry is covered).
func TestHelpEveryCommand(t *testing.T) {
	var check func(path []string, c command)
	check = func(path []string, c command) {
		name := strings.Join(append(append([]string(nil), path...), c.name), " ")
		if c.name == "help" {
			return
		}
		if c.subs != nil {
			for _, s := range c.subs {
				check(append(path, c.name), s)
			}
		}
		args := append(strings.Fields(name), "-h")
		code, out, errOut := cliExit(args...)
		if code != 0 {
			t.Errorf("vigil %s -h: exit %d, stderr %q", name, code, errOut)
			return
		}
		if !strings.Contains(out, c.summary) {
			t.Errorf("vigil %s -h does not show its description %q:\n%s", name, c.summary, out)
		}
		if c.subs != nil {
			for _, s := range c.subs {
				if !strings.Contains(out, s.name) {
					t.Errorf("vigil %s -h does not list %q:\n%s", name, s.name, out)
				}
			}
		} else {
			for _, want := range []string{"Usage: vigil " + name, "Example:\n  vigil " + name} {
				if !strings.Contains(out, want) {
					t.Errorf("vigil %s -h lacks %q:\n%s", name, want, out)
				}
			}
		}
		code2, out2, _ := cliExit(append([]string{"help"}, strings.Fields(name)...)...)
		if code2 != 0 || out2 != out {
			t.Errorf("vigil help %s: exit %d, output differs from -h:\n%s", name, code2, out2)
		}
	}
	for _, c := range commands() {
		check(nil, c)
	}
	for _, args := range [][]string{{}, {"help"}, {"-h"}, {"--help"}, {"rules", "-h"}, {"token", "--help"}} {
		if code, out, _ := cliExit(args...); code != 0 || !strings.Contains(out, "Usage: vigil") {
			t.Errorf("vigil %v: exit %d\n%s", args, code, out)
		}
	}
}

// TestHelpShowsFlagTypesAndDefaults: the flags are listed as the flag
// package knows them (type, default), not as free text.
func TestHelpShowsFlagTypesAndDefaults(t *testing.T) {
	_, out, _ := cliExit("demo", "-h")
	for _, want := range []string{"-rate float", "(default 20)", "-duration duration", "-count int", "-server string"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo -h lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = cliExit("tail", "-h")
	for _, want := range []string{"-since DURATION|TIME", "-tail N", "-retry", "-from uint"} {
		if !strings.Contains(out, want) {
			t.Errorf("tail -h lacks %q:\n%s", want, out)
		}
	}
	// serve's flags come from config (flag, env and YAML declared once).
	code, out, _ := cliExit("serve", "-h")
	if code != 0 || !strings.Contains(out, "run a Vigil node") || !strings.Contains(out, "-listen") || !strings.Contains(out, "Example:\n  vigil serve") {
		t.Errorf("serve -h: exit %d\n%s", code, out)
	}
}

// TestBadUsageExitsNonZero: a wrong flag or a missing subcommand is an
// error (exit 1) with the usage on stderr, not stdout.
func TestBadUsageExitsNonZero(t *testing.T) {
	code, out, errOut := cliExit("tail", "--bogus")
	if code != 1 || out != "" || !strings.Contains(errOut, "flag provided but not defined: -bogus") || !strings.Contains(errOut, "Usage: vigil tail") {
		t.Errorf("tail --bogus: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The error is printed once, after the usage, with the vigil: prefix
	// (not also by the flag package before it); serve's flags (config)
	// and a bad flag value alike.
	for _, c := range []struct {
		args  []string
		usage string
		err   string
	}{
		{[]string{"tail", "--bogus"}, "Usage: vigil tail", "flag provided but not defined: -bogus"},
		{[]string{"serve", "--bogus"}, "Usage: vigil serve", "flag provided but not defined: -bogus"},
		{[]string{"rules", "test", "--bogus"}, "Usage: vigil rules test", "flag provided but not defined: -bogus"},
		{[]string{"tail", "--tail", "x"}, "Usage: vigil tail", `invalid value "x" for flag -tail: parse error`},
	} {
		code, out, errOut := cliExit(c.args...)
		if code != 1 || out != "" || strings.Count(errOut, c.err) != 1 || !strings.HasSuffix(errOut, "\nvigil: "+c.err+"\n") ||
			!strings.Contains(errOut, c.usage) || strings.Index(errOut, c.usage) > strings.Index(errOut, c.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the usage, then %q once", c.args, code, out, errOut, "vigil: "+c.err)
		}
	}
	code, _, errOut = cliExit("rules")
	if code != 1 || !strings.Contains(errOut, "missing subcommand (test, check, backtest, coverage, lint)") {
		t.Errorf("rules: exit %d, stderr %q", code, errOut)
	}
}

// TestUnknownCommandSuggestsNearest: a typo gets the nearest command by
// edit distance; nonsense gets no suggestion.
func TestUnknownCommandSuggestsNearest(t *testing.T) {
	for typo, want := range map[string]string{"tial": "tail", "pubish": "publish", "verfy": "verify", "tokne": "token", "versoin": "version", "sreve": "serve"} {
		code, _, errOut := cliExit(typo)
		if code != 1 || !strings.Contains(errOut, `did you mean "`+want+`"?`) {
			t.Errorf("vigil %s: exit %d, stderr %q; want a suggestion of %q", typo, code, errOut, want)
		}
	}
	if _, _, errOut := cliExit("xylophone"); strings.Contains(errOut, "did you mean") {
		t.Errorf("vigil xylophone suggested something: %q", errOut)
	}
	if code, _, errOut := cliExit("rules", "tset"); code != 1 || !strings.Contains(errOut, `unknown rules subcommand "tset"; did you mean "test"?`) {
		t.Errorf("vigil rules tset: exit %d, %q", code, errOut)
	}
	// Aliases kept working through the table.
	if c := find(tokenCommands(), "ls"); c == nil || c.name != "list" {
		t.Error("token ls is no longer an alias of token list")
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"tail", "tail", 0}, {"tial", "tail", 2}, {"kitten", "sitting", 3}, {"", "abc", 3}, {"serve", "sreve", 2}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// TestVersion: version, commit and Go version; the -ldflags -X values win
// over the build info.
func TestVersion(t *testing.T) {
	code, out, _ := cliExit("version")
	if code != 0 || !strings.HasPrefix(out, "vigil ") || !strings.Contains(out, "\ncommit ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: exit %d\n%s", code, out)
	}
	if code, out2, _ := cliExit("--version"); code != 0 || out2 != out {
		t.Errorf("--version: exit %d, %q", code, out2)
	}
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123abc"
	_, out, _ = cliExit("version")
	if !strings.HasPrefix(out, "vigil v1.2.3\ncommit 0123abc\n") {
		t.Errorf("with -X values: %q", out)
	}
}
