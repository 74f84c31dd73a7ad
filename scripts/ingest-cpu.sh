#!/usr/bin/env bash
# ingest-cpu.sh: server CPU per event and end-to-end latency of SPEC 11's
# selective workload (issue 12 items 3-4, docs/performance.md "Ingest CPU
# per event"), for one or more vigil binaries, alternating them.
#
#   scripts/ingest-cpu.sh ROUNDS BINARY...
#   e.g. go build -o /tmp/vigil-old ./cmd/vigil   (at the older commit)
#        go build -o /tmp/vigil-new ./cmd/vigil
#        scripts/ingest-cpu.sh 3 /tmp/vigil-old /tmp/vigil-new
#
# Each run starts `BINARY serve` on a fresh data directory and a loopback
# port, runs the last BINARY's `vigil bench` (the same load generator for
# every build) with the SPEC 11 command, and prints the bench's figures,
# the load average before and after, and the server's CPU time over the
# run (utime+stime from /proc/<pid>/stat) per event. PROFILE=SECONDS also
# saves a CPU profile of each server, taken 2 s into the run, next to the
# data directory's name in $OUT (default /tmp). ARRIVALS=even spreads the
# publishers' starts over one interval (default burst: the SPEC 11 command
# as written; docs/performance.md, "Load shape"). Not part of CI.
set -euo pipefail
rounds=$1
shift
bins=("$@")
gen=${bins[-1]}
out=${OUT:-/tmp}
tick=$(getconf CLK_TCK)
for r in $(seq 1 "$rounds"); do
  for bin in "${bins[@]}"; do
    d=$(mktemp -d /tmp/ingest-cpu.XXXXXX)
    port=$((20000 + RANDOM % 20000))
    "$bin" serve --data-dir "$d" --listen "127.0.0.1:$port" >"$d/serve.log" 2>&1 &
    pid=$!
    ready=0
    for _ in $(seq 1 300); do
      if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then ready=1; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ $ready = 0 ]; then
      echo "$bin: did not get ready:"; tail -5 "$d/serve.log"; kill "$pid" 2>/dev/null || true; rm -rf "$d"; continue
    fi
    c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    echo "== $bin round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    prof=""
    if [ -n "${PROFILE:-}" ]; then
      f="$out/$(basename "$bin")-r$r.prof"
      (sleep 2; curl -s -H "Authorization: Bearer $(cat "$d/admin.token")" -o "$f" \
        "http://127.0.0.1:$port/debug/pprof/profile?seconds=$PROFILE") &
      prof=$!
    fi
    "$gen" bench --server "http://127.0.0.1:$port" --data-dir "$d" --events 100000 --batch 10 \
      --publishers 20 --rate 10000 --subscribers 1000 --spread 1000 --arrivals "${ARRIVALS:-burst}" 2>&1 | grep -E "^ingest:|^end-to-end"
    c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    [ -n "$prof" ] && wait "$prof"
    echo "server CPU $(awk -v a="$c0" -v b="$c1" -v t="$tick" 'BEGIN { printf "%.1f", (b - a) * 1e6 / t / 100000 }') us/event; load after $(cut -d' ' -f1-3 /proc/loadavg)"
    kill "$pid"
    wait "$pid" || true
    rm -rf "$d"
  done
done
