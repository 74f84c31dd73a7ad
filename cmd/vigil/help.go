package main

// Help, printed from the command table (main.go): the command list, a
// group's subcommands, and one command's description, usage, flags (with
// their types and defaults, from the flag set itself) and example.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

func printTopHelp(w io.Writer, table []command) {
	var b strings.Builder
	b.WriteString("Vigil: real-time security event hub.\n\nUsage: vigil <command> [flags]\n\nCommands:\n")
	writeList(&b, table)
	b.WriteString("\nRun 'vigil help <command>' or 'vigil <command> -h' for a command's flags and an example.\n")
	_, _ = io.WriteString(w, b.String()) // help text: a failed write is reported by run (stdout) or cannot be (stderr)
}

func printGroupHelp(w io.Writer, path []string, subs []command) {
	var b strings.Builder
	name := joinName(path)
	if parent := find(commands(), path[0]); parent != nil {
		fmt.Fprintf(&b, "vigil %s: %s\n", name, parent.summary)
		if parent.about != "" {
			fmt.Fprintf(&b, "\n%s\n", parent.about)
		}
	}
	fmt.Fprintf(&b, "\nUsage: vigil %s <subcommand> [flags]\n\nSubcommands:\n", name)
	writeList(&b, subs)
	fmt.Fprintf(&b, "\nRun 'vigil %s <subcommand> -h' for its flags and an example.\n", name)
	_, _ = io.WriteString(w, b.String()) // see printTopHelp
}

func writeList(b *strings.Builder, table []command) {
	width := 0
	for _, c := range table {
		width = max(width, len(c.name))
	}
	for _, c := range table {
		fmt.Fprintf(b, "  %-*s  %s\n", width, c.name, c.summary)
	}
}

// printCommandHelp is a command's -h: what it does, how to call it, its
// flags as the flag package prints them (name, type, default), an example.
func printCommandHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	var b strings.Builder
	if cmd == nil {
		fmt.Fprintf(&b, "Usage of %s:\n", fs.Name())
	} else {
		fmt.Fprintf(&b, "vigil %s: %s\n\nUsage: vigil %s %s\n", cmd.name, cmd.summary, cmd.name, cmd.args)
		if cmd.about != "" {
			fmt.Fprintf(&b, "\n%s\n", cmd.about)
		}
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		b.WriteString("\nFlags:\n")
		prev := fs.Output()
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(prev)
	}
	if cmd != nil && cmd.example != "" {
		b.WriteString("\nExample:\n")
		for _, line := range strings.Split(cmd.example, "\n") {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	_, _ = io.WriteString(w, b.String()) // see printTopHelp
}

func find(table []command, name string) *command {
	for i := range table {
		if table[i].name == name || slices.Contains(table[i].aliases, name) {
			return &table[i]
		}
	}
	return nil
}

func joinName(path []string) string { return strings.Join(path, " ") }

func subNames(table []command) string {
	names := make([]string, len(table))
	for i, c := range table {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func isHelpFlag(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

// wantsHelp reports whether args ask for help (before any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// nearest is the command name closest to name by edit distance, or ""
// when none is close enough to be a plausible typo (at most 2 edits, or a
// third of the name's length for long names).
func nearest(name string, table []command) string {
	best, bestD := "", 0
	for _, c := range table {
		if c.name == "help" {
			continue
		}
		d := editDistance(name, c.name)
		if strings.HasPrefix(c.name, name) && len(name) >= 2 {
			d = min(d, 1) // "ver" for "version"
		}
		if best == "" || d < bestD {
			best, bestD = c.name, d
		}
	}
	if bestD > max(2, len(name)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes; command
// names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Set at build time (go build -ldflags "-X main.version=v1.2.3 -X
// main.commit=abc123"); otherwise the build info's module version and VCS
// revision are used. Package-level because -X can only set those.
var (
	version = ""
	commit  = ""
)

// buildVersion is what `vigil version` prints: version, commit (with
// "-dirty" for a modified tree), its time, and the Go version.
func buildVersion() (ver, rev, goVersion string) {
	ver, rev, goVersion = version, commit, runtime.Version()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return firstNonEmpty(ver, "unknown"), firstNonEmpty(rev, "unknown"), goVersion
	}
	goVersion = info.GoVersion
	if ver == "" {
		ver = info.Main.Version // "(devel)" for go build in the repo, vX.Y.Z for go install @vX.Y.Z
	}
	if rev == "" {
		var revision, modified, when string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			case "vcs.time":
				when = s.Value
			}
		}
		rev = revision
		if rev != "" && modified == "true" {
			rev += "-dirty"
		}
		if rev != "" && when != "" {
			rev += " (" + when + ")"
		}
	}
	return firstNonEmpty(ver, "unknown"), firstNonEmpty(rev, "unknown (built without VCS information, e.g. go run)"), goVersion
}

func runVersion(_ context.Context, e env, args []string) error {
	fs := e.flagSet()
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("version: takes no arguments, got %q", fs.Args())
	}
	ver, rev, gov := buildVersion()
	e.printf("vigil %s\ncommit %s\n%s %s/%s\n", ver, rev, gov, runtime.GOOS, runtime.GOARCH)
	return nil
}
