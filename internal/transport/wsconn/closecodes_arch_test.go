package wsconn

import (
	"testing"

	"github.com/gobwas/ws"

	"github.com/vigil-sec/vigil/internal/domain"
)

// TestCloseCodesAreTheDomainTable: the close codes wsconn sends are the
// ones the one error table (internal/domain) maps kinds to.
func TestCloseCodesAreTheDomainTable(t *testing.T) {
	for _, c := range []struct {
		name   string
		ours   ws.StatusCode
		domain uint16
	}{
		{"normal", CloseNormal, domain.CloseNormal},
		{"going away", CloseGoingAway, domain.CloseGoingAway},
		{"protocol", CloseProtocol, domain.CloseProtocol},
		{"bad payload", CloseBadPayload, domain.CloseBadPayload},
		{"policy", ClosePolicy, domain.ClosePolicy},
		{"too big", CloseTooBig, domain.CloseTooBig},
		{"lagged", CloseLagged, domain.CloseLagged},
		{"revoked", CloseRevoked, domain.CloseRevoked},
		{"ping timeout", ClosePingTimeout, domain.ClosePingTimeout},
		{"limit exceeded", CloseLimitExceeded, domain.CloseLimitExceeded},
		{"kicked", CloseKicked, domain.CloseKicked},
	} {
		if uint16(c.ours) != c.domain {
			t.Errorf("%s: wsconn sends %d, the domain table says %d", c.name, c.ours, c.domain)
		}
	}
}
