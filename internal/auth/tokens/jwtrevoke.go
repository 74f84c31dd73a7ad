package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/auth"
)

// JWTRevocationBucket is the JetStream KV bucket of JWT revocations.
const JWTRevocationBucket = "VIGIL_JWT_REVOCATIONS"

// JWTRevocation revokes JWTs before they expire: one JWT by its jti claim,
// or every JWT of a subject issued at or before a time (the sub claim, or
// the jti of a JWT without sub, as principals are named "jwt:<sub>").
type JWTRevocation struct {
	Key          string     `json:"key"`
	JTI          string     `json:"jti,omitempty"`
	Subject      string     `json:"sub,omitempty"`
	IssuedBefore *time.Time `json:"issued_before,omitempty"` // sub revocations
	RevokedAt    time.Time  `json:"revoked_at"`
	RevokedBy    string     `json:"revoked_by,omitempty"`
	// ExpiresAt is when the entry stops mattering (the revoked JWT's own
	// expiry); after it the entry is dropped. Nil: kept until deleted.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (r *JWTRevocation) expired(now time.Time) bool {
	return r.ExpiresAt != nil && !now.Before(*r.ExpiresAt)
}

// Keys are hashes: jti and sub values are arbitrary strings, KV keys are not.
func jtiKey(jti string) string { return "jti-" + shortHash(jti) }
func subKey(sub string) string { return "sub-" + shortHash(sub) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// JWTRevocations keeps revocations in a KV bucket, shared by every node,
// and a cache of them in memory kept current by Run.
type JWTRevocations struct {
	kv  jetstream.KeyValue
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	byKey map[string]*JWTRevocation
	// index is an immutable snapshot of byKey by raw jti and subject,
	// replaced on every change: Revoked runs on the delivery path (the
	// policy asks it for every event offered to a JWT principal), so it
	// takes no lock and hashes nothing.
	index atomic.Pointer[jwtIndex]
}

type jwtIndex struct {
	byJTI map[string]*JWTRevocation
	bySub map[string]*JWTRevocation
}

// reindexLocked rebuilds the snapshot from byKey; r.mu must be held.
func (r *JWTRevocations) reindexLocked() {
	ix := &jwtIndex{byJTI: map[string]*JWTRevocation{}, bySub: map[string]*JWTRevocation{}}
	for _, rev := range r.byKey {
		switch {
		case rev.JTI != "":
			ix.byJTI[rev.JTI] = rev
		case rev.Subject != "":
			ix.bySub[rev.Subject] = rev
		}
	}
	r.index.Store(ix)
}

// set records rev under key (nil: removes it) and refreshes the snapshot.
func (r *JWTRevocations) set(key string, rev *JWTRevocation) {
	r.mu.Lock()
	if rev == nil {
		delete(r.byKey, key)
	} else {
		r.byKey[key] = rev
	}
	r.reindexLocked()
	r.mu.Unlock()
}

// OpenJWTRevocations creates or opens the bucket and loads it, dropping
// entries whose JWT has expired anyway.
func OpenJWTRevocations(ctx context.Context, js jetstream.JetStream, logger *slog.Logger) (*JWTRevocations, error) {
	return OpenJWTRevocationsWith(ctx, js, logger, BucketOptions{})
}

// OpenJWTRevocationsWith is OpenJWTRevocations with the bucket's replicas.
func OpenJWTRevocationsWith(ctx context.Context, js jetstream.JetStream, logger *slog.Logger, o BucketOptions) (*JWTRevocations, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kv, err := openBucket(ctx, js, JWTRevocationBucket, "Vigil: JWTs revoked before their expiry (by jti or subject)", o)
	if err != nil {
		return nil, err
	}
	r := &JWTRevocations{kv: kv, log: logger, now: time.Now, byKey: map[string]*JWTRevocation{}}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("tokens: list jwt revocations: %w", err)
	}
	for key := range lister.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // deleted meanwhile
		}
		var rev JWTRevocation
		if json.Unmarshal(e.Value(), &rev) != nil {
			logger.Warn("undecodable jwt revocation", "key", key)
			continue
		}
		if rev.expired(r.now()) {
			_ = kv.Delete(ctx, key)
			continue
		}
		r.byKey[key] = &rev
	}
	r.mu.Lock()
	r.reindexLocked()
	r.mu.Unlock()
	return r, nil
}

// Run keeps the cache in step with the bucket (revocations made on other
// nodes) and deletes entries whose JWTs have expired anyway, every
// PruneInterval, until ctx ends. The caller owns the goroutine.
func (r *JWTRevocations) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by Run: ends with ctx
		defer wg.Done()
		t := time.NewTicker(PruneInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.Prune(ctx)
			}
		}
	}()
	defer wg.Wait()
	return keepWatching(ctx, r.log, "jwt revocations", r.kv, func(key string, val []byte) {
		var rev JWTRevocation
		if err := json.Unmarshal(val, &rev); err != nil {
			r.log.Warn("undecodable jwt revocation", "key", key, "err", err)
			return
		}
		r.set(key, &rev)
	}, func(key string) {
		r.set(key, nil)
	})
}

// PruneInterval is how often Run deletes expired revocations.
const PruneInterval = 10 * time.Minute

