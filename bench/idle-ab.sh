#!/usr/bin/env bash
# Idle memory and connect+join rate of two attractio binaries, interleaved:
# 19,000 connections in rooms of 10 (loadgen idle), the server pinned to
# CPU 0 and the generator to CPU 1, a fresh data folder each run. Loopback
# only; each run ends by itself.
#
#   bench/idle-ab.sh path/to/attractio-a path/to/attractio-b [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 ROUNDS=${3:-2}
LOADGEN=${LOADGEN:-target/release/loadgen}
# The generator is one address: lift the per-address limits (through the
# environment, which a binary from before those flags ignores).
export ATTRACTIO_MAX_CONNECTIONS_PER_IP=1000000 ATTRACTIO_NEW_ROOMS_PER_MINUTE=1000000 ATTRACTIO_MAX_STORED_ROOMS_PER_IP=1000000
for _ in $(seq "$ROUNDS"); do
  for bin in "$A" "$B"; do
    data=$(mktemp -d)
    taskset -c 0 "$bin" --addr 127.0.0.1:3011 --data-dir "$data" --max-room-size 256 \
      --rate-limit 1000000 --rate-burst 1000000 >/dev/null 2>&1 &
    pid=$!
    sleep 1
    echo "== $bin"
    taskset -c 1 "$LOADGEN" idle --url ws://127.0.0.1:3011/ --connections 19000 --per-room 10 \
      --duration 3s --server-pid "$pid" | grep -E "connect\+join|rss per connection"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
  done
done
