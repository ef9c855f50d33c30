# Sourced by run.sh and cpu-split.sh (with ROOT set to the repository):
# where the binaries are, and how each server under test is started — fresh,
# pinned to CPU 0, on loopback — and stopped.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-loadgen}
LOADGEN=${LOADGEN:-$CARGO_TARGET_DIR/release/loadgen}
ATTRACTIO=${ATTRACTIO:-$CARGO_TARGET_DIR/release/attractio}
RELAY=${RELAY:-$CARGO_TARGET_DIR/release/examples/relay}
SEED_DIR=${SEED_DIR:-/tmp/seed-node}

ensure_seed_node() {
  if [ ! -d "$SEED_DIR/node_modules" ]; then
    rm -rf "$SEED_DIR" && cp -r "$ROOT/../shared/peers/seed-node" "$SEED_DIR" && chmod -R u+w "$SEED_DIR"
    (cd "$SEED_DIR" && npm ci --silent)
  fi
}

SERVER_PID=
start_server() { # name ping_ms -> sets SERVER_PID, URL, METRICS
  local name=$1 ping_ms=$2
  case $name in
    seed-node)
      ensure_seed_node
      (cd "$SEED_DIR" && PORT=8080 WS_PING_MS=$ping_ms exec taskset -c 0 node server.js >/tmp/bench-server.log 2>&1) &
      SERVER_PID=$!; URL=ws://127.0.0.1:8080/; METRICS= ;;
    relay) # calibration: the least a server can do; see loadgen/examples/relay.rs
      taskset -c 0 "$RELAY" 127.0.0.1:9000 >/tmp/bench-server.log 2>&1 &
      SERVER_PID=$!; URL=ws://127.0.0.1:9000/; METRICS= ;;
    attractio)
      # Every generated client comes from 127.0.0.1: the per-address
      # limits would count them as one user. Set through the environment,
      # which a binary from before those flags ignores (A/B runs).
      export ATTRACTIO_MAX_CONNECTIONS_PER_IP=1000000 ATTRACTIO_NEW_ROOMS_PER_MINUTE=1000000 ATTRACTIO_MAX_STORED_ROOMS_PER_IP=1000000
      rm -rf /tmp/benchdata && mkdir -p /tmp/benchdata
      taskset -c 0 "$ATTRACTIO" --addr 127.0.0.1:3001 --data-dir /tmp/benchdata \
        --max-room-size 256 --rate-limit 1000000 --rate-burst 1000000 --ping-interval "${ping_ms}ms" \
        >/tmp/bench-server.log 2>&1 &
      SERVER_PID=$!; URL=ws://127.0.0.1:3001/; METRICS=http://127.0.0.1:3001/metrics ;;
    *) echo "unknown server $name (seed-node, attractio or relay)" >&2; return 2 ;;
  esac
  for _ in $(seq 100); do
    grep -q listening /tmp/bench-server.log 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server $name did not start" >&2; cat /tmp/bench-server.log >&2; return 1
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; sleep 0.5; }
