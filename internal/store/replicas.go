package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxReplicas is JetStream's largest replication factor.
const MaxReplicas = 5

// placementPatience is how long an automatic choice of three replicas
// waits for a forming cluster to place them before it settles for one.
const placementPatience = 15 * time.Second

// JetStream error codes the replica choice reacts to.
const (
	errCodeNoPeers               = 10005 // no suitable peers for placement
	errCodeInsufficientResources = 10023
	errCodeReplicasNotSupported  = 10074 // replicas > 1 in non-clustered mode
)

// chooseReplicas decides the replication factor of the stream and of every
// KV bucket: cfg.Replicas when given (never below what the stream already
// has), else 3 on a cluster that can place three replicas and 1 otherwise.
// It returns the factor and why, for the log line.
func (l *Log) chooseReplicas(ctx context.Context, scfg jetstream.StreamConfig) (jetstream.Stream, int, string, error) {
	want := l.cfg.Replicas
	if want < 0 || want > MaxReplicas {
		return nil, 0, "", fmt.Errorf("replicas %d: must be between 1 and %d", want, MaxReplicas)
	}
	if l.ns != nil {
		if want > 1 {
			return nil, 0, "", fmt.Errorf("replicas %d needs an external NATS cluster (--nats); the embedded server keeps one copy", want)
		}
		scfg.Replicas = 1
		s, err := l.js.CreateOrUpdateStream(ctx, scfg)
		return s, 1, "embedded server", err
	}
	existing := 0
	if s, err := l.streamAtOpen(ctx); err == nil {
		existing = s.CachedInfo().Config.Replicas
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, "", fmt.Errorf("stream info: %w", err)
	}
	if want > 0 {
		if existing > want {
			return nil, 0, "", fmt.Errorf("stream %s has %d replicas; refusing to lower them to %d (--replicas/VIGIL_REPLICAS/replicas:): set %d, or lower the stream deliberately with `nats stream edit %s --replicas %d` first", StreamName, existing, want, existing, StreamName, want)
		}
		scfg.Replicas = want
		s, err := l.js.CreateOrUpdateStream(ctx, scfg)
		return s, want, "configured", err
	}
	// Automatic: three copies when the cluster can place them.
	reason := "automatic: NATS server not clustered"
	try := 1
	if l.nc.ConnectedClusterName() != "" {
		try, reason = 3, "automatic: JetStream cluster with at least 3 servers"
	}
	if existing > try {
		try, reason = existing, "automatic: kept the stream's existing replicas"
	}
	scfg.Replicas = try
	s, err := l.js.CreateOrUpdateStream(ctx, scfg)
	// A cluster that is still forming (its meta leader not elected, or
	// peers not yet known) cannot place three copies for a few seconds:
	// when the client already knows of three servers, ask again for a
	// while rather than settle for one copy for good.
	if known := len(l.nc.Servers()); err != nil && try > 1 && existing <= 1 && isPlacementError(err) && known >= 3 {
		deadline := time.Now().Add(placementPatience)
		for err != nil && isPlacementError(err) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return nil, 0, "", ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			s, err = l.js.CreateOrUpdateStream(ctx, scfg)
		}
	}
	if err != nil && try > 1 && existing <= 1 && isPlacementError(err) {
		scfg.Replicas, try = 1, 1
		reason = fmt.Sprintf("automatic: the cluster cannot place 3 replicas (%v)", err)
		s, err = l.js.CreateOrUpdateStream(ctx, scfg)
	}
	return s, try, reason, err
}

func isPlacementError(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeNoPeers, errCodeInsufficientResources, errCodeReplicasNotSupported:
		return true
	}
	return false
}

// Replicas is the replication factor chosen for the stream; every KV
// bucket of the node uses it too (OpenKeyValue).
func (l *Log) Replicas() int { return l.replicas }

// OpenKeyValue creates or opens a KV bucket with cfg.Replicas copies (at
// least 1). It raises the replicas of an existing bucket but never lowers
// them: a bucket with more replicas than asked is an error naming both.
func OpenKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if s, err := js.Stream(ctx, "KV_"+cfg.Bucket); err == nil {
		if have := s.CachedInfo().Config.Replicas; have > cfg.Replicas {
			return nil, fmt.Errorf("store: KV bucket %s has %d replicas; refusing to lower them to %d: set --replicas %d, or lower the bucket deliberately with `nats kv edit %s --replicas %d` first", cfg.Bucket, have, cfg.Replicas, have, cfg.Bucket, cfg.Replicas)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("store: KV bucket %s: %w", cfg.Bucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: KV bucket %s (%d replicas): %w", cfg.Bucket, cfg.Replicas, err)
	}
	return kv, nil
}
