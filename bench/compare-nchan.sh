#!/usr/bin/env bash
# Side-by-side benchmark: watchbus against nchan (the nginx module), on
# loopback, same `watchbus bench` scenarios, same settings, one table.
#
#   bench/compare-nchan.sh                 # full size (10,000 subscribers)
#   QUICK=1 bench/compare-nchan.sh         # subscribers / 10, 3 s runs
#   WATCHBUS_BIN=target/debug/watchbus QUICK=1 bench/compare-nchan.sh
#   SCENARIOS="a e" bench/compare-nchan.sh # a subset
#
# See bench/README.md for what each scenario measures and how to read the
# table. Raw JSON of every run, the table, the commands and the machine go
# to bench/results/<date>-<commit>/ (gitignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
HERE="$ROOT/bench"

# ------------------------------------------------------------- settings
QUICK=${QUICK:-0}
SCENARIOS=${SCENARIOS:-"a b c d e f"}
WATCHBUS_BIN=${WATCHBUS_BIN:-}
BENCH_BIN=${BENCH_BIN:-}                 # load generator; default: WATCHBUS_BIN
FLOOR_BIN=${FLOOR_BIN:-}                 # (f)'s floor, the transport_floor example; built when unset
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
NCHAN_MODULE=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
NGINX_WORKERS=${NGINX_WORKERS:-2}        # both cores, like watchbus's tokio workers
RETENTION=${RETENTION:-10000}            # watchbus --retention-events = nchan_message_buffer_length
KEEP_ALIVE_S=${KEEP_ALIVE_S:-15}         # SSE keep-alive comment / nchan ping, seconds
PAYLOAD=${PAYLOAD:-128}
CONNECT_RATE=${CONNECT_RATE:-2000}       # subscriber connections opened per second
DRAIN=${DRAIN:-5s}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}      # seconds, per bench run

if [[ $QUICK == 1 ]]; then
  SUBS_SMALL=100 SUBS_BIG=1000 DURATION=3s WARMUP=0s IDLE_HOLD=3s
  C_DURATION=3s C_MAX_TRIALS=${C_MAX_TRIALS:-5} C_TIME_CAP=${C_TIME_CAP:-90}
  F_ROUNDS=${F_ROUNDS:-1}
else
  SUBS_SMALL=1000 SUBS_BIG=10000 DURATION=10s WARMUP=1s IDLE_HOLD=5s
  C_DURATION=5s C_MAX_TRIALS=${C_MAX_TRIALS:-8} C_TIME_CAP=${C_TIME_CAP:-300}
  # (f) swings widely from one run to the next on a small VM (nchan: 18k to
  # 72k requests/s): the two servers take turns, and the table gives medians.
  F_ROUNDS=${F_ROUNDS:-3}
fi
C_START=${C_START:-100}       # first rate tried in (c); doubled or halved from there
C_BISECT=${C_BISECT:-2}       # bisection steps once a pass and a fail are known
C_MAX_P99_US=${C_MAX_P99_US:-1000000}
C_MIN_RATE_FRAC=${C_MIN_RATE_FRAC:-0.9}   # publishers must reach 90 % of the asked rate
PUBLISHERS=${PUBLISHERS:-4}               # (a), (b), (c)
D_PUBLISHERS=${D_PUBLISHERS:-8}           # (d): 5,000 events/s over many keys
F_PUBLISHERS=${F_PUBLISHERS:-8}           # (f): unpaced publishers / wrk connections
                                          # F_ROUNDS: (f) rounds, servers alternated (3; QUICK 1)
E_KEYS=${E_KEYS:-1}                       # (e): keys the idle subscribers watch

