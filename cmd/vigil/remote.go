package main

import (
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
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.server, "server", "", "server address (env VIGIL_SERVER, default http://127.0.0.1:8080)")
	fs.StringVar(&r.token, "token", "", "bearer token (env VIGIL_TOKEN, default <data-dir>/admin.token)")
	fs.StringVar(&r.dataDir, "data-dir", "", "data directory holding admin.token (env VIGIL_DATA_DIR, default ./vigil-data)")
}

func (r *remoteFlags) client(e env) (*client.Client, error) {
	server := firstNonEmpty(r.server, e.getenv("VIGIL_SERVER"), "http://127.0.0.1:8080")
	token := firstNonEmpty(r.token, e.getenv("VIGIL_TOKEN"))
	if token == "" {
		dir := firstNonEmpty(r.dataDir, e.getenv("VIGIL_DATA_DIR"), "./vigil-data")
		b, err := os.ReadFile(filepath.Join(dir, auth.AdminTokenFile))
		if err != nil {
			return nil, fmt.Errorf("no token: give --token or VIGIL_TOKEN, or run next to the server's data directory (%w)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return client.New(server, token)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
