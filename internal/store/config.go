package store

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Config says where the log lives and how it is kept.
type Config struct {
	// DataDir holds the embedded server's JetStream files. Ignored when
	// NATSURL is set.
	DataDir string
	// NATSURL points at an external NATS JetStream cluster; empty means the
	// embedded server.
	NATSURL string
	// NodeID names this node's integrity chain. Nodes sharing one stream
	// must use distinct ids.
	NodeID string
	// Listen, when set, opens the embedded server to NATS clients on this
	// host:port (producers using vigil.ingest.<tenant>), requiring
	// ListenToken. Empty: no listener, in-process only.
	Listen      string
	ListenToken string
	// ListenTLS, when set, makes the listener require TLS with this
	// configuration (the HTTP listener's, so the certificate reloads with
	// it); in-process connections stay plain.
	ListenTLS *tls.Config
	// SyncAlways makes the embedded file store fsync every write (survives
	// power loss; costs throughput). Default: fsync every 2 minutes, which
	// survives a killed process but not a lost machine.
	SyncAlways bool
	// DedupWindow is how long a producer-chosen id is remembered.
	DedupWindow time.Duration
	// DedupSnapshotInterval is how often the embedded log writes its dedup
	// index to <DataDir>/dedup-index.snapshot while it runs (Close writes
	// it too), so that a start after a crash reads from the log only the
	// events stored after the newest snapshot. 0 means 10 s; negative
	// writes it only at Close.
	DedupSnapshotInterval time.Duration
	// MaxAge and MaxBytes bound retention; zero means unlimited.
	MaxAge   time.Duration
	MaxBytes int64
	// Replicas is the replication factor of the stream and of every KV
	// bucket. 0 chooses: 3 when the external NATS is a cluster that can
	// place three copies, else 1. The embedded server takes only 1. An
	// existing stream's replicas are raised, never lowered (Open refuses).
	Replicas int
	// Logger receives the replica choice and rate-limited reports of
	// stored messages that are not events. Nil discards.
	Logger *slog.Logger
	// ReplayCacheBytes and ReplayCacheEvents bound the recent-event ring
	// (ring.go): the newest events, decoded, kept in memory by the tail
	// so replays of them skip JetStream. Bytes are the estimated memory
	// the events hold (2.25 times the stored JSON plus 1 KiB each).
	// 0 means the default (64 MiB, 1,048,576 events); negative disables.
	ReplayCacheBytes  int64
	ReplayCacheEvents int
	// ReplaySpillBytes bounds the replay spill (spill.go): the ring
	// continued on disk, in <DataDir>/replay-spill, for replays older than
	// the ring. 0 means the default (1 GiB); negative disables it; so does
	// an empty DataDir. A clean Close (or, after a crash, the last
	// checkpoint) leaves it for the next Open, which keeps it only if it
	// still agrees with the log (spill_restart.go); an Open with it
	// disabled deletes it.
	ReplaySpillBytes int64
	// ReplaySpillCheckpoint is how often the spill's writer describes
	// what it has flushed in a manifest, so that a crash leaves a spill
	// the next Open can check and keep (spill_restart.go); 0 means
	// DefaultReplaySpillCheckpoint.
	ReplaySpillCheckpoint time.Duration
	// MaxMemory and MaxStore cap the embedded JetStream (bytes).
	MaxMemory int64
	MaxStore  int64

	// rebuildGate, when set (tests), holds the dedup rebuild after Open
	// until it is closed: a rebuild that is still running, on demand.
	rebuildGate <-chan struct{}
}

func (c *Config) defaults() {
	if c.NodeID == "" {
		c.NodeID = "node-1"
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 2 * time.Minute
	}
	if c.DedupSnapshotInterval == 0 {
		c.DedupSnapshotInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = 256 << 20
	}
	if c.MaxStore == 0 {
		c.MaxStore = 64 << 30
	}
}

const (
	// StreamName is the JetStream stream holding every event.
	StreamName = "VIGIL_EVENTS"
	// SubjectPrefix starts every event subject:
	// vigil.events.<tenant>.<category>.<severity>.<id>
	SubjectPrefix = "vigil.events"
)
