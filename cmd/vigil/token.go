package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-sec/vigil/internal/auth/tokens"
	"github.com/vigil-sec/vigil/internal/detect"
)

// tokenCommands manage API tokens through the server's admin REST API
// (/api/v1/tokens): the embedded NATS has no listener, so the CLI never
// touches the token bucket directly.
func tokenCommands() []command {
	return []command{
		{name: "create", summary: "create a token; it is printed once on stdout", args: "--role ROLE [flags]",
			example: "vigil token create --role analyst --categories authentication,audit --tenant acme --expires 30d\nTOKEN=$(vigil token create --role publisher --name ci)", run: tokenCreate},
		{name: "list", aliases: []string{"ls"}, summary: "list tokens (never their secrets)", args: "[flags]", example: "vigil token list --json", run: tokenList},
		{name: "revoke", aliases: []string{"rm", "delete"}, summary: "revoke a token; its open connections close within seconds", args: "ID [flags]",
			example: "vigil token revoke 01J9Z...", run: tokenRevoke},
		{name: "revoke-jwt", summary: "revoke a JWT by jti, or all of a subject's issued before a time", args: "(--jti JTI | --sub SUBJECT [--issued-before TIME]) [--expires 24h | --expires-at TIME]",
			about: "TIME is RFC 3339.", example: "vigil token revoke-jwt --sub alice@example.com --expires 24h", run: tokenRevokeJWT},
		{name: "jwt-revocations", summary: "list JWT revocations", args: "[flags]", example: "vigil token jwt-revocations", run: tokenJWTRevocations},
		{name: "unrevoke-jwt", summary: "lift a JWT revocation", args: "KEY [flags]", example: "vigil token unrevoke-jwt sub:alice@example.com", run: tokenUnrevokeJWT},
	}
}

func tokenCreate(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	role := fs.String("role", "", "admin, publisher, analyst or viewer (required)")
	cats := fs.String("categories", "", "comma-separated categories the token is limited to (default: all)")
	tenant := fs.String("tenant", "", "tenant of the token (default: default; admin: all tenants)")
	var expires lifetime
	fs.Var(&expires, "expires", "lifetime: a `DURATION` (720h, 90m) or days or weeks (30d, 2w) (default: no expiry)")
	name := fs.String("name", "", "label shown in token list")
	asJSON := fs.Bool("json", false, "print the whole answer as JSON (includes the token)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role == "" {
		return errors.New("token create: --role is required")
	}
	if expires < 0 {
		return errors.New("token create: --expires must be positive")
	}
	req := tokens.CreateRequest{Name: *name, Role: *role, Tenant: *tenant}
	for _, c := range strings.Split(*cats, ",") {
		if c = strings.TrimSpace(c); c != "" {
			req.Categories = append(req.Categories, c)
		}
	}
	if expires > 0 {
		req.ExpiresIn = time.Duration(expires).String()
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	var out tokens.CreateResponse
	if err := c.Do(ctx, "POST", "/api/v1/tokens", req, &out); err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	if *asJSON {
		return printJSON(e.stdout, out)
	}
	// The token alone on stdout, so TOKEN=$(vigil token create ...) works;
	// the description on stderr.
	e.println(out.Token)
	e.warnf("token %s: role %s, tenant %s, categories %s, expires %s\nIt is shown only now; store it safely.\n",
		out.ID, out.Role, out.Tenant, orAll(out.Categories), expiry(out.ExpiresAt))
	return nil
}

func tokenList(ctx context.Context, e env, args []string) error {
	var out struct {
		Tokens []tokens.View `json:"tokens"`
	}
	return listCommand(ctx, e, "token list", "/api/v1/tokens", args, &out, func(row rowFunc) {
		row("ID\tNAME\tROLE\tTENANT\tCATEGORIES\tCREATED\tEXPIRES\tSTATUS\n")
		for _, t := range out.Tokens {
			row("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, orDash(t.Name), t.Role, t.Tenant, orAll(t.Categories),
				t.CreatedAt.Format(time.RFC3339), expiry(t.ExpiresAt), t.Status)
		}
	})
}

// rowFunc prints one row of a table (cells separated by tabs).
type rowFunc func(format string, a ...any)

// listCommand GETs path into out and prints it as JSON (--json) or, through
// table, as aligned columns.
func listCommand(ctx context.Context, e env, name, path string, args []string, out any, table func(rowFunc)) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	if err := c.Do(ctx, "GET", path, nil, out); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if *asJSON {
		return printJSON(e.stdout, out)
	}
	return printTable(e, table)
}

