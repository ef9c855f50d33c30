#!/usr/bin/env bash
# A newcomer's first `cargo xtask run` or `cargo xtask test`, timed: a fresh
# clone of this repository, an empty cargo home (so no trunk, no
# wasm-bindgen-cli, no crates downloaded or built), rustup's toolchains kept.
#
#   bench/first-run.sh run  [COMMIT]   # seconds until :PORT answers, until it
#                                      # serves the board, and for a second run
#   bench/first-run.sh test [COMMIT]   # seconds for .ci/run (= cargo xtask test)
#
# PORT (default 3921) keeps clear of a server on :3000. Output and logs go to
# $OUT (default /tmp/first-run/<mode>-<commit>). Also note `uptime` and a
# speed reference, e.g. `time npm ci` in ../shared/peers/seed-node.
set -u
mode=${1:?usage: first-run.sh run|test [COMMIT]}
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse --short "${2:-HEAD}")
port=${PORT:-3921}
work=/tmp/first-run/work-$mode-$commit
out=${OUT:-/tmp/first-run/$mode-$commit}
rm -rf "$work" "$out"
mkdir -p "$work/cargo" "$work/home" "$work/bin" "$out"

# rustup's proxies only: nothing else that lives in ~/.cargo/bin.
for tool in cargo rustc rustup rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    ln -s "$(command -v $tool)" "$work/bin/$tool"
done
export RUSTUP_HOME=${RUSTUP_HOME:-$(rustup show home)}
export CARGO_HOME=$work/cargo HOME=$work/home
export PATH=$work/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
git clone -q "$repo" "$work/clone"
cd "$work/clone"
git checkout -q "$commit"
uptime | tee "$out/uptime-start"

seconds() { echo $(($(date +%s) - start)); }

if [ "$mode" = test ]; then
    start=$(date +%s)
    .ci/run >"$out/test.log" 2>&1
    echo "cargo xtask test: exit $? after $(seconds) s" | tee "$out/times"
    uptime | tee "$out/uptime-end"
    exit
fi

# One `cargo xtask run` in its own process group; waits for the board, then
# stops the whole group with SIGINT as Ctrl-C would.
serve() {
    local log=$1 first=""
    start=$(date +%s)
    setsid cargo xtask run -- --addr 127.0.0.1:$port >"$log" 2>&1 &
    local group=$!
    while kill -0 $group 2>/dev/null; do
        page=$(curl -s -m 2 http://127.0.0.1:$port/ || true)
        if [ -n "$page" ] && [ -z "$first" ]; then
            first=$(seconds)
            echo "$log: first page after $first s" | tee -a "$out/times"
            echo "$page" >"$out/first-page.html"
        fi
        if echo "$page" | grep -q "_bg.wasm"; then
            echo "$log: the board after $(seconds) s" | tee -a "$out/times"
            break
        fi
        sleep 0.5
    done
    kill -INT -- -$group 2>/dev/null
    sleep 5
    kill -KILL -- -$group 2>/dev/null
}
serve "$out/run.log"
uptime | tee "$out/uptime-end"
serve "$out/run2.log"
