#!/usr/bin/env bash
# quickstart-test.sh runs the README quickstart line by line against a
# fresh node and checks the outputs it promises (issue 11).
#
# It reads the README itself, so the README cannot drift from what works:
#   - the fenced block after "<!-- quickstart-test: serve -->" starts the
#     node (in the background, in a fresh directory);
#   - every command of the fenced block after "<!-- quickstart-test: run -->"
#     runs in order, from that directory; a line "# → TEXT" after a command
#     means its output must contain TEXT; a command whose comment says
#     "Ctrl-C" runs until it is interrupted (SIGINT after a few seconds,
#     as a user would) and must exit 0; a GET with curl is retried for a
#     few seconds until its promise holds (detections are made just after
#     the events are stored).
# "go run ./cmd/vigil" runs a binary built once; 127.0.0.1:8080 becomes a
# free port so the test never meets another server. Every examples/ file
# the quickstart names must be tracked by git (a fresh clone has it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
readme="${QUICKSTART_README:-$repo/README.md}" # override: to test this script
start_time=$SECONDS

work=$(mktemp -d)
serve_pid=""
cleanup() {
  if [[ -n "$serve_pid" ]] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "quickstart-test: FAIL: $*" >&2
  if [[ -f "$work/serve.log" ]]; then
    echo "--- last lines of the server's log:" >&2
    tail -n 20 "$work/serve.log" >&2
  fi
  exit 1
}

# block MARKER prints the fenced code block that follows the marker line.
block() {
  awk -v marker="<!-- quickstart-test: $1 -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' "$readme"
}

serve_block=$(block serve)
run_block=$(block run)
[[ -n "$serve_block" ]] || fail "README.md has no block after <!-- quickstart-test: serve -->"
[[ -n "$run_block" ]] || fail "README.md has no block after <!-- quickstart-test: run -->"

# The files the quickstart names exist in a fresh clone.
for f in $(printf '%s\n%s\n' "$serve_block" "$run_block" | grep -o 'examples/[A-Za-z0-9_./-]*' | sort -u); do
  git -C "$repo" ls-files --error-unmatch "$f" >/dev/null 2>&1 ||
    [[ -n "$(git -C "$repo" ls-files "$f")" ]] ||
    fail "the quickstart names $f, which is not in the repository"
done

echo "== quickstart-test: building vigil"
mkdir -p "$work/bin" "$work/run"
(cd "$repo" && go build -o "$work/bin/vigil" ./cmd/vigil)
cp -r "$repo/examples" "$work/run/"

# A free loopback port (bash's /dev/tcp: a refused connect means free).
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    port=$p
    break
  fi
done
[[ -n "$port" ]] || fail "no free port found"
export VIGIL_SERVER="http://127.0.0.1:$port"

# rewrite CMD: the built binary, the chosen port.
rewrite() {
  local c=$1
  c=${c//go run .\/cmd\/vigil/\"$work/bin/vigil\"}
  c=${c//127.0.0.1:8080/127.0.0.1:$port}
  [[ "$c" == curl* ]] && c="curl -sS ${c#curl }" # no progress meter in the captured output
  printf '%s' "$c"
}

# commands BLOCK prints one command per line (continuations joined), and
# "#→ TEXT" lines for promises; other comments and blank lines go.
commands() {
  local line joined=""
  while IFS= read -r line; do
    if [[ -n "$joined" ]]; then
      joined+=" ${line#"${line%%[![:space:]]*}"}"
    elif [[ "$line" =~ ^#\ →\ (.*)$ ]]; then
      printf '#→ %s\n' "${BASH_REMATCH[1]}"
      continue
    elif [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]]; then
      continue
    else
      joined=$line
    fi
    if [[ "$joined" == *\\ ]]; then
      joined=${joined%\\}
      continue
    fi
    printf '%s\n' "$joined"
    joined=""
  done <<<"$1"
}

cd "$work/run"

echo "== quickstart-test: starting the node on 127.0.0.1:$port"
serve_cmd=$(commands "$serve_block" | grep -v '^#→' | head -n 1)
[[ "$serve_cmd" == *"vigil serve"* ]] || fail "the serve block does not run vigil serve: $serve_cmd"
VIGIL_LISTEN="127.0.0.1:$port" bash -c "exec $(rewrite "$serve_cmd")" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && [[ -s vigil-data/admin.token ]]; then
    break
  fi
  kill -0 "$serve_pid" 2>/dev/null || fail "vigil serve exited"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || fail "the node was not ready within 30 s"

# Run the commands in order; each promise is checked against the output of
# the command before it.
declare -a cmds=() promises=()
while IFS= read -r line; do
  if [[ "$line" == "#→ "* ]]; then
    ((${#cmds[@]} > 0)) || fail "a promise before any command: $line"
    promises[${#cmds[@]}-1]+="${line#\#→ }"$'\n'
  else
    cmds+=("$line")
    promises+=("")
  fi
done < <(commands "$run_block")

checked=0
for i in "${!cmds[@]}"; do
  cmd=${cmds[$i]}
  run=$(rewrite "$cmd")
  echo "\$ $cmd"
  attempts=1
  [[ "$cmd" == curl* && "$cmd" != *--data* && "$cmd" != *" -X "* ]] && attempts=50
  for attempt in $(seq 1 "$attempts"); do
    status=0
    if [[ "$cmd" == *Ctrl-C* ]]; then
      out=$(timeout --preserve-status -s INT 4 bash -c "exec $run" 2>&1) || status=$?
    else
      out=$(timeout 60 bash -c "$run" 2>&1) || status=$?
    fi
    missing=""
    while IFS= read -r want; do
      [[ -z "$want" ]] && continue
      if [[ "$out" != *"$want"* ]]; then
        missing=$want
        break
      fi
    done <<<"${promises[$i]}"
    if [[ $status -eq 0 && -z "$missing" ]]; then
      break
    fi
    [[ $attempt -lt $attempts ]] && sleep 0.2
  done
  printf '%s\n' "$out" | head -n 8 | cut -c 1-160 | sed 's/^/    /'
  [[ $status -eq 0 ]] || fail "exit status $status: $cmd"
  [[ -z "$missing" ]] || fail "the output of '$cmd' does not contain '$missing'"
  checked=$((checked + $(grep -c . <<<"${promises[$i]}" || true)))
done

echo "== quickstart-test: OK: ${#cmds[@]} commands, $checked promised outputs, $((SECONDS - start_time)) s"
