#!/bin/sh
# Runs bench/history-flood.mjs (20 rooms x 512 chat lines of 65,000 bytes,
# then every client leaves) against a fresh attractio on loopback, with
# its rate limit raised so the flood takes seconds, not minutes.
#   bench/history-flood.sh [BINARY] [more server flags]
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/attractio}
[ $# -gt 0 ] && shift
DATA=$(mktemp -d)
OUT=$DATA.out
"$BIN" --addr 127.0.0.1:0 --data-dir "$DATA/store" --static-dir "$DATA/no-app" \
  --rate-limit 100000 --rate-burst 100000 "$@" >"$OUT" 2>"$DATA.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$OUT" "$DATA.err"' EXIT
until ADDR=$(sed -n 's#attractio listening on http://##p' "$OUT") && [ -n "$ADDR" ]; do sleep 0.1; done
node --experimental-websocket "$ROOT/bench/history-flood.mjs" \
  --addr "$ADDR" --pid "$PID" --data-dir "$DATA/store"
