// Package archtest holds no code: its test checks the dependency rule of
// docs/architecture.md ("dependencies point inward") against the import
// graph that `go list` reports, so the rule stays true as packages arrive.
// The layer table is in layers_test.go; a new package needs a row (or a
// prefix rule) there, and scripts/relayout.sh rewrites it with the moves.
package archtest
