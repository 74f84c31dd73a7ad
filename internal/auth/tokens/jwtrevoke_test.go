package tokens

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

func TestJWTRevocations(t *testing.T) {
	ctx := context.Background()
	l, dir := openLog(t)
	r, err := OpenJWTRevocations(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	jwtP := func(sub, jti string, iat time.Time) *auth.Principal {
		return &auth.Principal{ID: "jwt:" + sub, Role: auth.RoleAnalyst, JTI: jti, IssuedAt: iat}
	}
	if _, err := r.Add(ctx, "", "", time.Time{}, nil, "admin"); !errors.Is(err, ErrBadRevocation) {
		t.Fatalf("neither jti nor sub: %v", err)
	}
	if _, err := r.Add(ctx, "a", "b", time.Time{}, nil, "admin"); !errors.Is(err, ErrBadRevocation) {
		t.Fatalf("both jti and sub: %v", err)
	}
	// One JWT by jti (an arbitrary string: keys are hashes).
	if _, err := r.Add(ctx, "tok 1/ü", "", time.Time{}, nil, "admin"); err != nil {
		t.Fatal(err)
	}
	// Every JWT of bob issued at or before t0.
	bob, err := r.Add(ctx, "", "bob", t0, nil, "admin")
	if err != nil {
		t.Fatal(err)
	}
	// An entry for a JWT that has expired anyway: ignored, dropped on load.
	past := time.Now().Add(-time.Minute)
	if _, err := r.Add(ctx, "old", "", time.Time{}, &past, "admin"); err != nil {
		t.Fatal(err)
	}
	check := func(r *JWTRevocations) {
		t.Helper()
		for _, c := range []struct {
			name string
			p    *auth.Principal
			want bool
		}{
			{"revoked jti", jwtP("alice", "tok 1/ü", t0), true},
			{"other jti", jwtP("alice", "tok 2", t0), false},
			{"bob issued before the cutoff", jwtP("bob", "x", t0.Add(-time.Minute)), true},
			{"bob issued at the cutoff", jwtP("bob", "x", t0), true},
			{"bob issued after the cutoff", jwtP("bob", "y", t0.Add(time.Second)), false},
			{"bob without iat", jwtP("bob", "z", time.Time{}), true},
			{"expired entry", jwtP("carol", "old", t0), false},
			{"opaque token with a revoked-looking jti", &auth.Principal{ID: "0123456789abcdef", JTI: "tok 1/ü"}, false},
		} {
			if got := r.Revoked(c.p); got != c.want {
				t.Errorf("%s: revoked = %v, want %v", c.name, got, c.want)
			}
		}
	}
	check(r)
	if n := len(r.List()); n != 2 {
		t.Fatalf("list: %d entries in force, want 2", n)
	}

	// Durable: a restart on the same data directory sees the same.
	l.Close()
	l2, err := openLogAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	r2, err := OpenJWTRevocations(ctx, l2.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	check(r2)
	if len(r2.byKey) != 2 {
		t.Fatalf("expired entry not dropped on load: %d entries", len(r2.byKey))
	}

	// Lifting bob's revocation.
	if err := r2.Delete(ctx, bob.Key); err != nil {
		t.Fatal(err)
	}
	if r2.Revoked(jwtP("bob", "x", t0.Add(-time.Minute))) {
		t.Fatal("bob still revoked after the revocation was lifted")
	}
	if err := r2.Delete(ctx, bob.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func openLogAt(dir string) (*store.Log, error) {
	return store.Open(context.Background(), store.Config{DataDir: dir})
}

// TestJWTRevocationsOnlyWiden: a second revocation of the same subject
// with an earlier cutoff or an expiry cannot give JWTs back.
func TestJWTRevocationsOnlyWiden(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t)
	r, err := OpenJWTRevocations(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	p := &auth.Principal{ID: "jwt:bob", Role: auth.RoleAnalyst, JTI: "b", IssuedAt: t0.Add(-time.Minute)}
	if _, err := r.Add(ctx, "", "bob", t0, nil, "admin"); err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Millisecond)
	rev, err := r.Add(ctx, "", "bob", t0.Add(-2*time.Minute), &soon, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if !rev.IssuedBefore.Equal(t0) || rev.ExpiresAt != nil {
		t.Fatalf("second revocation narrowed the first: cutoff %v (want %v), expires %v (want none)", rev.IssuedBefore, t0, rev.ExpiresAt)
	}
	if !r.Revoked(p) {
		t.Fatal("bob's JWT issued before the first cutoff is no longer revoked")
	}
}

// TestJWTRevocationsPrune: entries whose JWTs have expired anyway are
// deleted from the bucket by a running node, not only at the next start.
func TestJWTRevocationsPrune(t *testing.T) {
	ctx := context.Background()
	l, _ := openLog(t)
	r, err := OpenJWTRevocations(ctx, l.JetStream(), nil)
	if err != nil {
		t.Fatal(err)
	}
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	old, err := r.Add(ctx, "old", "", time.Time{}, &past, "admin")
	if err != nil {
		t.Fatal(err)
	}
	live, err := r.Add(ctx, "live", "", time.Time{}, &future, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Prune(ctx); n != 1 {
		t.Fatalf("pruned %d entries, want 1", n)
	}
	if _, err := r.kv.Get(ctx, old.Key); err == nil {
		t.Fatal("expired entry still in the bucket")
	}
	if _, err := r.kv.Get(ctx, live.Key); err != nil {
		t.Fatalf("entry in force pruned: %v", err)
	}
	if !r.Revoked(&auth.Principal{ID: "jwt:x", JTI: "live"}) {
		t.Fatal("entry in force no longer applies")
	}
}
