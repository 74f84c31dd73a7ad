package auth

import (
	"context"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
)

// FuzzStaticToken: only the configured token authenticates.
func FuzzStaticToken(f *testing.F) {
	const good = "vgl_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	s := NewStaticToken(good, Principal{ID: "admin", Role: RoleAdmin, Tenant: AllTenants})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Fuzz(func(t *testing.T, tok string) {
		_, err := s.Authenticate(context.Background(), tok)
		if (err == nil) != (tok == good) {
			t.Fatalf("token %q: err %v", tok, err)
		}
	})
}

// FuzzMaskSQL: no panics, and no quoted literal survives.
func FuzzMaskSQL(f *testing.F) {
	f.Add("SELECT * FROM t WHERE a = 'x' AND b = 1")
	f.Add(`'\`)
	f.Fuzz(func(t *testing.T, q string) {
		out := MaskSQL(q)
		if strings.ContainsAny(out, `'"`) {
			t.Fatalf("MaskSQL(%q) = %q keeps a quote", q, out)
		}
	})
}

// FuzzMaskText: an address that is masked never survives whole.
func FuzzMaskText(f *testing.F) {
	f.Add("from 203.0.113.77 by alice@example.com")
	f.Add("2001:db8:1:2::9")
	r := MaskRules{TruncateIPs: true, HideEmails: true}
	f.Fuzz(func(t *testing.T, s string) {
		out := r.maskText(s)
		if a, err := netip.ParseAddr(s); err == nil {
			if out != TruncateIP(s) {
				t.Fatalf("address %q masked to %q", s, out)
			}
			if a.Unmap().Is4() && out != "" && !strings.HasSuffix(out, ".0") {
				t.Fatalf("IPv4 %q not truncated: %q", s, out)
			}
		}
	})
}

// FuzzTokenFromSubprotocols: any header a client sends is read without a
// panic, a token offered as a subprotocol comes back byte for byte, and
// nothing decodes to a token unless a vigil.bearer. entry was offered.
func FuzzTokenFromSubprotocols(f *testing.F) {
	f.Add("vigil, vigil.bearer.dmdsX2FiX2Nk", "tok")
	f.Add("graphql-transport-ws", "vgl_00_x")
	f.Add("vigil.bearer.%%%, vigil.bearer.", "")
	f.Fuzz(func(t *testing.T, header, tok string) {
		got, offered := tokenFromSubprotocols([]string{header})
		if !offered && got != "" {
			t.Fatalf("header %q: token %q without an offer", header, got)
		}
		want := false
		for _, p := range strings.Split(header, ",") {
			want = want || strings.HasPrefix(strings.TrimSpace(p), BearerSubprotocol)
		}
		if offered != want {
			t.Fatalf("header %q: offered %v, want %v", header, offered, want)
		}
		enc := BearerSubprotocol + base64.RawURLEncoding.EncodeToString([]byte(tok))
		if got, ok := tokenFromSubprotocols([]string{"vigil, " + enc}); !ok || got != tok {
			t.Fatalf("token %q: round trip gave %q, %v", tok, got, ok)
		}
	})
}
