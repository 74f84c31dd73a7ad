#!/usr/bin/env bash
# versus-centrifugo.sh: Vigil and Centrifugo side by side, same load client
# (issue 12, "Against other servers"; figures in docs/performance.md).
# A measuring script for people, NOT part of CI: it needs a Centrifugo
# binary, takes ~15 minutes and wants a quiet machine.
#
# Build Centrifugo first (its source is public; never vendor or commit it):
#   git clone https://github.com/centrifugal/centrifugo /tmp/centrifugo
#   cd /tmp/centrifugo && git checkout v6.9.1
#   go build -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=6.9.1" -o /tmp/centrifugo-bin .
#   # (a snapshot without internal/swaggerui/statik.go, a generated blob of
#   #  Swagger UI assets, builds with a one-line stub of that package:
#   #  package swaggerui; import "net/http"; var FS http.FileSystem = http.Dir("/nonexistent"))
#
# Usage: scripts/versus-centrifugo.sh /tmp/centrifugo-bin [vigil-binary]
#   Without a Vigil binary it builds ./cmd/vigil from this checkout.
#   Environment: ROUNDS (default 2: V, C, V, C per row), DURATION (publishing
#   time per run, default 6s), RATES (fan-out offered events/s, default
#   "200 400 1000 2000"), CLIENTS (default 1000), SELECTIVE_RATE (default
#   10000), IDLE (default "5000 10000"), OVERLOAD_DURATION (default 20s),
#   ONLY (fanout, selective, overload or idle to run one part), HIST (1:
#   also Centrifugo with history, default 1), ARRIVALS (burst: every
#   publisher on the same schedule, their requests arriving together, the
#   default; even: their starts spread over one interval).
#
# What it does: builds the load client test/perf/versus, starts Vigil
# (`vigil serve`, defaults but for the connection caps, on a fresh data
# directory) and Centrifugo (memory engine, namespace "bench" without
# history and "hist" with history_size 1000, HTTP API key, HMAC JWTs for
# bidirectional JSON WebSocket clients), both on loopback, and runs every
# row alternately against each server; the idle rows restart both servers
# fresh. Every row prints the load average and each server's CPU time
# (from /proc/<pid>/stat) over the run. The load client shares the machine.
set -euo pipefail

