package hostile

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/tlsconfig/tlstest"
)

// TestRELPRsyslogTLS: a real rsyslog forwards a file over RELP with TLS
// (omrelp tls="on", Vigil's certificate checked against tls.caCert) to a
// real `vigil serve` whose RELP listener speaks TLS because the syslog
// certificate is set; every line arrives. Both TLS libraries of Debian's
// librelp (tls.tlslib: gnutls, the default, and openssl) and both ways
// omrelp checks the server with a CA (tls.authMode name, certvalid) are
// tried. With gnutls, omrelp needs a certificate of its own
// (tls.myCert/tls.myPrivKey) although Vigil asks for none: without one
// its ClientHello offers no TLS 1.2 certificate suite and no TLS 1.3, and
// the handshake fails; a case pins that down. With --syslog-tls-client-ca
// Vigil requires rsyslog's certificate (tls.myCert) to chain to that CA.
func TestRELPRsyslogTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("real rsyslog over TLS: skipped in -short")
	}
	rsyslogd := relpRsyslog(t)
	bin := startupBuildVigil(t)
	certDir := t.TempDir()
	certs := tlstest.New(t, certDir)
	clientCert, clientKey := filepath.Join(certDir, "rsyslog.pem"), filepath.Join(certDir, "rsyslog-key.pem")
	certs.CA.Client(t, "rsyslog").Write(t, clientCert, clientKey)
	own := fmt.Sprintf(`tls.myCert=%q tls.myPrivKey=%q`, clientCert, clientKey)
	const openssl = `tls.tlslib="openssl"`
	// With --syslog-tls-client-ca, omrelp must present a certificate of
	// that CA: rsyslog's own is one (issued by the CA of Vigil's).
	clientCA := []string{"--syslog-tls-client-ca", certs.CAFile}
	for _, tc := range []struct {
		name, module, action string
		vigil                []string
		refused              bool
	}{
		{"gnutls name", ``, `tls.authMode="name" tls.permittedPeer="localhost" ` + own, nil, false},
		{"gnutls certvalid", ``, `tls.authMode="certvalid" ` + own, nil, false},
		{"openssl name", openssl, `tls.authMode="name" tls.permittedPeer="localhost"`, nil, false},
		{"openssl certvalid", openssl, `tls.authMode="certvalid"`, nil, false},
		{"gnutls without a certificate of its own", ``, `tls.authMode="certvalid"`, nil, true},
		{"client CA, gnutls with its certificate", ``, `tls.authMode="name" tls.permittedPeer="localhost" ` + own, clientCA, false},
		{"client CA, openssl with its certificate", openssl, `tls.authMode="name" tls.permittedPeer="localhost" ` + own, clientCA, false},
		{"client CA, openssl without a certificate", openssl, `tls.authMode="name" tls.permittedPeer="localhost"`, clientCA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir, dir := t.TempDir(), t.TempDir()
			port := relpFreePort(t)
			p := startupServe(t, bin, dataDir, append([]string{"--syslog-relp-listen", "127.0.0.1:" + port,
				"--syslog-tls-cert", certs.CertFile, "--syslog-tls-key", certs.KeyFile}, tc.vigil...)...)
			file := filepath.Join(dir, "app.log")
			const total = 500
			relpLines(t, file, 0, total)
			out := relpStartRsyslogWith(t, rsyslogd, dir, file, port, tc.module,
				fmt.Sprintf(`tls="on" tls.caCert=%q %s`, certs.CAFile, tc.action))
			c := p.client(t, dataDir)
			deadline := time.Now().Add(60 * time.Second)
			for {
				seen, stored := relpSeen(t, c)
				switch {
				case tc.refused && len(seen) > 0:
					t.Fatalf("%d lines stored, want the handshake refused", len(seen))
				case tc.refused && strings.Contains(p.stderr(), "relp: connection closed: TLS handshake failed"):
					t.Logf("refused: %s", p.stderr()[strings.Index(p.stderr(), "relp: connection closed"):])
					return
				case !tc.refused && len(seen) == total:
					t.Logf("%d lines, %d events stored", total, stored)
					return
				case time.Now().After(deadline):
					t.Fatalf("%d of %d lines arrived over RELP+TLS in 60s\nrsyslogd: %s\nvigil: %s", len(seen), total, out, p.stderr())
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
