package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/auth"
)

// remoteFlags are shared by every command that talks to a server: flags
// win over VIGIL_SERVER / VIGIL_TOKEN, and the token falls back to the
// local data directory's admin.token.
type remoteFlags struct {
	server, token, dataDir string
	// TLS (https:// and wss://): a private CA, a client certificate.
	caFile, clientCert, clientKey string
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.server, "server", "", "server address, http:// or https:// (env VIGIL_SERVER, default http://127.0.0.1:8080)")
	fs.StringVar(&r.caFile, "ca-file", "", "trust only the PEM CA certificates in this file for https:// (env VIGIL_CA_FILE; default: the system's)")
	fs.StringVar(&r.clientCert, "client-cert", "", "PEM client certificate for servers run with --tls-client-ca (env VIGIL_CLIENT_CERT)")
	fs.StringVar(&r.clientKey, "client-key", "", "PEM key of --client-cert (env VIGIL_CLIENT_KEY)")
	fs.StringVar(&r.token, "token", "", "bearer token (env VIGIL_TOKEN, default <data-dir>/admin.token)")
	fs.StringVar(&r.dataDir, "data-dir", "", "data directory holding admin.token (env VIGIL_DATA_DIR, default ./vigil-data)")
}

func (r *remoteFlags) client(e env) (*client.Client, error) {
	server := firstNonEmpty(r.server, e.getenv("VIGIL_SERVER"), "http://127.0.0.1:8080")
	if e.session != nil {
		e.session.server = server
	}
	token := firstNonEmpty(r.token, e.getenv("VIGIL_TOKEN"))
	if token == "" {
		dir := firstNonEmpty(r.dataDir, e.getenv("VIGIL_DATA_DIR"), "./vigil-data")
		b, err := os.ReadFile(filepath.Join(dir, auth.AdminTokenFile))
		if err != nil {
			return nil, fmt.Errorf("no token: give --token or VIGIL_TOKEN, or run next to the server's data directory (%w)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	var opts []client.Option
	if ca := firstNonEmpty(r.caFile, e.getenv("VIGIL_CA_FILE")); ca != "" {
		opts = append(opts, client.WithCAFile(ca))
	}
	certFile, keyFile := firstNonEmpty(r.clientCert, e.getenv("VIGIL_CLIENT_CERT")), firstNonEmpty(r.clientKey, e.getenv("VIGIL_CLIENT_KEY"))
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("--client-cert and --client-key go together")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		opts = append(opts, client.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
	}
	return client.New(server, token, opts...)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
