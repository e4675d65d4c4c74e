#!/usr/bin/env bash
# watchbus on --store memory vs --store redis (one node, and two nodes on
# one Redis: publish through A, subscribe on B). Prints one line per run.
#
#   bench/redis-vs-memory.sh                 # release build, full size
#   DURATION=5s bench/redis-vs-memory.sh     # shorter runs
#
# A private redis-server (no persistence) is started on a free port and
# stopped at the end; the load generator is `watchbus bench`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10s}
if [[ -z ${WATCHBUS_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release --bin watchbus >&2)
  WATCHBUS_BIN=$ROOT/target/release/watchbus
fi
command -v redis-server >/dev/null || { echo "redis-server is required" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

PIDS=()
WORK=$(mktemp -d)
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# start_node STORE -> sets NODE_URL and NODE_PID
start_node() {
  local out="$WORK/node-$RANDOM.out"
  "$WATCHBUS_BIN" serve --listen 127.0.0.1:0 --store "$1" --retention-events 10000 --log warn >"$out" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 100); do grep -q '^listening on ' "$out" 2>/dev/null && break; sleep 0.05; done
  NODE_URL=$(sed -n 's/^listening on //p' "$out")
}

stop_node() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# run LABEL ARGS... : one bench run, one summary line
run() {
  local label=$1; shift
  local json
  json=$("$WATCHBUS_BIN" bench --json --duration "$DURATION" --payload 128 "$@")
  python3 - "$label" "$json" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
d, p = r.get("deliveries") or {}, r.get("publish") or {}
lat, plat = r.get("latency_us") or {}, p.get("latency_us") or {}
subs = r.get("subscribers") or {}
print(f"{label:<44} subs {subs.get('connected', 0):>5}  deliveries/s {d.get('per_sec') or 0:>9.0f}  "
      f"p99 {(lat.get('p99') or 0)/1000:>7.1f} ms  "
      f"publish req/s {p.get('requests_per_sec') or 0:>7.0f} (p99 {(plat.get('p99') or 0)/1000:.1f} ms)  "
      f"loss/dup/reorder {d.get('lost', 0)}/{d.get('duplicates', 0)}/{d.get('reordered', 0)}")
PY
}

echo "watchbus $("$WATCHBUS_BIN" --version), runs of $DURATION, 128 B payloads, Redis 7 on loopback"
for store in memory "redis://127.0.0.1:$REDIS_PORT"; do
  name=${store%%:*}
  [[ $name == redis ]] && redis-cli -p "$REDIS_PORT" flushall >/dev/null
  start_node "$store"; a=$NODE_URL; apid=$NODE_PID
  run "$name, 1 node, 1,000 subs, 1,000 ev/s" --server "$a" --pid "$apid" --subscribers 1000 --rate 1000
  run "$name, 1 node, 10,000 subs, 100 ev/s" --server "$a" --pid "$apid" --subscribers 10000 --rate 100
  run "$name, 1 node, publish only" --server "$a" --pid "$apid" --publish-only --rate 0 --publishers 8
  if [[ $name == redis ]]; then
    start_node "$store"; b=$NODE_URL; bpid=$NODE_PID
    run "redis, 2 nodes (pub A, sub B), 1,000 subs" --server "$b" --pid "$bpid" \
      --pub-url "$a/v1/events?key={key}" --sub-url "$b/v1/events?key={key}" --subscribers 1000 --rate 1000
    run "redis, 2 nodes (pub A, sub B), 10,000 subs" --server "$b" --pid "$bpid" \
      --pub-url "$a/v1/events?key={key}" --sub-url "$b/v1/events?key={key}" --subscribers 10000 --rate 100
    stop_node "$bpid"
  fi
  stop_node "$apid"
done
