package main

import (
	"flag"
	"strings"

	"github.com/vigil-sec/vigil/internal/detect"
)

// compileFlags are the `vigil rules` flags that change how Sigma rules
// compile, the same as `vigil serve`'s --pipeline and --sigma-placeholders
// (issue 13).
type compileFlags struct {
	pipelines    []string
	placeholders string
}

func addCompileFlags(fs *flag.FlagSet) *compileFlags {
	c := &compileFlags{}
	fs.Func("pipeline", "pySigma processing pipeline file (repeatable or comma-separated)", func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.pipelines = append(c.pipelines, p)
			}
		}
		return nil
	})
	fs.StringVar(&c.placeholders, "sigma-placeholders", "", "YAML file of values for the expand modifier's %placeholders%")
	return c
}

func (c *compileFlags) apply(opts *detect.LoadOptions) {
	if c == nil {
		return
	}
	opts.Pipelines, opts.Placeholders = c.pipelines, c.placeholders
}
