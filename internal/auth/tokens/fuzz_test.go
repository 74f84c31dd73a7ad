package tokens

import (
	"context"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// FuzzParseToken checks the opaque-token parser: no panics, and whatever
// it accepts has exactly the documented shape.
func FuzzParseToken(f *testing.F) {
	f.Add("vgt_0123456789abcdef_" + strings.Repeat("a", 64))
	f.Add("vgt_")
	f.Fuzz(func(t *testing.T, tok string) {
		id, ok := ParseToken(tok)
		if !ok {
			return
		}
		if len(tok) != len(Prefix)+idHexLen+1+secretHexLen || !strings.HasPrefix(tok, Prefix+id+"_") || !validID(id) {
			t.Fatalf("accepted malformed token %q (id %q)", tok, id)
		}
	})
}

// FuzzStoreAuthenticate runs arbitrary strings through the real store
// (embedded JetStream) holding one known token: only that token may
// authenticate.
func FuzzStoreAuthenticate(f *testing.F) {
	ctx := context.Background()
	l, err := store.Open(ctx, store.Config{DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(l.Close)
	s, err := Open(ctx, l.JetStream(), nil)
	if err != nil {
		f.Fatal(err)
	}
	good, rec, err := s.Create(ctx, Spec{Role: auth.RoleViewer}, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1] + "0")
	f.Add(Prefix + rec.ID + "_" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := s.Authenticate(ctx, tok)
		if err == nil && (tok != good || p.ID != rec.ID) {
			t.Fatalf("accepted %q as %+v", tok, p)
		}
		if err != nil && tok == good {
			t.Fatalf("refused the valid token: %v", err)
		}
	})
}
