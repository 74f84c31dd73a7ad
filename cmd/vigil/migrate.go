package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vigil-sec/vigil/internal/datadir"
	"github.com/vigil-sec/vigil/internal/store"
)

// runMigrate rewrites the log's stream in the current layout (issue 12
// item 8: layout 2, no id in the subjects), keeping every seq, store time
// and output consumer position. Every node using the stream must be
// stopped: for the embedded server the data dir's lock says so.
func runMigrate(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	dataDir := fs.String("data-dir", "", "data directory of the stopped node (env VIGIL_DATA_DIR, default ./vigil-data)")
	natsURL := fs.String("nats-url", "", "external NATS JetStream holding the stream (env VIGIL_NATS); every Vigil node using it must be stopped")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate: unexpected argument %q", fs.Arg(0))
	}
	cfg := store.Config{NATSURL: firstNonEmpty(*natsURL, e.getenv("VIGIL_NATS"))}
	if cfg.NATSURL == "" {
		cfg.DataDir = firstNonEmpty(*dataDir, e.getenv("VIGIL_DATA_DIR"), "./vigil-data")
		if _, err := os.Stat(cfg.DataDir); err != nil {
			return fmt.Errorf("migrate: data dir: %w", err)
		}
		// A running node holds the lock: its JetStream files must not
		// be opened by a second server.
		lock, err := datadir.Acquire(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		defer func() { _ = lock.Release() }()
	}
	rep, err := store.Migrate(ctx, cfg, func(step string) {
		if !*asJSON {
			e.println(step)
		}
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, rep)
	}
	if !rep.Done {
		e.println(rep.Reason)
		return nil
	}
	e.printf("migrated %d messages (seq %d..%d, every seq kept) to layout %s in %v\n", rep.Messages, rep.FirstSeq, rep.LastSeq, store.Layout, rep.Took.Round(time.Millisecond))
	for _, c := range rep.Consumers {
		e.printf("output consumer %s resumes at seq %d\n", c.Name, c.Resume)
	}
	return nil
}
