#!/usr/bin/env bash
# User-space instructions per publish of `watchbus serve`, counted by
# valgrind's callgrind: the server runs under callgrind while one
# keep-alive connection sends N1, then (on a fresh server) N2 publishes of
# 128 bytes; the difference of the two totals over N2 - N1 publishes leaves
# out start-up and shutdown. Instruction counts do not depend on what else
# the machine is doing, so two builds compare even on a busy machine.
#
#   bench/publish-instructions.sh                      # target/release/watchbus
#   WATCHBUS_BIN=/tmp/old/watchbus bench/publish-instructions.sh
#   N1=1000 N2=3000 bench/publish-instructions.sh
#   SERVER=floor bench/publish-instructions.sh         # the transport_floor example
#
# It also prints the calls to malloc per publish, counted the same way.
# SERVER=floor measures the server of (f)'s ceiling instead, which answers
# every request with a fixed receipt (FLOOR_BIN, built when unset).
#
# Needs valgrind and python3. The kernel's share (the loopback TCP path) is
# not counted: see docs/BENCHMARKS.md, scenario (f), for that.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WATCHBUS_BIN=${WATCHBUS_BIN:-}
FLOOR_BIN=${FLOOR_BIN:-}
SERVER=${SERVER:-watchbus}
N1=${N1:-1000}
N2=${N2:-3000}

die() { printf 'publish-instructions: %s\n' "$*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
command -v python3 >/dev/null || die "python3 is missing"
((N2 > N1)) || die "N2 ($N2) must be larger than N1 ($N1)"
case $SERVER in
watchbus)
  if [[ -z $WATCHBUS_BIN ]]; then
    (cd "$ROOT" && cargo build --release --bin watchbus)
    WATCHBUS_BIN=$ROOT/target/release/watchbus
  fi
  BIN=$WATCHBUS_BIN
  ;;
floor)
  if [[ -z $FLOOR_BIN ]]; then
    (cd "$ROOT" && cargo build --release -p watchbus-http --example transport_floor)
    FLOOR_BIN=$ROOT/target/release/examples/transport_floor
  fi
  BIN=$FLOOR_BIN
  ;;
*) die "SERVER must be watchbus or floor, not '$SERVER'" ;;
esac

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# publish PORT N: N publishes of a 128-byte JSON body, one connection,
# each answered 200 before the next.
publish() {
  python3 - "$1" "$2" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
body = '{"pad":"' + 'x' * 116 + '"}'
conn = http.client.HTTPConnection('127.0.0.1', port)
for _ in range(n):
    conn.request('POST', '/v1/events?key=bench-0', body, {'Content-Type': 'application/json'})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f'publish answered {response.status}')
PY
}

# instructions N: the server's total instructions for a run of N publishes.
instructions() {
  local n=$1 port out
  port=$(free_port)
  out=$WORK/callgrind.$n
  local serve=("$BIN" serve --listen "127.0.0.1:$port" --retention-events 10000)
  [[ $SERVER == floor ]] && serve=("$BIN" "127.0.0.1:$port")
  valgrind --tool=callgrind --callgrind-out-file="$out" "${serve[@]}" >"$WORK/server.$n.log" 2>&1 &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited (log: $WORK/server.$n.log)"
    sleep 0.2
  done
  publish "$port" "$n"
  # watchbus shuts down on SIGINT; the floor has no handler, and a
  # background job of a script ignores SIGINT, so it gets SIGTERM.
  if [[ $SERVER == floor ]]; then kill -TERM "$SERVER_PID"; else kill -INT "$SERVER_PID"; fi
  wait "$SERVER_PID" || true
  SERVER_PID=
  echo "$(awk '/^(summary|totals):/ { print $2; exit }' "$out") $(mallocs "$out")"
}

# mallocs FILE: the calls to malloc that a callgrind output file records.
mallocs() {
  python3 - "$1" <<'PY'
import re, sys
names, callee, total = {}, None, 0
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        callee = names.get(m.group(1)) if line.startswith("cfn=") else None
    elif line.startswith("calls=") and callee == "malloc":
        total += int(line.split()[0].split("=")[1])
print(total)
PY
}

# Assigned first: a failed run then stops the script (set -e).
run1=$(instructions "$N1")
run2=$(instructions "$N2")
read -r first first_mallocs <<<"$run1"
read -r second second_mallocs <<<"$run2"
# Mallocs with one decimal: shell division would floor 7.98 to 7.
mallocs_per=$(awk -v a="$first_mallocs" -v b="$second_mallocs" -v n=$((N2 - N1)) 'BEGIN { printf "%.1f", (b - a) / n }')
echo "$BIN: $(((second - first) / (N2 - N1))) instructions and $mallocs_per mallocs per publish (user space; $N1 and $N2 publishes: $first and $second instructions)"
