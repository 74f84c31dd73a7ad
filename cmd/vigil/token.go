package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-sec/vigil/internal/tokens"
)

// runToken manages API tokens through the server's admin REST API
// (/api/v1/tokens): the embedded NATS has no listener, so the CLI never
// touches the token bucket directly.
func runToken(ctx context.Context, e env, args []string) error {
	usage := func() {
		fmt.Fprintln(e.stderr, `Usage:
  vigil token create --role ROLE [--categories a,b] [--tenant T] [--expires 720h] [--name N] [--json]
  vigil token list [--json]
  vigil token revoke ID

Roles: admin, publisher, analyst, viewer. The new token is printed once on
stdout; only its hash is stored. Common flags: --server, --token, --data-dir.`)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		return nil
	}
	switch args[0] {
	case "create":
		return tokenCreate(ctx, e, args[1:])
	case "list", "ls":
		return tokenList(ctx, e, args[1:])
	case "revoke", "rm", "delete":
		return tokenRevoke(ctx, e, args[1:])
	}
	usage()
	return fmt.Errorf("token: unknown subcommand %q", args[0])
}

func tokenCreate(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil token create", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var rf remoteFlags
	rf.register(fs)
	role := fs.String("role", "", "admin, publisher, analyst or viewer (required)")
	cats := fs.String("categories", "", "comma-separated categories the token is limited to (default: all)")
	tenant := fs.String("tenant", "", "tenant of the token (default: default; admin: all tenants)")
	expires := fs.Duration("expires", 0, "lifetime, e.g. 720h (default: no expiry)")
	name := fs.String("name", "", "label shown in token list")
	asJSON := fs.Bool("json", false, "print the whole answer as JSON (includes the token)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role == "" {
		return errors.New("token create: --role is required")
	}
	if *expires < 0 {
		return errors.New("token create: --expires must be positive")
	}
	req := tokens.CreateRequest{Name: *name, Role: *role, Tenant: *tenant}
	for _, c := range strings.Split(*cats, ",") {
		if c = strings.TrimSpace(c); c != "" {
			req.Categories = append(req.Categories, c)
		}
	}
	if *expires > 0 {
		req.ExpiresIn = expires.String()
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
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	// The token alone on stdout, so TOKEN=$(vigil token create ...) works;
	// the description on stderr.
	fmt.Fprintln(e.stdout, out.Token)
	fmt.Fprintf(e.stderr, "token %s: role %s, tenant %s, categories %s, expires %s\nIt is shown only now; store it safely.\n",
		out.ID, out.Role, out.Tenant, orAll(out.Categories), expiry(out.ExpiresAt))
	return nil
}

func tokenList(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil token list", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
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
	var out struct {
		Tokens []tokens.View `json:"tokens"`
	}
	if err := c.Do(ctx, "GET", "/api/v1/tokens", nil, &out); err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tTENANT\tCATEGORIES\tCREATED\tEXPIRES\tSTATUS")
	for _, t := range out.Tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, orDash(t.Name), t.Role, t.Tenant, orAll(t.Categories),
			t.CreatedAt.Format(time.RFC3339), expiry(t.ExpiresAt), t.Status)
	}
	return tw.Flush()
}

func tokenRevoke(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("vigil token revoke", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
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
	fmt.Fprintf(e.stdout, "token %s revoked; its open connections close within seconds\n", out.ID)
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

func expiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format(time.RFC3339)
}
