#!/usr/bin/env bash
# Runs every loadgen scenario against seed-node and attractio, each server
# started fresh per scenario and pinned to CPU 0, the generator pinned to
# CPU 1. Appends JSON report lines to bench/results.jsonl (or $OUT), tables to
# bench/results.txt, and draws bench/results.svg. Loopback only; every run is
# bounded by its --duration.
#
#   bench/run.sh                 # both servers, all scenarios
#   SERVERS=relay bench/run.sh   # the generator's own ceiling (loadgen/examples/relay.rs)
#   SERVERS=attractio bench/run.sh broadcast ceiling
#   IDLE_CONNECTIONS=10000 bench/run.sh idle
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source "$ROOT/bench/servers.sh"
OUT=${OUT:-$ROOT/bench/results.jsonl}
TXT=${TXT:-$ROOT/bench/results.txt}
SVG=${SVG:-$ROOT/bench/results.svg}
SERVERS=${SERVERS:-"seed-node attractio"}
REPEAT=${REPEAT:-1}   # runs per scenario and server, interleaved; the summary shows the median
SCENARIOS=${*:-"broadcast ceiling echo drag idle"}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-19000}  # the sandbox caps open files at 20000 per process

run() { # name scenario args...
  local name=$1 scenario=$2; shift 2
  local ping=30000
  [ "$scenario" = idle ] && ping=5000
  start_server "$name" $ping
  local extra=()
  [ -n "$METRICS" ] && [ "$scenario" = drag ] && extra+=(--metrics-url "$METRICS")
  local label=$name
  [ "$name" = attractio ] && label=${ATTRACTIO_LABEL:-attractio}
  echo "== $label $scenario $*" | tee -a "$TXT"
  taskset -c 1 "$LOADGEN" "$scenario" --url "$URL" --label "$label" --server-pid "$SERVER_PID" \
    --json "$OUT" "${extra[@]}" "$@" | tee -a "$TXT" || echo "loadgen $scenario failed" | tee -a "$TXT"
  stop_server
}

for scenario in $SCENARIOS; do
  for _ in $(seq "$REPEAT"); do
  for name in $SERVERS; do
    case $scenario in
      broadcast) run "$name" broadcast --rooms 50 --clients 10 --rate 10 --duration 10s ;;
      ceiling)   run "$name" ceiling --clients 200 --start-rate 1 --factor 1.25 --duration 3s --max-steps 24 ;;
      echo)      run "$name" echo --clients 50 --duration 5s ;;
      drag)      run "$name" drag --rooms 50 --clients 5 --duration 10s ;;
      idle)      run "$name" idle --connections "$IDLE_CONNECTIONS" --per-room 10 --duration 10s ;;
    esac
  done
  done
done
"$LOADGEN" plot --out "$SVG" "$OUT"
"$LOADGEN" summary "$OUT" | tee "${OUT%.jsonl}.md"
