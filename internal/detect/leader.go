package detect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/store"
)

// Leader election (docs/detections.md, "Fail-over"): of the nodes sharing
// one stream, only the holder of a lease evaluates rules, appends
// detection events and saves the cursor. The lease is one key in a KV
// bucket whose TTL (the stream's MaxAge) bounds how long it outlives a
// holder that stopped renewing:
//
//   - acquire: Create, which succeeds only when the key is absent (never
//     written, released, or expired);
//   - renew: Update with the revision we wrote last (compare-and-swap), so
//     a holder whose key expired and was taken by another node learns it
//     at its next renewal instead of overwriting the new holder;
//   - release (graceful stop): Delete with that revision, which the other
//     nodes see at once through a watch on the key and race to Create.
//
// A holder that cannot renew (its connection is gone, the server is slow)
// stops leading on its own clock, ttl-ttl/5 after it sent its last
// successful renewal: the server-side expiry is at least ttl after that
// send, so the old holder has stopped before anyone else can acquire.

// LeaderBucket is the KV bucket holding the detection engine's lease.
const LeaderBucket = "VIGIL_DETECT_LEADER"

// leaderKey is the lease's key in LeaderBucket.
const leaderKey = "engine"

// DefaultLeaseTTL is how long a lease outlives a holder that stopped
// renewing (a killed node): the bound on the fail-over time.
const DefaultLeaseTTL = 5 * time.Second

// errLeaseLost is the cause of a leader context ended by a lost lease.
var errLeaseLost = errors.New("detect: leadership lease lost")

// holder is the lease's value: who leads, for logs and operators
// (`nats kv get VIGIL_DETECT_LEADER engine`).
type holder struct {
	Node     string    `json:"node"`
	Instance string    `json:"instance"` // random per process: a restarted node is a new holder
	Since    time.Time `json:"since"`
}

// lease is one node's handle on the leadership key. It is used by the
// engine's Run goroutine only.
type lease struct {
	kv   jetstream.KeyValue
	ttl  time.Duration
	self holder
	rev  uint64 // revision of our last write while we hold it
}

func newLease(ctx context.Context, js jetstream.JetStream, bucket, node string, ttl time.Duration, replicas int) (*lease, error) {
	kv, err := store.OpenKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Vigil detection engine leadership lease (one key, renewed by the leader)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("detect: leader bucket %s: %w", bucket, err)
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("detect: leader instance id: %w", err)
	}
	return &lease{kv: kv, ttl: ttl, self: holder{Node: node, Instance: hex.EncodeToString(nonce[:])}}, nil
}

// tryAcquire takes the lease if nobody holds it. It returns the current
// holder when somebody else does.
func (l *lease) tryAcquire(ctx context.Context) (bool, holder, error) {
	l.self.Since = time.Now().UTC()
	v, _ := json.Marshal(l.self)
	rev, err := l.kv.Create(ctx, leaderKey, v)
	if err == nil {
		l.rev = rev
		return true, l.self, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, holder{}, fmt.Errorf("detect: acquire leadership: %w", err)
	}
	var cur holder
	if entry, err := l.kv.Get(ctx, leaderKey); err == nil {
		_ = json.Unmarshal(entry.Value(), &cur)
	}
	return false, cur, nil
}

// renew extends the lease. A revision mismatch means somebody else holds
// it now (ours expired): errLeaseLost.
func (l *lease) renew(ctx context.Context) error {
	v, _ := json.Marshal(l.self)
	rev, err := l.kv.Update(ctx, leaderKey, v, l.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %w", errLeaseLost, err)
	}
	if err != nil {
		return fmt.Errorf("detect: renew leadership: %w", err)
	}
	l.rev = rev
	return nil
}

// release gives the lease up if we still hold it (graceful stop), so
// another node takes over at once instead of after the TTL.
func (l *lease) release(ctx context.Context) error {
	if err := l.kv.Delete(ctx, leaderKey, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("detect: release leadership: %w", err)
	}
	return nil
}

// margin is how long before the server could expire the lease the holder
// stops leading on its own clock.
func (l *lease) margin() time.Duration { return l.ttl / 5 }

// keep renews the lease every ttl/3 until ctx ends. When the lease is
// lost — taken by another node, or not renewed before the local deadline
// — it calls lost and returns: the caller stops leading.
func (l *lease) keep(ctx context.Context, acquiredAt time.Time, lost context.CancelCauseFunc, onErr func(error)) {
	deadline := acquiredAt.Add(l.ttl - l.margin())
	every := l.ttl / 3
	next := time.NewTimer(every)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		}
		if !time.Now().Before(deadline) {
			lost(fmt.Errorf("%w: not renewed within %s", errLeaseLost, l.ttl-l.margin()))
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, deadline)
		err := l.renew(rctx)
		cancel()
		switch {
		case err == nil:
			deadline = sent.Add(l.ttl - l.margin())
			next.Reset(every)
		case ctx.Err() != nil:
			return
		case errors.Is(err, errLeaseLost):
			lost(err)
			return
		default:
			onErr(err)
			// Retry soon, but wake up at the deadline at the latest.
			next.Reset(max(0, min(every/4, time.Until(deadline))))
		}
	}
}
