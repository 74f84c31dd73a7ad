package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
)

func runServe(ctx context.Context, e env, args []string) error {
	if wantsHelp(args) && e.cmd != nil {
		return serveHelp(e, args)
	}
	// config.Load's flag set writes only a bad flag's error and its usage
	// here; exitCode prints the error itself, so show serve's help once
	// instead (stderr), then the error.
	var flagOut strings.Builder
	cfg, err := config.Load(args, e.getenv, &flagOut)
	if err != nil {
		if flagOut.Len() > 0 {
			if e.cmd != nil {
				_ = serveHelp(e, []string{"-h"}) // flag.ErrHelp: the help was printed
			} else if _, usage, ok := strings.Cut(flagOut.String(), "\n"); ok {
				e.warnf("%s", usage)
			}
		}
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	// Go's own GC target (100%) since 2026-11-30: 400% no longer saved
	// measurable CPU per event (the per-event allocations were cut) and
	// doubled the peak heap; after a restart that replays its detection
	// windows it held 1.3 GB instead of 0.26 GB (docs/operations.md).
	if e.getenv("GOMEMLIMIT") == "" {
		// A soft limit at half the memory available makes the collector
		// work harder instead of letting a burst take the machine.
		if avail, ok := memoryAvailable(); ok {
			debug.SetMemoryLimit(int64(avail / 2))
			logger.Debug("soft memory limit set", "bytes", avail/2)
		}
	}
	return app.Run(ctx, cfg, logger, nil)
}

// memoryAvailable is the cgroup v2 memory limit if one is set, else the
// machine's total memory.
func memoryAvailable() (uint64, bool) {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			return v, true
		}
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err == nil && kb > 0
		}
	}
	return 0, false
}

// serveHelp prints serve's help: the description from the command table,
// the flags as config declares them (one declaration for flag, env and
// YAML key), the example.
func serveHelp(e env, args []string) error {
	var flags strings.Builder
	_, err := config.Load(args, e.getenv, &flags)
	if !errors.Is(err, flag.ErrHelp) {
		return err
	}
	c := *e.cmd
	c.example = ""
	printCommandHelp(e.stderr, &c, flag.NewFlagSet("", flag.ContinueOnError))
	text := strings.Replace(flags.String(), "Usage of vigil serve:\n", "\nFlags:\n", 1)
	e.warnf("%s\nExample:\n  %s\n", text, e.cmd.example)
	return flag.ErrHelp
}
