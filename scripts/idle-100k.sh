#!/usr/bin/env bash
# idle-100k.sh: 100,000 idle WebSocket connections across several Vigil
# nodes on one box sharing a 3-node NATS JetStream cluster (issue 12 item 7,
# SPEC 11), and the fan-out latency of one event to all of them.
#
# NOT PART OF CI: it opens 2 x CONNS sockets on loopback, needs a few GiB of
# memory and minutes of both cores. Run it by hand on a quiet box:
#   scripts/idle-100k.sh                       # 100,000 connections, 6 nodes, 6 load processes
#   CONNS=20000 NODES=3 PROCS=2 scripts/idle-100k.sh
#   NODE_GOGC=10 PROBE_NODE=4 KEEP=1 scripts/idle-100k.sh
#
# What it does: builds vigil and nats-server (the version go.mod pins, from
# the module cache), starts 3 clustered nats-servers with JetStream on
# loopback, starts NODES `vigil serve --nats ...` nodes (each its own data
# dir and port, the per-token and per-IP connection caps lifted by a YAML
# file, every node given node 1's admin token), waits for /readyz, runs
#   vigil bench --idle CONNS --servers <every node> --procs PROCS --source-ips SOURCE_IPS
# and stops every process it started on exit (trap), leaving nothing behind
# unless KEEP=1 (the temporary directory with the logs is then kept).
#
# Why six nodes and not five: a process here may hold at most 20,000 open
# files (`ulimit -Hn`; raising it needs CAP_SYS_RESOURCE). 100,000 / 5 =
# 20,000 client sockets per node would leave no descriptor for the node's
# listener, epoll instance, NATS connection and files, so five nodes cannot
# hold 100,000; six hold 16,667 each with ~3,300 to spare. The load side has
# the same limit per process, hence PROCS=6. Each source address has ~28,000
# ephemeral ports (32768-60999), so the connections are spread over
# 127.0.0.2-127.0.0.20 (all of 127/8 is loopback on Linux).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CONNS=${CONNS:-100000}
NODES=${NODES:-6}
PROCS=${PROCS:-6}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.20}
BASE_PORT=${BASE_PORT:-24200} # NATS clients BASE+0..2, routes BASE+10..12, monitoring BASE+30..32, Vigil nodes BASE+20..
PROBE_NODE=${PROBE_NODE:-1}
NODE_GOGC=${NODE_GOGC:-} # e.g. 10: the GOGC of the single-node figure in docs/performance.md (unset: Go's default)

work=$(mktemp -d /tmp/idle-100k.XXXXXX)
pids=()
cleanup() {
  local code=$?
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${KEEP:-0}" = 1 ]]; then
    echo "logs kept in $work"
  else
    rm -rf "$work"
  fi
  exit "$code"
}
trap cleanup EXIT INT TERM

wait_ready() { # url, what, pid
  for _ in $(seq 600); do
    if curl -sf -o /dev/null "$1"; then
      return 0
    fi
    if ! kill -0 "$3" 2>/dev/null; then
      echo "$2 exited: see $work" >&2
      KEEP=1
      return 1
    fi
    sleep 0.1
  done
  echo "$2 not ready within 60 s: see $work" >&2
  KEEP=1
  return 1
}

echo "== $(date -u +%FT%TZ) uptime: $(uptime)"
echo "== building vigil and nats-server ($(cd "$repo" && go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)) into $work"
(cd "$repo" && go build -o "$work/vigil" ./cmd/vigil && go build -o "$work/nats-server" github.com/nats-io/nats-server/v2)

routes=""
for i in 0 1 2; do
  routes+="nats-route://127.0.0.1:$((BASE_PORT + 10 + i)),"
done
routes=${routes%,}
for i in 0 1 2; do
  mkdir -p "$work/nats$i"
  cat >"$work/nats$i.conf" <<EOF
server_name: idle-n$i
listen: 127.0.0.1:$((BASE_PORT + i))
http: 127.0.0.1:$((BASE_PORT + 30 + i))
max_payload: 8MB
jetstream {
  store_dir: "$work/nats$i"
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: vigil-idle
  listen: 127.0.0.1:$((BASE_PORT + 10 + i))
  routes: [$routes]
}
EOF
  "$work/nats-server" -c "$work/nats$i.conf" >"$work/nats$i.log" 2>&1 &
  pids+=($!)
done

# JetStream must have a meta leader before the first node creates its stream.
for i in 0 1 2; do
  wait_ready "http://127.0.0.1:$((BASE_PORT + 30 + i))/healthz" "nats-server $i" "${pids[$i]}"
done

cat >"$work/vigil.yaml" <<'EOF'
# The default caps (10,000 streaming connections per token and per
# address) would refuse this run: every connection uses one token.
access:
  limits:
    max_conns_per_token: -1
    max_conns_per_ip: -1
EOF


start_node() { # index (1-based)
  local i=$1 port=$((BASE_PORT + 19 + $1))
  mkdir -p "$work/vigil$i"
  if [[ $i -gt 1 ]]; then # every node accepts node 1's admin token (the bench uses one token)
    cp "$work/vigil1/admin.token" "$work/vigil$i/admin.token"
  fi
  env ${NODE_GOGC:+GOGC=$NODE_GOGC} "$work/vigil" serve --config "$work/vigil.yaml" --listen "127.0.0.1:$port" --data-dir "$work/vigil$i" \
    --nats "nats://127.0.0.1:$((BASE_PORT + (i - 1) % 3))" --node-id "idle-$i" >"$work/vigil$i.log" 2>&1 &
  pids+=($!)
  node_pids+=($!)
  urls+=("http://127.0.0.1:$port")
}

urls=()
node_pids=()
start_node 1 # first: it creates the stream and buckets (three replicas)
wait_ready "${urls[0]}/readyz" "vigil node 1" "${node_pids[0]}"
for i in $(seq 2 "$NODES"); do
  start_node "$i"
done
for i in $(seq 1 "$NODES"); do
  wait_ready "${urls[$((i - 1))]}/readyz" "vigil node $i" "${node_pids[$((i - 1))]}"
done
echo "== 3 nats-servers (client ports $BASE_PORT-$((BASE_PORT + 2))) and $NODES Vigil nodes ready: ${urls[*]}"

cpu_secs() { # pid: user+system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat"
}
before=()
for pid in "${node_pids[@]}"; do
  before+=("$(cpu_secs "$pid")")
done

servers=$(IFS=,; echo "${urls[*]}")
cmd=("$work/vigil" bench --data-dir "$work/vigil1" --server "${urls[0]}" --servers "$servers"
  --idle "$CONNS" --procs "$PROCS" --source-ips "$SOURCE_IPS" --probe-node "$PROBE_NODE")
echo "== uptime: $(uptime)"
echo "== nodes run with GOGC=${NODE_GOGC:-default}"
echo "== vigil bench --idle $CONNS --servers <the $NODES nodes> --procs $PROCS --source-ips $SOURCE_IPS --probe-node $PROBE_NODE"
start=$SECONDS
status=0
"${cmd[@]}" || status=$?
echo "== bench took $((SECONDS - start)) s, exit $status; uptime: $(uptime)"
for i in "${!node_pids[@]}"; do
  echo "   node $((i + 1)): $(awk '/VmHWM/ {print $2/1024 " MiB peak RSS"}' "/proc/${node_pids[$i]}/status"), CPU $(cpu_secs "${node_pids[$i]}") s (was ${before[$i]} s before the bench)"
done
exit "$status"