// printTable prints rows as aligned columns on stdout. A write error of the
// tabwriter is one of stdout's; Flush returns it (stdout is sticky), so
// single rows need not be checked.
func printTable(e env, table func(rowFunc)) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	table(func(format string, a ...any) { _, _ = fmt.Fprintf(tw, format, a...) })
	return tw.Flush()
}

func tokenRevoke(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return errors.New("token revoke: give exactly one token ID (see vigil token list)")
	}
	id := fs.Arg(0)
	// Accept flags after the ID too (vigil token revoke ID --server ...).
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New("token revoke: give exactly one token ID (see vigil token list)")
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	var out tokens.View
	if err := c.Do(ctx, "DELETE", "/api/v1/tokens/"+url.PathEscape(id), nil, &out); err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	e.printf("token %s revoked; its open connections close within seconds\n", out.ID)
	return nil
}

func orAll(cats []string) string {
	if len(cats) == 0 {
		return "all"
	}
	return strings.Join(cats, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// lifetime is an --expires flag: a Go duration (720h, 90m) or a whole
// number of days or weeks (30d, 2w), read as rules backtest --since reads
// it (detect.ParseSince).
type lifetime time.Duration

func (l *lifetime) String() string {
	if l == nil || *l == 0 {
		return ""
	}
	return time.Duration(*l).String()
}

func (l *lifetime) Set(s string) error {
	d, err := detect.ParseSince(s)
	if err != nil {
		return errors.New("want a duration (720h, 90m) or days or weeks (30d, 2w)")
	}
	*l = lifetime(d)
	return nil
}

func expiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func tokenRevokeJWT(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	var req tokens.JWTRevokeRequest
	fs.StringVar(&req.JTI, "jti", "", "revoke the one JWT with this jti claim")
	fs.StringVar(&req.Subject, "sub", "", "revoke every JWT of this subject (sub claim) issued at or before --issued-before")
	fs.StringVar(&req.IssuedBefore, "issued-before", "", "with --sub: RFC 3339 time (default now)")
	fs.StringVar(&req.ExpiresAt, "expires-at", "", "RFC 3339 time the revoked JWTs expire anyway; the entry is dropped then")
	var expiresIn lifetime
	fs.Var(&expiresIn, "expires", "the revoked JWTs expire anyway within this `DURATION` (24h, 7d) (the entry is dropped then; same as --expires-at now+DURATION)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (req.JTI == "") == (req.Subject == "") {
		return errors.New("token revoke-jwt: give exactly one of --jti and --sub")
	}
	switch {
	case expiresIn < 0:
		return errors.New("token revoke-jwt: --expires must be positive")
	case expiresIn > 0 && req.ExpiresAt != "":
		return errors.New("token revoke-jwt: give --expires or --expires-at, not both")
	case expiresIn > 0:
		req.ExpiresAt = time.Now().Add(time.Duration(expiresIn)).UTC().Format(time.RFC3339)
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	var out tokens.JWTRevocation
	if err := c.Do(ctx, "POST", "/api/v1/tokens/jwt-revocations", req, &out); err != nil {
		return fmt.Errorf("token revoke-jwt: %w", err)
	}
	e.printf("revoked (key %s); open connections using it close within seconds\n", out.Key)
	return nil
}

func tokenJWTRevocations(ctx context.Context, e env, args []string) error {
	var out struct {
		Revocations []tokens.JWTRevocation `json:"revocations"`
	}
	return listCommand(ctx, e, "token jwt-revocations", "/api/v1/tokens/jwt-revocations", args, &out, func(row rowFunc) {
		row("KEY\tJTI\tSUB\tISSUED BEFORE\tREVOKED\tBY\tEXPIRES\n")
		for _, r := range out.Revocations {
			before := "-"
			if r.IssuedBefore != nil {
				before = r.IssuedBefore.Format(time.RFC3339)
			}
			row("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Key, orDash(r.JTI), orDash(r.Subject), before,
				r.RevokedAt.Format(time.RFC3339), orDash(r.RevokedBy), expiry(r.ExpiresAt))
		}
	})
}

func tokenUnrevokeJWT(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("token unrevoke-jwt: give exactly one KEY (see vigil token jwt-revocations)")
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	if err := c.Do(ctx, "DELETE", "/api/v1/tokens/jwt-revocations/"+url.PathEscape(fs.Arg(0)), nil, nil); err != nil {
		return fmt.Errorf("token unrevoke-jwt: %w", err)
	}
	e.printf("revocation %s lifted\n", fs.Arg(0))
	return nil
}

// printJSON writes v indented, for the --json flags.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
