#!/usr/bin/env bash
# One loadgen scenario against one server, printing the user and system CPU
# seconds of both sides: the server's from /proc/PID/stat (utime, stime) over
# the whole loadgen run, the generator's from bash's `time`. Same pinning and
# flags as run.sh. Loopback only; bounded by the scenario's --duration.
#
#   bench/cpu-split.sh seed-node broadcast --rooms 50 --clients 10 --rate 10 --duration 10s
#   bench/cpu-split.sh attractio echo --clients 50 --duration 5s
#   bench/cpu-split.sh relay echo --clients 50 --duration 5s
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-loadgen}
LOADGEN=${LOADGEN:-$CARGO_TARGET_DIR/release/loadgen}
ATTRACTIO=${ATTRACTIO:-$CARGO_TARGET_DIR/release/attractio}
RELAY=${RELAY:-$CARGO_TARGET_DIR/release/examples/relay}
SEED_DIR=${SEED_DIR:-/tmp/seed-node}
OUT=${OUT:-/tmp/cpu-split.jsonl}
name=$1
shift

if [ "$name" = seed-node ] && [ ! -d "$SEED_DIR/node_modules" ]; then
  rm -rf "$SEED_DIR" && cp -r "$ROOT/../shared/peers/seed-node" "$SEED_DIR" && chmod -R u+w "$SEED_DIR"
  (cd "$SEED_DIR" && npm ci --silent)
fi

case $name in
  seed-node)
    (cd "$SEED_DIR" && PORT=8080 WS_PING_MS=30000 exec taskset -c 0 node server.js >/tmp/cpu-split-server.log 2>&1) &
    url=ws://127.0.0.1:8080/ ;;
  relay)
    taskset -c 0 "$RELAY" 127.0.0.1:9000 >/tmp/cpu-split-server.log 2>&1 &
    url=ws://127.0.0.1:9000/ ;;
  attractio)
    rm -rf /tmp/cpu-split-data && mkdir -p /tmp/cpu-split-data
    taskset -c 0 "$ATTRACTIO" --addr 127.0.0.1:3001 --data-dir /tmp/cpu-split-data \
      --max-room-size 256 --rate-limit 1000000 --rate-burst 1000000 >/tmp/cpu-split-server.log 2>&1 &
    url=ws://127.0.0.1:3001/ ;;
  *) echo "server: seed-node, attractio or relay" >&2; exit 2 ;;
esac
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1.5
ticks() { awk '{print $14, $15}' "/proc/$pid/stat"; }
before=$(ticks)
TIMEFORMAT="%U %S"
{ time taskset -c 1 "$LOADGEN" "$@" --url "$url" --label "$name" --server-pid "$pid" --json "$OUT" \
    >/tmp/cpu-split-loadgen.txt 2>/tmp/cpu-split-loadgen.err; } 2>/tmp/cpu-split-generator.time
after=$(ticks)
hz=$(getconf CLK_TCK)
read -r gen_user gen_sys </tmp/cpu-split-generator.time
echo "$before $after" | awk -v hz="$hz" -v n="$name" -v s="$1" -v gu="$gen_user" -v gs="$gen_sys" \
  '{ printf "%s %s: server user %.2f s, system %.2f s; generator user %.2f s, system %.2f s\n", n, s, ($3-$1)/hz, ($4-$2)/hz, gu, gs }'
grep -E "round trips/s|deliveries/s|latency p50" /tmp/cpu-split-loadgen.txt | head -3
