#!/usr/bin/env bash
# Publish requests/s, and the server's CPU per publish, with one token sent
# on every request: a role token, and scoped tokens signed HS256, RS256
# and EdDSA (the test keys of testdata/jwt). Scenario (f)'s load, one fresh
# server per run, the servers given alternated in each round.
#
#   bash bench/scoped-token-publish.sh target/release/watchbus [OTHER_BUILD ...]
#
# ROUNDS (2), DURATION (10s), PUBLISHERS (8), PORT (18090). The bench tool
# is the first binary's. Needs openssl, curl and python3.
set -euo pipefail

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
PUBLISHERS=${PUBLISHERS:-8}
PORT=${PORT:-18090}
[ $# -ge 1 ] || { echo "usage: $0 WATCHBUS_BIN [WATCHBUS_BIN ...]" >&2; exit 2; }
BENCH=$1
KEYS=$(cd "$(dirname "$0")/../testdata/jwt" && pwd)
SECRET=bench-secret-of-more-than-32-bytes-long
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
claims=$(printf '{"exp":%d,"watchbus":{"admin":true}}' $(( $(date +%s) + 7200 )) | b64url)
mint() {
  local header signature
  header=$(printf '{"alg":"%s","typ":"JWT"}' "$1" | b64url)
  printf '%s' "$header.$claims" > "$WORK/signed"
  case $1 in
    HS256) signature=$(openssl dgst -sha256 -hmac "$SECRET" -binary < "$WORK/signed" | b64url) ;;
    RS256) signature=$(openssl dgst -sha256 -sign "$KEYS/rsa.key" -binary < "$WORK/signed" | b64url) ;;
    EdDSA) signature=$(openssl pkeyutl -sign -inkey "$KEYS/ed25519.key" -rawin -in "$WORK/signed" | b64url) ;;
  esac
  printf '%s.%s.%s' "$header" "$claims" "$signature"
}
declare -A TOKEN=([role]=role-admin-token [HS256]=$(mint HS256) [RS256]=$(mint RS256) [EdDSA]=$(mint EdDSA))

printf 'round\tserver\ttoken\treq/s\tCPU µs/publish\terrors\n'
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    for kind in role HS256 RS256 EdDSA; do
      key=$KEYS/rsa.pub.pem
      [ "$kind" = EdDSA ] && key=$KEYS/ed25519.pub.pem
      "$bin" serve --listen "127.0.0.1:$PORT" --admin-token role-admin-token \
        --jwt-secret "$SECRET" --jwt-public-key "$key" --log warn > /dev/null 2>&1 &
      pid=$!
      sleep 1
      status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x \
        -H "Authorization: Bearer ${TOKEN[$kind]}" "127.0.0.1:$PORT/v1/events?key=probe")
      [ "$status" = 200 ] || { echo "$bin refused the $kind token: $status" >&2; kill "$pid"; exit 1; }
      "$BENCH" bench --server "http://127.0.0.1:$PORT" --token "${TOKEN[$kind]}" --publish-only \
        --rate 0 --publishers "$PUBLISHERS" --duration "$DURATION" --pid "$pid" --json \
        2> /dev/null > "$WORK/report.json"
      kill "$pid"
      wait "$pid" 2> /dev/null || true
      python3 - "$round" "$bin" "$kind" "$WORK/report.json" <<'PY'
import json, sys
round_, server, kind, path = sys.argv[1:]
report = json.load(open(path))
publish, cpu = report["publish"], (report.get("server") or {}).get("cpu_us_per_publish")
print(f"{round_}\t{server}\t{kind}\t{publish['requests_per_sec']:,.0f}\t"
      f"{cpu:.1f}\t{sum(publish['errors'].values())}")
PY
    done
  done
done
