package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/vigil-sec/vigil/internal/outputs"
)

func outputsList(ctx context.Context, e env, args []string) error {
	var out struct {
		Outputs []outputs.Status `json:"outputs"`
	}
	return listCommand(ctx, e, "outputs list", "/api/v1/outputs", args, &out, func(row rowFunc) {
		row("NAME\tTYPE\tSTATE\tDELIVERED\tFAILED\tRETRYING\tPENDING\tLAST ERROR\n")
		for _, o := range out.Outputs {
			last := "-"
			if o.LastError != "" {
				last = o.LastError
				if o.LastErrorAt != nil {
					last = o.LastErrorAt.Format(time.RFC3339) + " " + last
				}
			}
			row("%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", o.Name, o.Type, o.State, o.Delivered, o.Failed, o.Retrying, o.Pending, last)
		}
	})
}

func outputsTest(ctx context.Context, e env, args []string) error {
	fs := e.flagSet()
	var rf remoteFlags
	rf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	// NAME may come before or after the flags.
	var name string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("outputs test: unexpected argument %q", fs.Arg(0))
	}
	if name == "" {
		return errors.New("outputs test: give the output's NAME")
	}
	c, err := rf.client(e)
	if err != nil {
		return err
	}
	var res outputs.TestResult
	if err := c.Do(ctx, "POST", "/api/v1/outputs/"+url.PathEscape(name)+"/test", nil, &res); err != nil {
		return fmt.Errorf("outputs test: %w", err)
	}
	if *asJSON {
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else if res.OK {
		e.printf("%s: test message %s delivered in %.0f ms\n", res.Output, res.EventID, res.TookMS)
	}
	if !res.OK {
		kind := "temporary"
		if res.Permanent {
			kind = "permanent"
		}
		return fmt.Errorf("outputs test: %s: %s failure: %s", res.Output, kind, res.Error)
	}
	return nil
}