// Prune deletes from the bucket (and the cache) the entries whose revoked
// JWTs have expired anyway, and returns how many. Every node prunes; a
// second delete of the same key is harmless.
func (r *JWTRevocations) Prune(ctx context.Context) int {
	now := r.now()
	var expired []string
	r.mu.Lock()
	for key, rev := range r.byKey {
		if rev.expired(now) {
			expired = append(expired, key)
		}
	}
	r.mu.Unlock()
	n := 0
	for _, key := range expired {
		if err := r.kv.Delete(ctx, key); err != nil {
			r.log.Warn("pruning an expired jwt revocation", "key", key, "err", err)
			continue
		}
		r.set(key, nil)
		n++
	}
	return n
}

// ErrBadRevocation names what is wrong with a revocation request.
var ErrBadRevocation = errors.New("give exactly one of jti or sub")

// Add stores a revocation of one jti, or of a subject's JWTs issued at or
// before issuedBefore (zero: now). Revocations only widen: revoking what
// is already revoked keeps the later subject cutoff and the later expiry
// (no expiry wins), so a second request can never give JWTs back; lifting
// is Delete.
func (r *JWTRevocations) Add(ctx context.Context, jti, sub string, issuedBefore time.Time, expiresAt *time.Time, by string) (*JWTRevocation, error) {
	jti, sub = strings.TrimSpace(jti), strings.TrimSpace(sub)
	if (jti == "") == (sub == "") {
		return nil, ErrBadRevocation
	}
	now := r.now().UTC()
	rev := &JWTRevocation{JTI: jti, Subject: sub, RevokedAt: now, RevokedBy: by, ExpiresAt: expiresAt}
	if jti != "" {
		rev.Key = jtiKey(jti)
	} else {
		rev.Key = subKey(sub)
		if issuedBefore.IsZero() {
			issuedBefore = now
		}
		ib := issuedBefore.UTC()
		rev.IssuedBefore = &ib
	}
	r.mu.Lock()
	old := r.byKey[rev.Key]
	r.mu.Unlock()
	if old != nil && !old.expired(now) {
		if old.IssuedBefore != nil && rev.IssuedBefore != nil && old.IssuedBefore.After(*rev.IssuedBefore) {
			rev.IssuedBefore = old.IssuedBefore
		}
		if old.ExpiresAt == nil || (rev.ExpiresAt != nil && old.ExpiresAt.After(*rev.ExpiresAt)) {
			rev.ExpiresAt = old.ExpiresAt
		}
	}
	b, err := json.Marshal(rev)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode jwt revocation: %w", err)
	}
	if _, err := r.kv.Put(ctx, rev.Key, b); err != nil {
		return nil, fmt.Errorf("tokens: store jwt revocation: %w", err)
	}
	r.set(rev.Key, rev)
	return rev, nil
}

// Delete lifts a revocation; ErrNotFound if there is none under key.
func (r *JWTRevocations) Delete(ctx context.Context, key string) error {
	r.mu.Lock()
	_, ok := r.byKey[key]
	r.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if err := r.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("tokens: delete jwt revocation: %w", err)
	}
	r.set(key, nil)
	return nil
}

// List returns every revocation in force, newest first.
func (r *JWTRevocations) List() []*JWTRevocation {
	now := r.now()
	r.mu.Lock()
	out := make([]*JWTRevocation, 0, len(r.byKey))
	for _, rev := range r.byKey {
		if !rev.expired(now) {
			out = append(out, rev)
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].RevokedAt.After(out[j].RevokedAt) })
	return out
}

// Revoked reports whether the JWT behind p is revoked: by its jti, or by
// its subject with an issue time at or before the subject's cutoff (a JWT
// without iat counts as issued before any cutoff). Other principals are
// not its business. It takes no lock: the delivery policy calls it for
// every event offered to a JWT principal.
func (r *JWTRevocations) Revoked(p *auth.Principal) bool {
	sub, isJWT := strings.CutPrefix(p.ID, "jwt:")
	if !isJWT {
		return false
	}
	ix := r.index.Load()
	if ix == nil || len(ix.byJTI)+len(ix.bySub) == 0 {
		return false
	}
	jtiRev := ix.byJTI[p.JTI]
	if p.JTI == "" {
		jtiRev = nil
	}
	subRev := ix.bySub[sub]
	if jtiRev == nil && subRev == nil {
		return false
	}
	now := r.now()
	if jtiRev != nil && !jtiRev.expired(now) {
		return true
	}
	if subRev != nil && !subRev.expired(now) && subRev.IssuedBefore != nil {
		return p.IssuedAt.IsZero() || !p.IssuedAt.After(*subRev.IssuedBefore)
	}
	return false
}

// Checked wraps a JWT authenticator so that revoked JWTs are refused.
func (r *JWTRevocations) Checked(next auth.Authenticator) auth.Authenticator {
	return checkedAuth{next: next, revs: r}
}

type checkedAuth struct {
	next auth.Authenticator
	revs *JWTRevocations
}

func (c checkedAuth) Authenticate(ctx context.Context, tok string) (*auth.Principal, error) {
	p, err := c.next.Authenticate(ctx, tok)
	if err != nil {
		return nil, err
	}
	if c.revs.Revoked(p) {
		return nil, auth.ErrTokenRevoked
	}
	return p, nil
}
