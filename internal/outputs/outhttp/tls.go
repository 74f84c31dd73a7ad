package outhttp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSClient is the TLS configuration of a non-HTTP output (SMTP, syslog):
// TLS 1.2 or later, the system roots or those of caFile, the server
// name checked against serverName. (HTTP outputs get theirs from the
// core through Env.HTTP.)
func TLSClient(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