log() { printf '\033[1m[compare-nchan %s]\033[0m %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '\033[1;31m[compare-nchan] error:\033[0m %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------- cleanup
SRV_PID=""          # the running server (nginx master or watchbus)
SRV_KIND=""
SRV_CHILDREN=""     # nginx workers, in case the master has to be killed
SRV_NAME=""         # the run it serves, to name its log
SRV_LOG_DIR=""
WORK=""
RESULTS=""

stop_server() {
  [[ -n $SRV_PID ]] || return 0
  local pid=$SRV_PID kids=$SRV_CHILDREN i f
  SRV_PID="" SRV_CHILDREN=""
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$SRV_KIND (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  for k in $kids; do   # workers normally exit with their master
    kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null || true
  done
  # Keep the server's log beside the bench output (the temp dir is removed).
  for f in "$SRV_LOG_DIR/error.log" "$SRV_LOG_DIR/server.log"; do
    if [[ -s $f ]]; then
      mkdir -p "$RESULTS/logs"
      cp "$f" "$RESULTS/logs/$SRV_NAME.log" 2>/dev/null || true
    fi
  done
  return 0
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------- prerequisites
install_missing() {
  local missing=()
  [[ -x $NGINX_BIN ]] || missing+=(nginx-light)
  [[ -f $NCHAN_MODULE ]] || missing+=(libnginx-mod-nchan)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v python3 >/dev/null || missing+=(python3)
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null ||
    die "missing ${missing[*]} and no apt-get: install nginx with the nchan module and wrk, or set NGINX_BIN / NCHAN_MODULE"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "missing ${missing[*]}; run as root or install them"
    sudo=(sudo)
  fi
  log "installing ${missing[*]} (Debian packages; the system nginx service is not used)"
  "${sudo[@]}" apt-get update
  # nginx-light and wrk are asked for even when only one is missing: apt skips what is there.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y nginx-light libnginx-mod-nchan wrk python3
  if [[ ! -f $NCHAN_MODULE ]]; then
    local found
    found=$(dpkg -L libnginx-mod-nchan 2>/dev/null | grep 'ngx_nchan_module\.so$' | head -n1 || true)
    [[ -n $found ]] || die "libnginx-mod-nchan installed but ngx_nchan_module.so not found"
    NCHAN_MODULE=$found
  fi
  [[ -x $NGINX_BIN ]] || NGINX_BIN=$(command -v nginx || true)
  [[ -x $NGINX_BIN ]] || die "nginx not found after installing nginx-light"
}
install_missing
HAVE_WRK=1
command -v wrk >/dev/null || { HAVE_WRK=0; log "wrk not available: scenario (f) uses the bench tool only"; }

if [[ -z $WATCHBUS_BIN ]]; then
  log "building watchbus (release)"
  cargo build --release --bin watchbus
  WATCHBUS_BIN=target/release/watchbus
fi
[[ -x $WATCHBUS_BIN ]] || die "WATCHBUS_BIN=$WATCHBUS_BIN is not an executable"
WATCHBUS_BIN=$(cd "$(dirname "$WATCHBUS_BIN")" && pwd)/$(basename "$WATCHBUS_BIN")
BENCH_BIN=${BENCH_BIN:-$WATCHBUS_BIN}
# (f) also measures a server that does nothing but answer: the most any
# server can reach here beside this load generator. Informational only.
HAVE_FLOOR=0
if ((HAVE_WRK)) && [[ " $SCENARIOS " == *" f "* ]]; then
  if [[ -z $FLOOR_BIN ]] && command -v cargo >/dev/null; then
    log "building the transport_floor example (release)"
    cargo build --release -p watchbus-http --example transport_floor && FLOOR_BIN=target/release/examples/transport_floor
  fi
  if [[ -n $FLOOR_BIN && -x $FLOOR_BIN ]]; then
    HAVE_FLOOR=1
    FLOOR_BIN=$(cd "$(dirname "$FLOOR_BIN")" && pwd)/$(basename "$FLOOR_BIN")
  else
    log "no transport_floor binary: scenario (f) runs without its floor"
  fi
fi
"$BENCH_BIN" bench --help >/dev/null 2>&1 || die "$BENCH_BIN has no 'bench' subcommand"

# File descriptors: both servers and the load generator need > 10,000.
HARD_NOFILE=$(ulimit -Hn)
[[ $HARD_NOFILE == unlimited ]] && HARD_NOFILE=1048576
ulimit -n "$HARD_NOFILE"
if ((HARD_NOFILE < SUBS_BIG + 200)); then
  die "the open-file hard limit ($HARD_NOFILE) is below $((SUBS_BIG + 200)): raise it (ulimit -Hn, limits.conf) or use QUICK=1"
fi
NGINX_NOFILE=$((HARD_NOFILE > 65536 ? 65536 : HARD_NOFILE))
NGINX_CONNS=$((NGINX_NOFILE - 100))

# ------------------------------------------------------------- results
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
if ! git --no-optional-locks diff --quiet HEAD -- 2>/dev/null; then COMMIT="$COMMIT-dirty"; fi
RESULTS=${RESULTS_DIR:-$HERE/results/$(date -u +%Y-%m-%d-%H%M%S)-$COMMIT$([[ $QUICK == 1 ]] && echo -quick || true)}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-nchan.XXXXXX")
CMDS="$RESULTS/commands.txt"
: >"$CMDS"
{
  echo "date:        $(date -u +%FT%TZ)"
  echo "commit:      $COMMIT"
  echo "mode:        $([[ $QUICK == 1 ]] && echo QUICK || echo full)"
  echo "watchbus:    $WATCHBUS_BIN ($("$WATCHBUS_BIN" --version 2>/dev/null || echo '?'))"
  echo "load gen:    $BENCH_BIN"
  echo "nginx:       $("$NGINX_BIN" -v 2>&1)"
  echo "nchan:       $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?') ($NCHAN_MODULE)"
  echo "kernel:      $(uname -srm)"
  echo "cpu:         $(nproc) x $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
  echo "memory:      $(grep -m1 MemTotal /proc/meminfo | awk '{printf "%.1f GiB", $2/1048576}')"
  echo "nofile:      $HARD_NOFILE"
  echo "load avg:    $(cut -d' ' -f1-3 /proc/loadavg) (at start)"
} >"$RESULTS/machine.txt"
log "results in $RESULTS"

# ------------------------------------------------------------- servers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$1 accepts connections, while $2 (pid) is alive.
wait_port() {
  local port=$1 pid=$2 logf=$3 i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logf" >&2 || true; die "$SRV_KIND exited before listening on $port (log: $logf)"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$logf" >&2 || true
  die "$SRV_KIND is not listening on 127.0.0.1:$port after 30 s (log: $logf)"
}

write_nginx_conf() {
  local dir=$1 port=$2 user=""
  # As root, nginx would run its workers as `nobody`, who cannot use the temp dir.
  ((EUID == 0)) && user="user $(id -un) $(id -gn);"
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# Written by bench/compare-nchan.sh; not a system configuration.
load_module $NCHAN_MODULE;
$user
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile $NGINX_NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections $NGINX_CONNS;
    multi_accept on;
}

http {
    access_log off;
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_max_body_size 1m;
    client_body_buffer_size 64k;

    nchan_shared_memory_size 256M;

    server {
        # reuseport: one listening socket per worker, connections spread over both.
        listen 127.0.0.1:$port reuseport;

        location = /pub {
            nchan_publisher;
            nchan_channel_id \$arg_id;
            nchan_message_buffer_length $RETENTION;
            nchan_message_timeout 0;    # never expire (watchbus: no retention age)
        }

        location = /sub {
            nchan_subscriber eventsource;
            nchan_channel_id \$arg_id;
            nchan_subscriber_timeout 0;
            nchan_eventsource_ping_interval $KEEP_ALIVE_S;
        }
    }
}
EOF
}

# start_server nchan|watchbus RUN-NAME: sets SRV_PID, SRV_PORT and TARGET (bench flags).
start_server() {
  SRV_KIND=$1 SRV_NAME=$2
  SRV_PORT=$(free_port)
  local dir="$WORK/$SRV_KIND-$SRV_PORT"
  SRV_LOG_DIR=$dir
  mkdir -p "$dir"
  case $SRV_KIND in
  nchan)
    write_nginx_conf "$dir" "$SRV_PORT"
    "$NGINX_BIN" -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/test.log" 2>&1 ||
      { cat "$dir/test.log" >&2; die "nginx rejects $dir/nginx.conf"; }
    echo "$NGINX_BIN -p $dir/ -e $dir/error.log -c $dir/nginx.conf -g 'daemon off;'   # nginx.conf: $RESULTS/nginx.conf" >>"$CMDS"
    cp "$dir/nginx.conf" "$RESULTS/nginx.conf"
    "$NGINX_BIN" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/stdout.log" 2>&1 &
    SRV_PID=$!
    wait_port "$SRV_PORT" "$SRV_PID" "$dir/error.log"
    # The master listens before it forks: wait for the workers too.
    local i
    for ((i = 0; i < 100; i++)); do
      SRV_CHILDREN=$(cat /proc/"$SRV_PID"/task/*/children 2>/dev/null || true)
      (($(wc -w <<<"$SRV_CHILDREN") >= NGINX_WORKERS)) && break
      sleep 0.1
    done
    (($(wc -w <<<"$SRV_CHILDREN") >= NGINX_WORKERS)) ||
      die "nginx (pid $SRV_PID) did not start its $NGINX_WORKERS workers (log: $dir/error.log)"
    TARGET=(--sub-url "http://127.0.0.1:$SRV_PORT/sub?id={key}" --pub-url "http://127.0.0.1:$SRV_PORT/pub?id={key}")
    PUB_URL="http://127.0.0.1:$SRV_PORT/pub?id=wrk-0"
    ;;
  watchbus)
    echo "$WATCHBUS_BIN serve --listen 127.0.0.1:$SRV_PORT --retention-events $RETENTION --keep-alive ${KEEP_ALIVE_S}s" >>"$CMDS"
    "$WATCHBUS_BIN" serve --listen "127.0.0.1:$SRV_PORT" --retention-events "$RETENTION" \
      --keep-alive "${KEEP_ALIVE_S}s" >"$dir/server.log" 2>&1 &
    SRV_PID=$!
    wait_port "$SRV_PORT" "$SRV_PID" "$dir/server.log"
    TARGET=(--server "http://127.0.0.1:$SRV_PORT")
    PUB_URL="http://127.0.0.1:$SRV_PORT/v1/events?key=wrk-0"
    ;;
  floor)
    echo "$FLOOR_BIN 127.0.0.1:$SRV_PORT" >>"$CMDS"
    "$FLOOR_BIN" "127.0.0.1:$SRV_PORT" >"$dir/server.log" 2>&1 &
    SRV_PID=$!
    wait_port "$SRV_PORT" "$SRV_PID" "$dir/server.log"
    TARGET=()
    PUB_URL="http://127.0.0.1:$SRV_PORT/v1/events?key=wrk-0"
    ;;
  esac
}

# ------------------------------------------------------------- bench runs
FAILURES=()

# bench_run NAME SERVER ARGS...: one `watchbus bench --json` run against the
# running server; the report goes to $RESULTS/NAME.json. Returns 1 (after a
# clear message) when the bench itself failed.
bench_run() {
  local name=$1 server=$2 rc=0
  shift 2
  local out="$RESULTS/$name.json" err="$RESULTS/$name.stderr"
  local cmd=("$BENCH_BIN" bench "${TARGET[@]}" "$@" --pid "$SRV_PID" --json)
  printf '%q ' "${cmd[@]}" >>"$CMDS"
  echo >>"$CMDS"
  timeout --signal=INT --kill-after=30 "$BENCH_TIMEOUT" "${cmd[@]}" >"$out" 2>"$err" || rc=$?
  [[ -s $err ]] || rm -f "$err"
  if ((rc != 0)) || ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out" 2>/dev/null; then
    printf '\033[1;31m[compare-nchan] scenario %s against %s FAILED\033[0m (exit %s); command:\n  %s\n' \
      "$name" "$server" "$rc" "${cmd[*]}" >&2
    [[ -f $err ]] && sed 's/^/  | /' "$err" | tail -n 15 >&2
    [[ -f $SRV_LOG_DIR/error.log ]] && grep -E '\[(alert|crit|emerg|error)\]' "$SRV_LOG_DIR/error.log" | tail -n 5 | sed 's/^/  nginx| /' >&2
    FAILURES+=("$name")
    mv -f "$out" "$RESULTS/$name.failed-output" 2>/dev/null || true
    [[ -f $err ]] || echo "exit $rc" >"$err"
    return 1
  fi
  python3 - "$out" <<'EOF' >&2 || true
import json, sys
r = json.load(open(sys.argv[1]))
d, lat, sv = r.get("deliveries"), r.get("latency_us"), r.get("server") or {}
parts = []
if r["config"]["mode"] == "idle":
    per = sv.get("rss_per_connection_bytes")
    parts.append(f"{r['subscribers']['connected']} held, " + (f"{per/1024:.2f} KiB/conn" if per is not None else "no RSS"))
else:
    parts.append(f"{r['publish']['requests_per_sec']:.0f} pub/s")
if d:
    parts.append(f"{d['per_sec']:.0f} deliveries/s, loss/dup/reorder {d['lost']}/{d['duplicates']}/{d['reordered']}")
if lat and lat.get("count"):
    parts.append(f"p99 {lat['p99']/1000:.1f} ms")
if sv.get("cpu_seconds") is not None:
    parts.append(f"server CPU {sv['cpu_seconds']:.2f} s")
parts.append("OK" if r["ok"] else "PROBLEMS")
print("    -> " + ", ".join(parts))
EOF
}

# One scenario against one server: a fresh server, the run, stop.
one() {
  local sc=$1 server=$2
  shift 2
  log "($sc) $server: $*"
  start_server "$server" "$sc-$server"
  bench_run "$sc-$server" "$server" "$@" || true
  stop_server
}

# Both servers back to back, same flags.
both() {
  local sc=$1
  shift
  one "$sc" nchan "$@"
  one "$sc" watchbus "$@"
}

# (c): highest rate with zero loss and p99 < 1 s at SUBS_BIG subscribers.
search_rate() {
  local server=$1 r=$C_START lo=0 hi=0 n=0 bis=0 t0=$SECONDS why verdict
  local trials="$RESULTS/c-$server-trials.tsv"
  : >"$trials"
  while :; do
    n=$((n + 1))
    log "(c) $server: trial $n at $r events/s"
    start_server "$server" "c-$server-r$r"
    verdict=fail
    if bench_run "c-$server-r$r" "$server" --subscribers "$SUBS_BIG" --keys 1 --rate "$r" \
      --publishers "$PUBLISHERS" --duration "$C_DURATION" --warmup "$WARMUP" --payload "$PAYLOAD" \
      --connect-rate "$CONNECT_RATE" --drain "$DRAIN"; then
      if why=$(python3 "$HERE/compare_table.py" check "$RESULTS/c-$server-r$r.json" \
        --max-p99-us "$C_MAX_P99_US" --min-rate-frac "$C_MIN_RATE_FRAC"); then
        verdict=pass
      fi
    else
      why="bench failed"
    fi
    stop_server
    log "(c) $server: $r events/s: $verdict ($why)"
    printf '%s\t%s\t%s\t%s\n' "$r" "$verdict" "$RESULTS/c-$server-r$r.json" "$why" >>"$trials"
    if [[ $verdict == pass ]]; then lo=$r; else hi=$r; fi
    ((n < C_MAX_TRIALS)) || { log "(c) $server: trial cap ($C_MAX_TRIALS) reached"; break; }
    ((SECONDS - t0 < C_TIME_CAP)) || { log "(c) $server: time cap (${C_TIME_CAP}s) reached"; break; }
    if ((hi == 0)); then
      r=$((r * 2))
    elif ((lo == 0)); then
      ((r > 1)) || break
      r=$((r / 2))
    else
      ((bis < C_BISECT)) || break
      ((hi - lo > 1 && (hi - lo) * 10 > lo)) || break   # within 10 %: close enough
      r=$(((lo + hi) / 2))
      bis=$((bis + 1))
    fi
  done
}

COMMON=(--payload "$PAYLOAD" --connect-rate "$CONNECT_RATE" --drain "$DRAIN")

for sc in $SCENARIOS; do
  case $sc in
  a) both a --subscribers "$SUBS_SMALL" --keys 1 --rate 1000 --publishers "$PUBLISHERS" \
       --duration "$DURATION" --warmup "$WARMUP" "${COMMON[@]}" ;;
  b) both b --subscribers "$SUBS_BIG" --keys 1 --rate 100 --publishers "$PUBLISHERS" \
       --duration "$DURATION" --warmup "$WARMUP" "${COMMON[@]}" ;;
  c) search_rate nchan
     search_rate watchbus ;;
  d) both d --subscribers "$SUBS_BIG" --keys "$SUBS_BIG" --key-order random --rate 5000 \
       --publishers "$D_PUBLISHERS" --duration "$DURATION" --warmup "$WARMUP" "${COMMON[@]}" ;;
  e) both e --idle --subscribers "$SUBS_BIG" --keys "$E_KEYS" --duration "$IDLE_HOLD" \
       --connect-rate "$CONNECT_RATE" ;;
  f) f_servers=(nchan watchbus)
     ((HAVE_FLOOR)) && f_servers+=(floor)
     for ((round = 1; round <= F_ROUNDS; round++)); do
       for server in "${f_servers[@]}"; do
         start_server "$server" "f-$server-r$round"
         if [[ $server != floor ]]; then
           log "(f) $server, round $round/$F_ROUNDS: --publish-only --rate 0 --publishers $F_PUBLISHERS"
           bench_run "f-$server-r$round" "$server" --publish-only --rate 0 --publishers "$F_PUBLISHERS" \
             --duration "$DURATION" --warmup "$WARMUP" --payload "$PAYLOAD" || true
         fi
         if ((HAVE_WRK)); then
           log "(f) $server, round $round/$F_ROUNDS: wrk -t2 -c$F_PUBLISHERS -d$DURATION POST $PUB_URL"
           echo "WRK_PAYLOAD=$PAYLOAD wrk -t2 -c$F_PUBLISHERS -d$DURATION --latency -s $HERE/publish.lua '$PUB_URL'" >>"$CMDS"
           wrk_out="$RESULTS/f-wrk-$server-r$round.txt"
           if ! WRK_PAYLOAD=$PAYLOAD timeout --kill-after=10 "$BENCH_TIMEOUT" wrk -t2 -c"$F_PUBLISHERS" \
             -d"$DURATION" --latency -s "$HERE/publish.lua" "$PUB_URL" >"$wrk_out" 2>&1; then
             printf '\033[1;31m[compare-nchan] wrk against %s FAILED\033[0m\n' "$server" >&2
             tail -n 5 "$wrk_out" >&2 || true
             FAILURES+=("f-wrk-$server-r$round")
           else
             grep -E 'Requests/sec|Non-2xx' "$wrk_out" | sed 's/^/    -> /' >&2 || true
           fi
         fi
         stop_server
       done
     done ;;
  *) die "unknown scenario '$sc' in SCENARIOS (a b c d e f)" ;;
  esac
done

# ------------------------------------------------------------- table
echo >&2
python3 "$HERE/compare_table.py" table "$RESULTS"
echo
echo "raw JSON, table.txt/.md, commands.txt, machine.txt: $RESULTS"
if ((${#FAILURES[@]})); then
  die "these bench runs failed: ${FAILURES[*]} (their stderr is in $RESULTS)"
fi
