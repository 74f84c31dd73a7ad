package outputs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/store"
)

// RepeatBucket is the KV bucket holding, per output and detection, what
// was last sent for repeat_interval. Kept in JetStream rather than only in
// memory so that a restart does not page again for an unchanged detection
// and every node of a cluster (they share each output's consumer, so the
// updates of one detection land on different nodes) sees what the others
// sent.
const RepeatBucket = "VIGIL_OUTPUT_REPEATS"

const (
	// DefaultRepeatBucketBytes bounds the bucket: ~150 bytes per entry on
	// disk, so room for ~200,000 detections within their intervals. When
	// it is full a Put fails and the output carries on with its own
	// memory (logged): an extra page after a restart, never a lost one.
	DefaultRepeatBucketBytes = 32 << 20
	// repeatTimeout bounds one bucket read or write on the delivery path:
	// an unreachable log must not hold deliveries (the local memory then
	// decides alone).
	repeatTimeout = 2 * time.Second
)

// sent is what an output last sent for one detection.
type sent struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// suppresses reports whether an update with status, at now, repeats s
// within interval.
func (s sent) suppresses(status string, now time.Time, interval time.Duration) bool {
	return s.Status == status && now.Sub(s.At) < interval
}

// repeatStore is the shared repeat_interval memory (RepeatBucket).
type repeatStore struct {
	kv jetstream.KeyValue
}

// openRepeats opens RepeatBucket with entries kept for the longest
// repeat_interval of defs; nil when no output has one.
func openRepeats(ctx context.Context, js jetstream.JetStream, defs []Definition, replicas int, maxBytes int64) (*repeatStore, error) {
	var longest time.Duration
	for _, d := range defs {
		longest = max(longest, d.RepeatInterval)
	}
	if longest == 0 {
		return nil, nil
	}
	if maxBytes <= 0 {
		maxBytes = DefaultRepeatBucketBytes
	}
	kv, err := store.OpenKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      RepeatBucket,
		Description: "Vigil outputs: what each output last sent per detection (repeat_interval)",
		History:     1,
		TTL:         longest,
		MaxBytes:    maxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("repeat_interval memory: %w", err)
	}
	return &repeatStore{kv: kv}, nil
}

// repeatKey names output's entry for detection (ids the engine makes,
// UUIDs, stay readable; anything else is hashed).
func repeatKey(output, detection string) string {
	return output + "." + store.KeyToken(detection)
}

// get returns what output last sent for detection, as any node recorded
// it; ok is false when nothing is recorded (or it could not be read).
func (r *repeatStore) get(ctx context.Context, output, detection string) (s sent, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, repeatTimeout)
	defer cancel()
	e, err := r.kv.Get(ctx, repeatKey(output, detection))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sent{}, false, nil
	}
	if err != nil {
		return sent{}, false, err
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return sent{}, false, fmt.Errorf("entry %s: %w", e.Key(), err)
	}
	return s, true, nil
}

func (r *repeatStore) put(ctx context.Context, output, detection string, s sent) error {
	ctx, cancel := context.WithTimeout(ctx, repeatTimeout)
	defer cancel()
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = r.kv.Put(ctx, repeatKey(output, detection), b)
	return err
}
