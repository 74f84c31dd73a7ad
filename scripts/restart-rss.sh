#!/usr/bin/env bash
# restart-rss.sh: resident memory of `vigil serve` after a restart on an
# existing data directory (issue 12 item 8: RSS must not grow with the
# retained log; docs/performance.md, "RSS after restart (issue 12 item 8,
# second pass)").
#
#   scripts/restart-rss.sh BIN DATADIR [PORT] [LABEL]
#
# Starts BIN serve on DATADIR (with --dedup-window 10s, as the data dirs of
# that section were filled), times /readyz, samples /proc/<pid>/status
# (VmRSS, RssAnon, RssFile), CPU time and the Go heap (/debug/pprof/heap,
# admin token from DATADIR) at +5 s and +60 s after the start, then the
# live heap after a forced GC, and stops the node with SIGTERM. Logs
# (GODEBUG=gctrace=1) and heap profiles go to a temporary directory it
# prints. It changes nothing in DATADIR besides what a restart writes.
#
# Filling a data dir (N events; ~20 min of both cores at 10 M):
#   vigil serve --data-dir D --listen 127.0.0.1:P --dedup-window 10s &
#   vigil bench --server http://127.0.0.1:P --data-dir D --events N --batch 1000 --publishers 4 --subscribers 0
#   kill -TERM %1
# An empty one: start `vigil serve --data-dir D ...` once and stop it.
set -euo pipefail
BIN=${1:?usage: restart-rss.sh BIN DATADIR [PORT] [LABEL]}
D=${2:?usage: restart-rss.sh BIN DATADIR [PORT] [LABEL]}
P=${3:-18476}
L=${4:-$(basename "$D")}
OUT=$(mktemp -d "/tmp/restart-rss-$L-XXXX")
TOK=$(cat "$D/admin.token")
now() { date +%s%N; }
echo "== $L $BIN $D $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)"
T0=$(now)
GODEBUG=gctrace=1 "$BIN" serve --data-dir "$D" --listen "127.0.0.1:$P" --dedup-window 10s >"$OUT/serve.log" 2>&1 &
SP=$!
trap 'kill -TERM $SP 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$P/readyz" >/dev/null; do
	kill -0 $SP 2>/dev/null || { echo "serve exited:"; tail -5 "$OUT/serve.log"; exit 1; }
	sleep 0.05
done
echo "ready $(( ($(now) - T0) / 1000000 )) ms"
snap() {
	local st cpu ms
	st=$(awk '/VmRSS|RssAnon|RssFile/{printf "%s %d MB  ", $1, $2/1024}' /proc/$SP/status)
	cpu=$(awk '{printf "cpu %.2f s", ($14+$15)/100}' /proc/$SP/stat)
	curl -sf -H "Authorization: Bearer $TOK" "http://127.0.0.1:$P/debug/pprof/heap?debug=1" >"$OUT/heap-$1.txt"
	ms=$(grep -E "^# (HeapAlloc|HeapInuse|HeapIdle|HeapReleased|NextGC) =" "$OUT/heap-$1.txt" | awk '{printf "%s=%dM ", $2, $4/1048576}')
	echo "+$1: $st $cpu | $ms"
}
until_ms() { while (( ($(now) - T0) / 1000000 < $1 )); do sleep 0.2; done; }
until_ms 5000; snap 5s
until_ms 60000; snap 60s
curl -sf -H "Authorization: Bearer $TOK" "http://127.0.0.1:$P/debug/pprof/heap" >"$OUT/heap-60s.pb.gz"
curl -sf -H "Authorization: Bearer $TOK" "http://127.0.0.1:$P/debug/pprof/heap?gc=1&debug=1" |
	awk '/^# HeapAlloc =/{printf "live heap after a forced GC at +60 s: %d MB\n", $4/1048576}'
grep -hE "leadership gained|leadership lost|catch-up|block caches" "$OUT/serve.log" | cut -c1-400 || true
kill -TERM $SP; wait $SP || true
trap - EXIT
echo "logs and profiles: $OUT"
