#!/usr/bin/env bash
# relayout.sh: the package moves of issue 14, item 3, in one idempotent step.
#
# Groups the transports under internal/transport (the WebSocket compatibility
# dialects under internal/transport/compat), the API tokens beside the rest of
# identity under internal/auth, and the database-security dialect's model
# beside the filter it translates to. Each directory keeps its package name,
# so only import paths change: the script `git mv`s each directory, then
# rewrites every reference to its path in tracked Go files (imports, tests,
# comments, the layer table of internal/archtest), Markdown, YAML and the CI
# script, gofmt's the Go files it changed (import order), and checks that
# the module builds and vets.
#
# Run it from anywhere in the repository on a clean tree (after the merges):
#   scripts/relayout.sh          # move, rewrite, build, vet
#   scripts/relayout.sh -n       # print what would move
# Running it again does nothing (moved directories are skipped, rewritten
# paths no longer match). It commits nothing: review `git status`, then
# commit the result as one commit ("relayout: ...").
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

dry=0
[ "${1:-}" = "-n" ] && dry=1

# from → to, relative to the module root. Keep docs/architecture.md
# ("Proposed layout") in step with this list.
moves=(
  "internal/wsconn        internal/transport/wsconn"
  "internal/wsnative      internal/transport/wsnative"
  "internal/sse           internal/transport/sse"
  "internal/rest          internal/transport/rest"
  "internal/graphql       internal/transport/graphql"
  "internal/natsingest    internal/transport/natsingest"
  "internal/wsdetections  internal/transport/compat/wsdetections"
  "internal/phase8        internal/transport/compat/phase8"
  "internal/dbsec         internal/transport/compat/dbsec"
  "internal/dbsecfilter   internal/filter/dbsecfilter"
  "internal/tokens        internal/auth/tokens"
)

if [ "$dry" = 0 ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "relayout: the work tree has uncommitted changes; commit or stash them first" >&2
  exit 1
fi

# Text files that may name a package path.
files() {
  git ls-files -z -- '*.go' '*.md' '*.yml' '*.yaml' '.ci/run' 'scripts/*.sh' ':!:scripts/relayout.sh'
}

moved=0
for m in "${moves[@]}"; do
  read -r from to <<<"$m"
  if [ -d "$from" ] && [ -n "$(git ls-files -- "$from" | head -1)" ]; then
    if [ -e "$to" ]; then
      echo "relayout: both $from and $to exist; resolve by hand" >&2
      exit 1
    fi
    echo "move $from -> $to"
    if [ "$dry" = 1 ]; then continue; fi
    mkdir -p "$(dirname "$to")"
    git mv "$from" "$to"
    moved=$((moved + 1))
  elif [ -d "$to" ]; then
    echo "skip $from (already at $to)"
  else
    echo "skip $from (not present)"
  fi
  [ "$dry" = 1 ] && continue
  # Rewrite the path wherever it stands alone: "…/internal/rest", `internal/rest`,
  # internal/rest/openapi.json; not internal/restx or internal/transport/rest.
  # The new path never matches the old pattern, so a second run changes nothing.
  files | xargs -0 perl -pi -e "s{(?<![\\w.-])\Q$from\E(?![\\w-])}{$to}g"
done

[ "$dry" = 1 ] && exit 0

# Import blocks sort by path: re-sort those whose paths changed.
changed_go=$(git diff --name-only -- '*.go'; git diff --name-only --cached -- '*.go')
if [ -n "$changed_go" ]; then
  echo "$changed_go" | sort -u | while read -r f; do [ -f "$f" ] && gofmt -w "$f"; done
fi

# Test code that reaches another package's files by a relative path.
if grep -rn --include='*.go' -E '"(\.\./)+internal/(wsconn|wsnative|sse|rest|graphql|natsingest|wsdetections|phase8|dbsec|dbsecfilter|tokens)/' . ; then
  echo "relayout: relative paths above still name old directories" >&2
  exit 1
fi

echo "== moved $moved directories; go build ./... && go vet ./..."
go build ./...
go vet ./...
echo "== done: review git status and commit"
