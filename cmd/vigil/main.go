// Command vigil is Vigil's command line: it runs the server and talks to
// one. Each subcommand lives in its own file; this file holds the command
// table and dispatches; help.go prints help from the table; errors.go
// turns errors into one message with a hint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// env is what a subcommand may touch of the outside world, so tests can
// run commands in-process.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// cmd is the command being run (set by run): flagSet takes its name,
	// description and example from it.
	cmd *command
	// session records what a remote command talked to, for hints (set by
	// run; nil in tests that call a command function directly).
	session *session
}

// command is one entry of the command table. A new subcommand is one
// entry here (or in a group's subs): its help, `vigil help NAME`, the
// listing and the nearest-name suggestion all come from the entry.
type command struct {
	name    string
	summary string // one line, shown in listings and at the top of the help
	args    string // what follows the name in the usage line, e.g. "[flags] [FILE...]"
	about   string // optional paragraph after the usage line
	example string // one or more example lines, shown under "Example:"
	// run runs the command; it builds its flags with e.flagSet() so that
	// -h prints them with their types and defaults. Nil for a group.
	run func(ctx context.Context, e env, args []string) error
	// subs are a group's subcommands (vigil rules test, vigil token create).
	subs []command
	// aliases are other names that run the command (token ls, rm).
	aliases []string
}

