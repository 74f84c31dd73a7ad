// Command vigil is Vigil's command line: it runs the server and talks to
// one. Each subcommand lives in its own file; this file only dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// env is what a subcommand may touch of the outside world, so tests can
// run commands in-process.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":   {"run a Vigil node (embedded NATS JetStream by default)", runServe},
		"publish": {"publish JSON or NDJSON events from files or stdin", runPublish},
		"tail":    {"stream matching events live (--from SEQ replays first)", runTail},
		"demo":    {"publish realistic demo traffic of every category (source vigil-demo)", runDemo},
		"verify":  {"check the integrity hash chain of the log", runVerify},
		"bench":   {"load generator: ingest throughput and end-to-end latency", runBench},
		"token":   {"create, list and revoke API tokens (admin; via the REST API)", runToken},
		"rules":   {"test detection rules against NDJSON events, or check rule files", runRules},
		"inputs":  {"test input mappings: what each log line becomes", runInputs},
		"outputs": {"list outputs and their delivery state, send a test message (admin)", runOutputs},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vigil:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, e env) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout, cmds)
		return nil
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		usage(e.stderr, cmds)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return cmd.run(ctx, e, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "Vigil: real-time security event hub.\n\nUsage: vigil <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'vigil <command> -h' for a command's flags.")
}
