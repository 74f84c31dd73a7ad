package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/demo"
)

func runDemo(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	rate := fs.Float64("rate", 20, "events per second")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	count := fs.Int("count", 0, "stop after this many events (0: no limit)")
	seed := fs.Uint64("seed", 0, "random seed: same seed, same traffic (0: a new seed each run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
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
	e.printf("vigil demo: publishing demo traffic (source %q, tag \"demo\") at %.0f events/s; Ctrl-C stops\n", demo.Source, *rate)
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
			e.printf("vigil demo: sent %d events\n", sent)
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
				e.printf("vigil demo: sent %d events\n", sent)
				return nil
			}
			continue
		}
		batch := make([]*client.Event, n)
		now := time.Now()
		for i := range batch {
			ev := gen.Next()
			demo.Stamp(ev, now)
			batch[i] = toClientEvent(ev)
		}
		if err := publishUntilStored(ctx, e, c, batch); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return fmt.Errorf("demo: publish: %w", err)
		}
		sent += n
		if time.Since(lastReport) > 10*time.Second {
			e.printf("vigil demo: %d events sent\n", sent)
			lastReport = time.Now()
		}
	}
}

// publishUntilStored publishes batch, and while the server cannot be
// reached or answers 5xx/429 (a restart, a fail-over) keeps retrying the
// same batch, whose ids make a retry idempotent. It gives up only on a
// refusal retrying cannot fix (bad token, rejected events, untrusted
// certificate) or when ctx ends.
func publishUntilStored(ctx context.Context, e env, c *client.Client, batch []*client.Event) error {
	wait := 500 * time.Millisecond
	down := false
	for {
		_, err := c.Publish(ctx, batch)
		if err == nil {
			if down {
				e.printf("vigil demo: server back; publishing again\n")
			}
			return nil
		}
		if ctx.Err() != nil || permanent(err) {
			return err
		}
		if !down {
			e.warnf("vigil demo: server unavailable (%v); retrying until it is back (Ctrl-C stops)\n", err)
			down = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// permanent reports an error retrying cannot fix: a 4xx answer other than
// 429, or a TLS refusal (an untrusted certificate, or the server's alert,
// e.g. for a missing client certificate).
func permanent(err error) bool {
	var he *client.Error
	if errors.As(err, &he) {
		return he.Status/100 == 4 && he.Status != http.StatusTooManyRequests
	}
	var verify *tls.CertificateVerificationError
	var op *net.OpError // crypto/tls reports the peer's alert as Op "remote error"
	return errors.As(err, &verify) || (errors.As(err, &op) && op.Op == "remote error")
}
