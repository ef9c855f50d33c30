#!/bin/bash
# What a room spread over nodes costs (issue 14): the broadcast scenario
# against one attractio, then against three nodes sharing rooms through one
# redis-server, each room's members spread over the three. Everything on
# loopback; the nodes on 127.0.0.2-4. Prints loadgen's table per run and
# the CPU seconds every process used during it (nodes and Redis).
#   bench/cluster.sh [ROOMS] [CLIENTS] [RATE] [DURATION]
# Needs release builds: cargo build --release -p server -p loadgen
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROOMS=${1:-50} CLIENTS=${2:-10} RATE=${3:-10} DURATION=${4:-10s}
BIN=${BIN:-$ROOT/target/release/attractio}
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) of a process so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# start_node IP [flags...]: sets NODE_PID and NODE_URL.
start_node() {
  local ip=$1; shift
  local dir="$WORK/node-$ip"
  mkdir -p "$dir"
  ATTRACTIO_MAX_CONNECTIONS_PER_IP=1000000 ATTRACTIO_NEW_ROOMS_PER_MINUTE=1000000 ATTRACTIO_MAX_STORED_ROOMS_PER_IP=1000000 \
    "$BIN" --addr "$ip:0" --data-dir "$dir/store" --static-dir "$dir/no-app" \
    --max-room-size 256 --rate-limit 1000000 --rate-burst 1000000 "$@" \
    >"$dir/out" 2>"$dir/err" &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  local addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's#attractio listening on http://##p' "$dir/out")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "node on $ip did not start:"; cat "$dir/err"; exit 1; }
  NODE_URL="ws://$addr/"
}

# run LABEL URLS PID...: the broadcast scenario, then each PID's CPU.
run() {
  local label=$1 urls=$2; shift 2
  local before=()
  for p in "$@"; do before+=("$(cpu_s "$p")"); done
  "$LOADGEN" --threads 2 broadcast --url "$urls" --label "$label" \
    --rooms "$ROOMS" --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION"
  local i=0 total=0
  for p in "$@"; do
    local used
    used=$(echo "$(cpu_s "$p") - ${before[$i]}" | bc)
    echo "cpu_s pid=$p $used"
    total=$(echo "$total + $used" | bc)
    i=$((i + 1))
  done
  echo "cpu_s $label total $total"
}

echo "== one node: $ROOMS rooms x $CLIENTS clients, $RATE msg/s each, $DURATION"
start_node 127.0.0.2
run one-node "$NODE_URL" "$NODE_PID"
kill "$NODE_PID"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
URLS=
NODE_PIDS=()
for ip in 127.0.0.2 127.0.0.3 127.0.0.4; do
  start_node "$ip" --redis-url "redis://127.0.0.1:$REDIS_PORT"
  URLS=${URLS:+$URLS,}$NODE_URL
  NODE_PIDS+=("$NODE_PID")
done
echo "== three nodes and one redis-server, each room over the three"
run three-nodes "$URLS" "${NODE_PIDS[@]}" "$REDIS_PID"
echo "redis used_memory: $(redis-cli -p "$REDIS_PORT" info memory | sed -n 's/^used_memory_human://p')"
