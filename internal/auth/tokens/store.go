// Package tokens owns opaque API tokens (SPEC 9): creating them (the
// secret is shown once and only its SHA-256 is kept), listing and revoking
// them, authenticating them, the admin REST API under /api/v1/tokens, and
// closing open connections whose token was revoked or has expired. Records
// live in a JetStream KV bucket, so every node of a cluster sees the same
// tokens and revocations.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-sec/vigil/internal/domain"
	"github.com/vigil-sec/vigil/internal/store"
	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/event"
)

// Bucket is the JetStream KV bucket holding token records.
const Bucket = "VIGIL_TOKENS"

// Prefix starts every opaque token: vgt_<id>_<secret>.
const Prefix = "vgt_"

const (
	idHexLen     = 16 // 64-bit id, public
	secretHexLen = 64 // 256-bit secret
)

// ErrNotFound is returned for an unknown token id. It is of kind
// domain.KindNotFound: errors.Is(err, domain.ErrNotFound) holds.
var ErrNotFound error = &domain.Error{Kind: domain.KindNotFound, Msg: "token not found"}

// Record is what is stored for one token. It never holds the token.
type Record struct {
	ID         string     `json:"id"`
	Name       string     `json:"name,omitempty"`
	Role       auth.Role  `json:"role"`
	Tenant     string     `json:"tenant"`
	Categories []string   `json:"categories,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// Hash is hex SHA-256 of the whole token. Tokens carry 256 random bits,
	// so a fast hash is enough: there is nothing to brute-force.
	Hash string `json:"hash"`

	// principal is made once when the record enters the cache and shared
	// by every connection of the token (principals are read-only).
	principal *auth.Principal
}

// Revoked reports whether the record was revoked.
func (r *Record) Revoked() bool { return r.RevokedAt != nil }

// Expired reports whether the record has expired at now.
func (r *Record) Expired(now time.Time) bool { return r.ExpiresAt != nil && !now.Before(*r.ExpiresAt) }

// Principal is the principal a valid token of this record authenticates as.
func (r *Record) Principal() *auth.Principal {
	if r.principal != nil {
		return r.principal
	}
	return r.makePrincipal()
}

func (r *Record) makePrincipal() *auth.Principal {
	p := &auth.Principal{ID: r.ID, Name: r.Name, Role: r.Role, Tenant: r.Tenant}
	for _, c := range r.Categories {
		p.Categories = append(p.Categories, event.Category(c))
	}
	if r.ExpiresAt != nil {
		p.ExpiresAt = *r.ExpiresAt
	}
	return p
}

// Spec is a request for a new token.
type Spec struct {
	Name       string
	Role       auth.Role
	Tenant     string   // "" : default (admin: all tenants)
	Categories []string // empty: every category
	TTL        time.Duration
	// NotAfter, when set, caps the expiry: a token created by an expiring
	// admin token never outlives it (no TTL: expires at NotAfter).
	NotAfter time.Time
}

// Store keeps token records in KV and a cache of them in memory, kept
// current by Run's watcher.
type Store struct {
	kv  jetstream.KeyValue
	log *slog.Logger
	now func() time.Time

	mu    sync.RWMutex
	cache map[string]*Record

	// missFetch bounds KV reads for ids the cache does not know. The watcher
	// keeps the cache complete; a miss is either a token created on another
	// node a moment ago or a guess, and guesses must not turn into unbounded
	// round trips to the bucket.
	missFetch *rate.Limiter

	// revoked is a copy-on-write set of revoked ids, read on every delivery
	// by the policy (IsRevoked) without taking a lock.
	revoked atomic.Pointer[map[string]bool]
	// maxLive is MaxLiveTokensPerTenant (lowered by tests).
	maxLive int
}

// IsRevoked reports whether id names a revoked token. It is cheap enough
// for the delivery path: the policy refuses deliveries to a revoked token
// even in the moment before the enforcer closes its connection.
func (s *Store) IsRevoked(id string) bool {
	m := s.revoked.Load()
	return m != nil && (*m)[id]
}

// noteLocked records r in the cache and, if revoked, in the revoked set.
// s.mu must be held.
func (s *Store) noteLocked(r *Record) {
	r.principal = r.makePrincipal()
	s.cache[r.ID] = r
	if !r.Revoked() || s.IsRevoked(r.ID) {
		return
	}
	old := s.revoked.Load()
	next := map[string]bool{r.ID: true}
	if old != nil {
		for id := range *old {
			next[id] = true
		}
	}
	s.revoked.Store(&next)
}

// BucketOptions says how the package's KV buckets are kept.
type BucketOptions struct {
	// Replicas of each bucket (store.Log.Replicas: the stream's). 0 means 1.
	// An existing bucket's replicas are raised, never lowered.
	Replicas int
}

// openBucket creates or opens one of the package's KV buckets: one value
// per key, on disk, replicated like the stream on a cluster.
func openBucket(ctx context.Context, js jetstream.JetStream, name, description string, o BucketOptions) (jetstream.KeyValue, error) {
	kv, err := store.OpenKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: name, Description: description, History: 1, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: open bucket %s: %w", name, err)
	}
	return kv, nil
}

// Open creates or opens the bucket (one replica) and loads every record.
func Open(ctx context.Context, js jetstream.JetStream, logger *slog.Logger) (*Store, error) {
	return OpenWith(ctx, js, logger, BucketOptions{})
}

// OpenWith is Open with the bucket's replicas.
func OpenWith(ctx context.Context, js jetstream.JetStream, logger *slog.Logger, o BucketOptions) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kv, err := openBucket(ctx, js, Bucket, "Vigil API tokens (hashes only)", o)
	if err != nil {
		return nil, err
	}
	s := &Store{kv: kv, log: logger, now: time.Now, cache: map[string]*Record{}, missFetch: rate.NewLimiter(50, 100), maxLive: MaxLiveTokensPerTenant}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) reload(ctx context.Context) error {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("tokens: list: %w", err)
	}
	fresh := map[string]*Record{}
	for key := range lister.Keys() {
		r, err := s.fetch(ctx, key)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		fresh[key] = r
	}
	s.mu.Lock()
	s.cache = fresh
	for _, r := range fresh {
		s.noteLocked(r)
	}
	s.mu.Unlock()
	return nil
}

func (s *Store) fetch(ctx context.Context, id string) (*Record, error) {
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("tokens: get %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("tokens: decode %s: %w", id, err)
	}
	return &r, nil
}

// Run keeps the cache in step with the bucket (revocations made on other
// nodes) until ctx ends. It is the store's one goroutine; the caller owns it.
func (s *Store) Run(ctx context.Context) error {
	return keepWatching(ctx, s.log, "token", s.kv, func(key string, val []byte) {
		var r Record
		if err := json.Unmarshal(val, &r); err != nil {
			s.log.Warn("undecodable token record", "id", key, "err", err)
			return
		}
		r.ID = key
		s.mu.Lock()
		s.noteLocked(&r)
		s.mu.Unlock()
	}, func(key string) {
		s.mu.Lock()
		delete(s.cache, key)
		s.mu.Unlock()
	})
}

// keepWatching applies every change of kv through put and del until ctx
// ends, restarting the watch a second after it breaks.
func keepWatching(ctx context.Context, log *slog.Logger, what string, kv jetstream.KeyValue, put func(key string, val []byte), del func(key string)) error {
	for {
		err := watchKV(ctx, kv, put, del)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn(what+" watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func watchKV(ctx context.Context, kv jetstream.KeyValue, put func(key string, val []byte), del func(key string)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("tokens: watch: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("tokens: watch closed")
			}
			if e == nil {
				continue // end of the initial values
			}
			if e.Operation() != jetstream.KeyValuePut {
				del(e.Key())
				continue
			}
			put(e.Key(), e.Value())
		}
	}
}

// Create stores a new token and returns it with its record. The token is
// returned only here; it cannot be recovered later.
func (s *Store) Create(ctx context.Context, spec Spec, createdBy string) (string, *Record, error) {
	rec, err := s.recordFor(spec, createdBy)
	if err != nil {
		return "", nil, err
	}
	idb := make([]byte, idHexLen/2)
	if _, err := rand.Read(idb); err != nil {
		return "", nil, fmt.Errorf("tokens: random id: %w", err)
	}
	rec.ID = hex.EncodeToString(idb)
	if n := s.live(rec.Tenant, s.now()); n >= s.maxLive {
		return "", nil, domain.Errorf(domain.KindConflict, "tenant %s has %d live tokens, the most a tenant may have: revoke some first", rec.Tenant, n)
	}
	secret, err := auth.NewSecret("")
	if err != nil {
		return "", nil, err
	}
	tok := Prefix + rec.ID + "_" + secret
	h := auth.HashToken(tok)
	rec.Hash = hex.EncodeToString(h[:])
	b, err := json.Marshal(rec)
	if err != nil {
		return "", nil, fmt.Errorf("tokens: encode: %w", err)
	}
	if _, err := s.kv.Create(ctx, rec.ID, b); err != nil {
		return "", nil, fmt.Errorf("tokens: store: %w", err)
	}
	s.mu.Lock()
	s.cache[rec.ID] = rec
	s.mu.Unlock()
	return tok, rec, nil
}

// MaxLiveTokensPerTenant bounds the tokens of one tenant that are neither
// revoked nor expired: a tenant admin (who may create tokens of its
// tenant) could otherwise grow the bucket, every node's cache and the
// token list without end (an audit created 5,000 in 1.6 s).
const MaxLiveTokensPerTenant = 10_000

// live counts the tenant's tokens neither revoked nor expired.
func (s *Store) live(tenant string, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.cache {
		if r.Tenant == tenant && !r.Revoked() && !r.Expired(now) {
			n++
		}
	}
	return n
}

// recordFor validates spec and fills a record without id and hash.
func (s *Store) recordFor(spec Spec, createdBy string) (*Record, error) {
	role, err := auth.ParseRole(string(spec.Role))
	if err != nil {
		return nil, err
	}
	tenant := spec.Tenant
	switch {
	case tenant == "" && role == auth.RoleAdmin:
		tenant = auth.AllTenants
	case tenant == "":
		tenant = auth.DefaultTenant
	case tenant == auth.AllTenants && role != auth.RoleAdmin:
		return nil, errors.New("only admin tokens may span all tenants (--tenant '*')")
	case tenant != auth.AllTenants && !event.ValidTenant(tenant):
		return nil, fmt.Errorf("invalid tenant %q (letters, digits, '-' and '_')", tenant)
	}
	var cats []string
	for _, c := range spec.Categories {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if _, err := event.ParseCategory(c); err != nil {
			return nil, err
		}
		if !slices.Contains(cats, c) {
			cats = append(cats, c)
		}
	}
	if len(spec.Name) > 200 {
		return nil, errors.New("name longer than 200 characters")
	}
	if spec.TTL < 0 {
		return nil, errors.New("expiry must be positive")
	}
	now := s.now().UTC()
	rec := &Record{Name: spec.Name, Role: role, Tenant: tenant, Categories: cats, CreatedAt: now, CreatedBy: createdBy}
	if spec.TTL > 0 {
		exp := now.Add(spec.TTL)
		rec.ExpiresAt = &exp
	}
	if !spec.NotAfter.IsZero() && (rec.ExpiresAt == nil || rec.ExpiresAt.After(spec.NotAfter)) {
		exp := spec.NotAfter.UTC()
		rec.ExpiresAt = &exp
	}
	return rec, nil
}

// Get returns one record.
func (s *Store) Get(ctx context.Context, id string) (*Record, error) {
	s.mu.RLock()
	r, ok := s.cache[id]
	s.mu.RUnlock()
	if ok {
		return r, nil
	}
	if !validID(id) || !s.missFetch.Allow() {
		return nil, ErrNotFound
	}
	return s.fetch(ctx, id)
}

// List returns every record, newest first.
func (s *Store) List(ctx context.Context) ([]*Record, error) {
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	s.mu.RLock()
	out := make([]*Record, 0, len(s.cache))
	for _, r := range s.cache {
		out = append(out, r)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// Revoke marks a token revoked. The record is kept (for audit) with its
// revocation time; revoking twice is not an error.
func (s *Store) Revoke(ctx context.Context, id string) (*Record, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	for attempt := 0; attempt < 5; attempt++ {
		e, err := s.kv.Get(ctx, id)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
				return nil, ErrNotFound
			}
			return nil, fmt.Errorf("tokens: revoke %s: %w", id, err)
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, fmt.Errorf("tokens: decode %s: %w", id, err)
		}
		if r.RevokedAt == nil {
			now := s.now().UTC()
			r.RevokedAt = &now
		}
		b, err := json.Marshal(&r)
		if err != nil {
			return nil, fmt.Errorf("tokens: encode: %w", err)
		}
		if _, err := s.kv.Update(ctx, id, b, e.Revision()); err != nil {
			continue // changed concurrently: read again
		}
		s.mu.Lock()
		s.noteLocked(&r)
		s.mu.Unlock()
		return &r, nil
	}
	return nil, fmt.Errorf("tokens: revoke %s: too many concurrent updates", id)
}

// Authenticate implements auth.Authenticator for opaque tokens.
func (s *Store) Authenticate(ctx context.Context, tok string) (*auth.Principal, error) {
	id, ok := ParseToken(tok)
	if !ok {
		return nil, auth.ErrBadToken
	}
	r, err := s.Get(ctx, id)
	if err != nil {
		return nil, auth.ErrBadToken
	}
	want, err := hex.DecodeString(r.Hash)
	if err != nil {
		return nil, auth.ErrBadToken
	}
	got := auth.HashToken(tok)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return nil, auth.ErrBadToken
	}
	if r.Revoked() {
		return nil, auth.ErrTokenRevoked
	}
	if r.Expired(s.now()) {
		return nil, auth.ErrTokenExpired
	}
	return r.Principal(), nil
}

// Valid reports whether the token with this id may still be used: false
// when it is revoked, expired or gone. Ids the store does not know (the
// admin token, JWT subjects) are not its business and report true.
func (s *Store) Valid(id string, now time.Time) (valid bool, reason string) {
	s.mu.RLock()
	r, ok := s.cache[id]
	s.mu.RUnlock()
	if !ok {
		return true, ""
	}
	switch {
	case r.Revoked():
		return false, "revoked"
	case r.Expired(now):
		return false, "expired"
	}
	return true, ""
}

// ParseToken checks the shape of an opaque token and returns its id. It
// does not say whether the token is valid.
func ParseToken(tok string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(tok, Prefix)
	if !ok || len(rest) != idHexLen+1+secretHexLen || rest[idHexLen] != '_' {
		return "", false
	}
	id, secret := rest[:idHexLen], rest[idHexLen+1:]
	if !isHex(id) || !isHex(secret) {
		return "", false
	}
	return id, true
}

func validID(id string) bool { return len(id) == idHexLen && isHex(id) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