cent_bin=${1:?usage: $0 CENTRIFUGO_BINARY [VIGIL_BINARY]}
[[ -x "$cent_bin" ]] || { echo "versus: $cent_bin is not an executable" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
rounds=${ROUNDS:-2}
duration=${DURATION:-6s}
rates=${RATES:-200 400 1000 2000}
clients=${CLIENTS:-1000}
selective_rate=${SELECTIVE_RATE:-10000}
idle_counts=${IDLE:-5000 10000}
overload_duration=${OVERLOAD_DURATION:-20s}
only=${ONLY:-}
hist=${HIST:-1}
arrivals=${ARRIVALS:-burst}
vport=18480
cport=18400
api_key=versus-api-key
hmac=versus-hmac-secret

vigil_pid="" cent_pid=""
stop_servers() {
  for p in $vigil_pid $cent_pid; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  vigil_pid="" cent_pid=""
}
cleanup() { stop_servers; rm -rf "$work"; }
trap cleanup EXIT

if [[ -n "${2:-}" ]]; then
  vigil_bin=$2
else
  vigil_bin=$work/vigil
  (cd "$repo" && go build -o "$vigil_bin" ./cmd/vigil)
fi
(cd "$repo" && go build -o "$work/versus" ./test/perf/versus)

cat >"$work/vigil.yaml" <<EOF
access:
  limits:
    max_conns_per_token: -1
    max_conns_per_ip: -1
EOF
cat >"$work/centrifugo.json" <<EOF
{
  "http_server": {"address": "127.0.0.1", "port": $cport},
  "log": {"level": "warn"},
  "engine": {"type": "memory"},
  "client": {"token": {"hmac_secret_key": "$hmac"}},
  "http_api": {"key": "$api_key"},
  "channel": {"namespaces": [
    {"name": "bench", "allow_subscribe_for_client": true},
    {"name": "hist", "allow_subscribe_for_client": true, "history_size": 1000, "history_ttl": "300s"}
  ]},
  "prometheus": {"enabled": true},
  "debug": {"enabled": true},
  "usage_stats": {"disabled": true}
}
EOF

wait_http() { # URL: poll until it answers, at most 30 s
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "versus: $1 did not come up" >&2
  exit 1
}

start_servers() {
  for port in $vport $cport; do # another run (or anything else) on our ports would be measured instead
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      echo "versus: port $port is in use (another run of this script?)" >&2
      exit 1
    fi
  done
  rm -rf "$work/vigil-data"
  "$vigil_bin" serve --config "$work/vigil.yaml" --data-dir "$work/vigil-data" --listen "127.0.0.1:$vport" >"$work/vigil.log" 2>&1 &
  vigil_pid=$!
  "$cent_bin" -c "$work/centrifugo.json" >"$work/centrifugo.log" 2>&1 &
  cent_pid=$!
  wait_http "http://127.0.0.1:$vport/readyz"
  wait_http "http://127.0.0.1:$cport/metrics"
  for _ in $(seq 1 100); do [[ -s "$work/vigil-data/admin.token" ]] && break; sleep 0.1; done
}

vigil() { # versus flags...
  "$work/versus" -server vigil -url "http://127.0.0.1:$vport" -token "$(cat "$work/vigil-data/admin.token")" -pid "$vigil_pid" -arrivals "$arrivals" "$@"
}
cent() { # namespace, versus flags...
  local ns=$1
  shift
  "$work/versus" -server centrifugo -namespace "$ns" -url "http://127.0.0.1:$cport" -api-key "$api_key" -hmac "$hmac" -pid "$cent_pid" -arrivals "$arrivals" "$@"
}

echo "# versus: $("$vigil_bin" version 2>/dev/null | head -1 || echo vigil) ($(git -C "$repo" rev-parse --short HEAD)) against $("$cent_bin" version), $(nproc) cores, $(date -u +%FT%TZ)"
ulimit -n 20000 2>/dev/null || true

start_servers
if [[ -z "$only" || "$only" == fanout ]]; then
  echo
  echo "## fan-out: $clients clients on one filter / channel, batches of 10, $duration per run"
  header=-header
  for rate in $rates; do
    for _ in $(seq 1 "$rounds"); do
      vigil $header -mode fanout -clients "$clients" -rate "$rate" -duration "$duration" -publishers 4
      header=""
      cent bench -mode fanout -clients "$clients" -rate "$rate" -duration "$duration" -publishers 4
      if [[ "$hist" == 1 ]]; then
        cent hist -mode fanout -clients "$clients" -rate "$rate" -duration "$duration" -publishers 4
      fi
    done
  done
fi
if [[ -z "$only" || "$only" == selective ]]; then
  echo
  echo "## selective: $clients clients, each its own user filter / channel, $selective_rate events/s, batches of 10, 20 publishers"
  header=-header
  for _ in $(seq 1 "$rounds"); do
    vigil $header -mode selective -clients "$clients" -rate "$selective_rate" -duration "$duration" -publishers 20
    header=""
    cent bench -mode selective -clients "$clients" -rate "$selective_rate" -duration "$duration" -publishers 20
    if [[ "$hist" == 1 ]]; then
      cent hist -mode selective -clients "$clients" -rate "$selective_rate" -duration "$duration" -publishers 20
    fi
  done
fi
if [[ -z "$only" || "$only" == overload ]]; then
  # Graceful overload: a tenth of the clients read slowly (5 ms per
  # delivery, at most 200 deliveries/s) while the stream brings 1,000
  # events/s to everyone; the box is not saturated (200 clients). The slow
  # ones should be cut (Vigil: "lagged" with resume_from, close 4000;
  # Centrifugo: close 3008) and the others keep their latency.
  echo
  echo "## overload: 200 clients on one filter / channel, 20 of them slow, 1000 events/s, ${overload_duration} per run"
  header=-header
  for _ in $(seq 1 "$rounds"); do
    vigil $header -mode fanout -clients 200 -slow 20 -rate 1000 -duration "$overload_duration" -publishers 4
    header=""
    cent bench -mode fanout -clients 200 -slow 20 -rate 1000 -duration "$overload_duration" -publishers 4
  done
fi
if [[ -z "$only" || "$only" == idle ]]; then
  echo
  echo "## idle connections, one subscription each, fresh servers"
  header=-header
  for n in $idle_counts; do
    stop_servers
    start_servers
    vigil $header -mode idle -clients "$n"
    header=""
    cent bench -mode idle -clients "$n"
  done
fi
