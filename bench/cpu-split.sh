#!/usr/bin/env bash
# One loadgen scenario against one server, printing the user and system CPU
# seconds of both sides: the server's from /proc/PID/stat (utime, stime) over
# the whole loadgen run, the generator's from bash's `time`. Servers start as
# in run.sh (bench/servers.sh). Loopback only; bounded by the scenario's
# --duration.
#
#   bench/cpu-split.sh seed-node broadcast --rooms 50 --clients 10 --rate 10 --duration 10s
#   bench/cpu-split.sh attractio echo --clients 50 --duration 5s
#   bench/cpu-split.sh relay echo --clients 50 --duration 5s
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source "$ROOT/bench/servers.sh"
OUT=${OUT:-/tmp/cpu-split.jsonl}
name=$1
shift

start_server "$name" 30000
trap stop_server EXIT
ticks() { awk '{print $14, $15}' "/proc/$SERVER_PID/stat"; }
before=$(ticks)
TIMEFORMAT="%U %S"
{ time taskset -c 1 "$LOADGEN" "$@" --url "$URL" --label "$name" --server-pid "$SERVER_PID" --json "$OUT" \
    >/tmp/cpu-split-loadgen.txt 2>/tmp/cpu-split-loadgen.err; } 2>/tmp/cpu-split-generator.time
after=$(ticks)
hz=$(getconf CLK_TCK)
read -r gen_user gen_sys </tmp/cpu-split-generator.time
echo "$before $after" | awk -v hz="$hz" -v n="$name" -v s="$1" -v gu="$gen_user" -v gs="$gen_sys" \
  '{ printf "%s %s: server user %.2f s, system %.2f s; generator user %.2f s, system %.2f s\n", n, s, ($3-$1)/hz, ($4-$2)/hz, gu, gs }'
grep -E "round trips/s|deliveries/s|latency p50" /tmp/cpu-split-loadgen.txt | head -3
