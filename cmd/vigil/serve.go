package main

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/vigil-sec/vigil/internal/app"
	"github.com/vigil-sec/vigil/internal/config"
)

func runServe(ctx context.Context, e env, args []string) error {
	cfg, err := config.Load(args, e.getenv, e.stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	if e.getenv("GOGC") == "" {
		// The hub and the log allocate per event; at the default 100% the
		// collector takes a fifth of the CPU (docs/operations.md).
		debug.SetGCPercent(400)
	}
	return app.Run(ctx, cfg, logger, nil)
}
