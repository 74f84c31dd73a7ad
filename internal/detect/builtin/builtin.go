// Package builtin owns Vigil's built-in detection rules: Sigma YAML files
// (the same format as user rules, Vigil extension block included) embedded
// in the binary, so `vigil serve` detects the source systems' cases with
// no configuration. Rule ids (SEC-*) are stable: detections, dashboards and
// suppression keys refer to them.
package builtin

import "embed"

// FS holds the built-in rule files (*.yml).
//
//go:embed *.yml
var FS embed.FS
