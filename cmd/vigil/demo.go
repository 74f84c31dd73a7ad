package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/demo"
)

func runDemo(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var rf remoteFlags
	rf.register(fs)
	rate := fs.Float64("rate", 20, "events per second")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	count := fs.Int("count", 0, "stop after this many events (0: no limit)")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (same seed, same traffic)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 {
		return fmt.Errorf("--rate must be positive")
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	fmt.Fprintf(e.stdout, "vigil demo: publishing demo traffic (source %q, tag \"demo\") at %.0f events/s; Ctrl-C stops\n", demo.Source, *rate)
	gen := demo.New(*seed)
	// Send in ticks of up to 10 per second so high rates batch well.
	tick := time.Second / 10
	perTick := *rate / 10
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	sent, owed := 0, 0.0
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(e.stdout, "vigil demo: sent %d events\n", sent)
			return nil
		case <-ticker.C:
		}
		owed += perTick
		n := int(owed)
		owed -= float64(n)
		if *count > 0 && sent+n > *count {
			n = *count - sent
		}
		if n == 0 {
			if *count > 0 && sent >= *count {
				fmt.Fprintf(e.stdout, "vigil demo: sent %d events\n", sent)
				return nil
			}
			continue
		}
		batch := make([]*client.Event, n)
		now := time.Now()
		for i := range batch {
			batch[i] = gen.Next()
			demo.Stamp(batch[i], now)
		}
		if _, err := c.Publish(ctx, batch); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return fmt.Errorf("demo: publish: %w", err)
		}
		sent += n
		if time.Since(lastReport) > 10*time.Second {
			fmt.Fprintf(e.stdout, "vigil demo: %d events sent\n", sent)
			lastReport = time.Now()
		}
	}
}
