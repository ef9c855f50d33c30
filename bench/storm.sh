#!/bin/sh
# The storm of issue 15: 5,000 clients in rooms of 100 drop at once (no
# close frame) and resume within a second, against a fresh attractio on
# loopback with the per-address limits lifted (all load comes from
# 127.0.0.x) and rooms of 100 allowed.
#   bench/storm.sh [BINARY] [more loadgen storm flags]
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/attractio}
[ $# -gt 0 ] && shift
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
DATA=$(mktemp -d)
OUT=$DATA.out
ATTRACTIO_MAX_STORED_ROOMS_PER_IP=1000000 "$BIN" --addr 127.0.0.1:0 --data-dir "$DATA/store" --static-dir "$DATA/no-app" \
  --max-connections-per-ip 1000000 --new-rooms-per-minute 1000000 \
  --max-room-size 100 >"$OUT" 2>"$DATA.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$OUT" "$DATA.err"' EXIT
until ADDR=$(sed -n 's#attractio listening on http://##p' "$OUT") && [ -n "$ADDR" ]; do sleep 0.1; done
"$LOADGEN" --threads 2 storm --url "ws://$ADDR/" --server-pid "$PID" \
  --clients 5000 --per-room 100 --resume-within 1s "$@"
