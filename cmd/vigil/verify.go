package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/vigil-sec/vigil/internal/datadir"
	"github.com/vigil-sec/vigil/internal/store"
)

func runVerify(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	offline := fs.Bool("offline", false, "open --data-dir directly instead of asking the server (server must be stopped)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rep store.VerifyReport
	if *offline {
		dir := firstNonEmpty(rf.dataDir, e.getenv("VIGIL_DATA_DIR"), "./vigil-data")
		// Opening the store of a running node would start a second
		// JetStream server on its files: refuse a live directory, as
		// serve does (and do not create a missing one).
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("verify: data dir: %w", err)
		}
		lock, err := datadir.Acquire(dir)
		if err != nil {
			return fmt.Errorf("verify --offline: %w", err)
		}
		defer func() { _ = lock.Release() }() // after log.Close
		log, err := store.Open(ctx, store.Config{DataDir: dir})
		if err != nil {
			return err
		}
		defer log.Close()
		if rep, err = log.Verify(ctx); err != nil {
			return err
		}
	} else {
		c, err := rf.client(e)
		if err != nil {
			return err
		}
		if err := c.Do(ctx, http.MethodGet, "/api/v1/integrity", nil, &rep); err != nil {
			return err
		}
	}
	if *asJSON {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		e.printf("checked %d events (seq %d..%d) in %d chain(s)\n", rep.Checked, rep.First, rep.Last, len(rep.Chains))
	}
	if rep.Broken != nil {
		if !*asJSON {
			e.printf("BROKEN at seq %d (id %s, chain %s): %s\n", rep.Broken.Seq, rep.Broken.ID, rep.Broken.Chain, rep.Broken.Reason)
		}
		return errors.New("integrity check failed")
	}
	if !*asJSON {
		e.println("OK: every hash and link checks out")
	}
	return nil
}