func commands() []command {
	return []command{
		{name: "serve", summary: "run a Vigil node (embedded NATS JetStream by default)", args: "[flags]",
			about:   "Every flag also has a VIGIL_* environment variable and a YAML key (--config FILE); see docs/operations.md.",
			example: "vigil serve --rules examples/rules", run: runServe},
		{name: "publish", summary: "publish JSON or NDJSON events from files or stdin", args: "[flags] [FILE...]",
			about:   "Each FILE is a JSON object, a JSON array or NDJSON; '-' or no FILE reads stdin.\nEvents without an id get one, so a retried request is not stored twice.",
			example: "vigil publish examples/events.ndjson\necho '{\"type\":\"audit.query\",\"user\":\"bob\"}' | vigil publish", run: runPublish},
		{name: "tail", summary: "stream matching events live (--tail N, --since or --from replay first)", args: "[flags]",
			about:   "Gives up if the first connection fails, unless --retry; after a connection was up it reconnects\nand resumes from the last event printed, so nothing is missed or printed twice.",
			example: "vigil tail --categories authentication --min-severity high --tail 20\nvigil tail --since 1h --json --retry", run: runTail},
		{name: "demo", summary: "publish realistic demo traffic of every category (source vigil-demo)", args: "[flags]",
			about:   "The demo's brute-force bursts fire the built-in rules, so it creates real detections.\nIt keeps retrying while the server is unreachable (a restart) and stops only on a refusal (bad token).",
			example: "vigil demo --rate 50 --duration 1m", run: runDemo},
		{name: "verify", summary: "check the integrity hash chain of the log", args: "[flags]",
			example: "vigil verify\nvigil verify --offline --data-dir ./vigil-data   # server stopped", run: runVerify},
		{name: "migrate", summary: "rewrite a stopped node's log in the current stream layout, keeping every seq", args: "[flags]",
			about:   "Needed once for a log written before stream layout 2 (serve refuses it and names this command).\nStop every node using the stream first; it needs free disk for two copies of the log (docs/operations.md).",
			example: "vigil migrate --data-dir ./vigil-data\nvigil migrate --nats-url nats://nats-1:4222", run: runMigrate},
		{name: "bench", summary: "load generator: ingest throughput and end-to-end latency (source vigil-bench)", args: "[flags]",
			about:   "Its events carry source \"vigil-bench\" and tag \"bench\" and match no built-in rule, so it creates\nno detections; --realistic sends the demo mix instead, which does fire rules (it says so).",
			example: "vigil bench --events 100000 --subscribers 10\nvigil bench --idle 10000\nvigil bench --idle 100000 --servers URL,URL,... --procs 6 --source-ips 127.0.0.2-127.0.0.20   # scripts/idle-100k.sh", run: runBench},
		{name: "token", summary: "create, list and revoke API tokens (admin; via the REST API)",
			about: "Roles: admin, publisher, analyst, viewer. A new token is printed once on stdout; only its hash is\nstored. JWTs are revoked by jti, or all of a subject's issued at or before a time (default now);\nopen connections using a revoked token close within seconds.",
			subs:  tokenCommands()},
		{name: "rules", summary: "test detection rules against NDJSON events, or check rule files",
			about: "Offline: the server's rule loader and evaluator, without a server.", subs: rulesCommands()},
		{name: "inputs", summary: "test input mappings: what each log line becomes",
			about: "Offline: the server's mapping loader and mappers, without a server.", subs: inputsCommands()},
		{name: "outputs", summary: "list outputs and their delivery state, send a test message (admin)",
			about: "Outputs are declared in the server's YAML config (docs/outputs.md).", subs: []command{
				{name: "list", aliases: []string{"ls"}, summary: "each output's state, deliveries, failures, retries and pending (consumer lag)", args: "[--json]",
					example: "vigil outputs list", run: outputsList},
				{name: "test", summary: "send a clearly labelled test message through NAME now and report the answer", args: "NAME [--json]",
					example: "vigil outputs test soc-webhook", run: outputsTest},
			}},
		{name: "version", summary: "print the version, commit and Go version", args: "", example: "vigil version", run: runVersion},
		{name: "help", summary: "show help for a command", args: "[COMMAND [SUBCOMMAND]]", example: "vigil help tail\nvigil help rules test"},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// exitCode runs args and prints the error, once prefixed with "vigil:":
// 0 on success and for help asked for, 1 on any error.
func exitCode(ctx context.Context, args []string, e env) int {
	if err := run(ctx, args, e); err != nil {
		// Nothing more can be said if stderr itself fails.
		_, _ = fmt.Fprintln(e.stderr, "vigil:", err)
		return 1
	}
	return 0
}

// run dispatches args through the command table. It returns nil for help
// asked for (-h, help), and the command's error made readable (explain).
func run(ctx context.Context, args []string, e env) error {
	out := &stickyWriter{w: e.stdout}
	e.stdout = out
	if e.session == nil {
		e.session = &session{}
	}
	err := dispatch(ctx, commands(), nil, args, e)
	if errors.Is(err, flag.ErrHelp) {
		err = nil
	}
	if err == nil && out.err != nil {
		err = fmt.Errorf("writing output: %w", out.err)
	}
	return explain(err, e.session)
}

// dispatch finds args[0] in table (the subcommands of parents, nil at the
// top) and runs it, or prints help.
func dispatch(ctx context.Context, table []command, parents []string, args []string, e env) error {
	if len(args) == 0 || isHelpFlag(args[0]) || (parents == nil && args[0] == "help") {
		if parents == nil && len(args) > 1 && args[0] == "help" {
			// vigil help tail == vigil tail -h
			return dispatch(ctx, table, nil, append(append([]string(nil), args[1:]...), "-h"), e)
		}
		if len(args) == 0 && parents != nil {
			// A group without a subcommand: show its subcommands, fail.
			printGroupHelp(e.stderr, parents, table)
			return fmt.Errorf("%s: missing subcommand (%s)", joinName(parents), subNames(table))
		}
		if parents == nil {
			printTopHelp(e.stdout, table)
		} else {
			printGroupHelp(e.stdout, parents, table)
		}
		return nil
	}
	name := args[0]
	if parents == nil && (name == "--version" || name == "-version") {
		name = "version"
	}
	cmd := find(table, name)
	if cmd == nil {
		where := "command"
		if parents != nil {
			where = joinName(parents) + " subcommand"
		}
		msg := fmt.Sprintf("unknown %s %q", where, name)
		if s := nearest(name, table); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		list := "vigil help"
		if parents != nil {
			list = "vigil " + joinName(parents) + " -h"
		}
		return fmt.Errorf("%s (run '%s' for the list)", msg, list)
	}
	path := append(append([]string(nil), parents...), cmd.name)
	if cmd.subs != nil {
		// vigil rules -h: the group's help on stdout.
		return dispatch(ctx, cmd.subs, path, args[1:], e)
	}
	if cmd.run == nil { // "help" itself
		printTopHelp(e.stdout, table)
		return nil
	}
	c := *cmd
	c.name = joinName(path)
	e.cmd = &c
	if wantsHelp(args[1:]) {
		// Help asked for goes to stdout (vigil tail -h | less); the same
		// text after a bad flag goes to stderr.
		e.stderr = e.stdout
	}
	return cmd.run(ctx, e, args[1:])
}

// flagSet is a command's flag set: named "vigil NAME", errors returned (not
// exit), usage printed from the command table. A bad flag prints the usage
// on stderr and nothing else: the flag package's own copy of the error
// (written to the set's output before the usage) is discarded, and
// exitCode prints the returned error once, prefixed with "vigil:", after
// the usage.
func (e env) flagSet() *flag.FlagSet {
	name := "vigil"
	if e.cmd != nil {
		name = "vigil " + e.cmd.name
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd, stderr := e.cmd, e.stderr
	fs.Usage = func() { printCommandHelp(stderr, cmd, fs) }
	return fs
}

// printf writes to stdout. stdout is a stickyWriter (run sets it): the
// first write error is kept and run returns it, so callers need not check
// each line.
func (e env) printf(format string, a ...any) { _, _ = fmt.Fprintf(e.stdout, format, a...) }

// println writes a line to stdout (see printf for errors).
func (e env) println(a ...any) { _, _ = fmt.Fprintln(e.stdout, a...) }

// warnf writes a diagnostic to stderr. Its write error is dropped on
// purpose: stderr is where errors would be reported.
func (e env) warnf(format string, a ...any) { _, _ = fmt.Fprintf(e.stderr, format, a...) }

// stickyWriter remembers the first write error and fails every later
// write with it (the errWriter of "errors are values").
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}
