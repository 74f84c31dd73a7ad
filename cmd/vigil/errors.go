package main

// Error messages: each names the problem once (the client's errors no
// longer carry their own "vigil:" prefix; main adds it), and the common
// failures of a first run get a hint saying what to check.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"

	"github.com/vigil-sec/vigil/client"
)

// session records what a remote command talked to, so explain can name it.
type session struct {
	server string // the resolved server URL (flag, env or default)
}

// hintError is an error with a suggestion of what to check.
type hintError struct {
	err  error
	msg  string // replaces err's text when set (the whole chain said one thing)
	hint string
}

func (h *hintError) Error() string {
	msg := h.msg
	if msg == "" {
		msg = h.err.Error()
	}
	return msg + "\nhint: " + h.hint
}

func (h *hintError) Unwrap() error { return h.err }

// explain adds a hint to the errors a user can fix: a refused connection
// (server not running, wrong --server), a refused token, a role that may
// not do this, an untrusted certificate.
func explain(err error, s *session) error {
	if err == nil {
		return nil
	}
	server := "the server"
	if s != nil && s.server != "" {
		server = s.server
	}
	var he *client.Error
	var verify *tls.CertificateVerificationError
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns):
		return &hintError{err: err, msg: fmt.Sprintf("cannot reach %s: %v", server, dns),
			hint: "check the host name in --server / VIGIL_SERVER"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &hintError{err: err, msg: fmt.Sprintf("cannot connect to %s: connection refused", server),
			hint: fmt.Sprintf("is `vigil serve` running at %s? (set --server or VIGIL_SERVER)", server)}
	case errors.As(err, &he) && he.Status == http.StatusUnauthorized:
		return &hintError{err: err, hint: "the token was refused: check --token / VIGIL_TOKEN (default: <data-dir>/admin.token)"}
	case errors.As(err, &he) && he.Status == http.StatusForbidden:
		return &hintError{err: err, hint: "the token's role, tenant or categories do not allow this: use a token that does (vigil token create)"}
	case errors.As(err, &verify):
		return &hintError{err: err, hint: "the server's certificate is not trusted: give its CA with --ca-file / VIGIL_CA_FILE"}
	}
	return err
}
