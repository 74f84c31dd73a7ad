package main

import (
	"context"
	"log/slog"

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
	return app.Run(ctx, cfg, logger, nil)
}
