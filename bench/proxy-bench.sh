#!/usr/bin/env bash
# edgehub proxy benchmark: backend direct vs edgeproxy vs nginx vs HAProxy vs CHP,
# in one run on one machine, loopback only. See bench/README.md.
#
#   bench/proxy-bench.sh                       # everything (~17 min on 2 cores)
#   bench/proxy-bench.sh --quick               # short durations, 1 round, 10k routes, 1k tunnels
#   bench/proxy-bench.sh --only direct,nginx,haproxy,chp
#   bench/proxy-bench.sh --scenarios throughput --only edgeproxy,nginx
#   bench/proxy-bench.sh --scenarios fixedrate --only nginx,edgeproxy --rates 5000,10000
#   bench/proxy-bench.sh --scenarios fixedrate-edgeload --only nginx,haproxy,edgeproxy --rates 2000,10000
#   bench/proxy-bench.sh --scenarios scale --only nginx,haproxy,edgeproxy   # both cores, 2 workers each
#   bench/proxy-bench.sh --scenarios throughput --only nginx,haproxy,edgeproxy,floor-epoll,floor-uring
#
# Report (Markdown) on stdout and in bench/results/<timestamp>.md; progress on stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
LIB=$BENCH_DIR/lib
PY=${PYTHON:-python3}
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$LIB/common.sh"
export PYTHONDONTWRITEBYTECODE=1   # leave no __pycache__ in bench/lib
EDGEPROXY_BIN=${EDGEPROXY_BIN:-target/release/edgeproxy}
[[ $EDGEPROXY_BIN = /* ]] || EDGEPROXY_BIN=$REPO_ROOT/$EDGEPROXY_BIN
EDGELOAD_BIN=${EDGELOAD_BIN:-target/release/edgeload}
[[ $EDGELOAD_BIN = /* ]] || EDGELOAD_BIN=$REPO_ROOT/$EDGELOAD_BIN
EL_MAXCONN=1000

ALL_PEERS=(direct nginx haproxy chp edgeproxy floor-epoll floor-uring)   # canonical order in the report
ONLY=direct,edgeproxy,nginx,haproxy,chp
SCENARIOS=throughput,fixedrate-edgeload,routes,ws
DURATION=10 WARMUP=2 CONNS=50 THREADS=1 ROUNDS=3
SCALE_THREADS=2 SCALE_CONNS=100 SCALE_WORKERS=2
RATES=2000,10000 HEY_CONNS=50
ROUTES=100000 ADDS=1000 GETALL_REPS=5 LOAD_CONC=16
WS_N=10000
LOAD_CORE=${BENCH_LOAD_CORE:-0}
PROXY_CORE=${BENCH_PROXY_CORE:-1}
RESULTS_DIR=$BENCH_DIR/results
KEEP_WORKDIR=0
CMDLINE="$0 $*"

usage() {
  cat <<EOF
usage: $0 [options]
  --only LIST         peers to run, comma-separated subset of: direct,edgeproxy,nginx,haproxy,chp,
                      floor-epoll,floor-uring (default: direct,edgeproxy,nginx,haproxy,chp).
                      Route-scale runs for edgeproxy/chp, WebSocket for all proxies. floor-epoll
                      and floor-uring are bench/lib/relay_floor.c, a byte relay with no user-space
                      work (epoll, or io_uring): the kernel's share of a request, which no proxy
                      over loopback TCP goes below (built with cc and liburing-dev)
  --scenarios LIST    subset of throughput,fixedrate,fixedrate-edgeload,routes,ws,scale (default:
                      throughput,fixedrate-edgeload,routes,ws; fixedrate is the older hey-based
                      fixed-rate run; fixedrate-edgeload needs target/release/edgeload: cargo build
                      --release -p loadtest; scale runs both cores for everyone, nothing pinned)
  --quick             short run: 3s runs, warm-up 1s, 1 round, 10k routes, 200 adds, 1000 tunnels
  --duration S        wrk/hey duration per measurement (default $DURATION)
  --rounds N          rounds of the throughput and fixed-rate scenarios (peers interleaved) and of
                      the route-scale 1-route/N-route wrk pair; the report shows medians (default $ROUNDS)
  --warmup S          wrk/hey warm-up before each measurement (default $WARMUP, 0 = none)
  --rates LIST        fixed request rates in req/s for the fixedrate scenario (default $RATES);
                      hey -c $HEY_CONNS -q <rate/$HEY_CONNS>; CHP runs at the lowest rate only
  --edgeload-connections N
                      fixedrate-edgeload: edgeload --max-connections (default $EL_MAXCONN); a slot that finds
                      them all busy waits, and the wait counts in its corrected latency
  --hey-connections N hey -c, its number of workers (default $HEY_CONNS); fewer workers mean smaller
                      bursts but a lower rate hey can sustain (see bench/README.md)
  --connections N     wrk -c (default $CONNS)
  --threads N         wrk -t (default $THREADS)
  --scale-threads N   wrk -t in the scale scenario (default $SCALE_THREADS)
  --scale-connections N
                      wrk -c in the scale scenario (default $SCALE_CONNS)
  --scale-workers N   scale scenario: edgeproxy --workers, nginx worker_processes (peer and backend),
                      HAProxy nbthread (default $SCALE_WORKERS; CHP always runs one node process)
  --routes N          routes loaded in the route-scale scenario (default $ROUTES)
  --adds N            sequential POSTs timed at N routes (default $ADDS)
  --ws-tunnels N      idle WebSocket tunnels (default $WS_N; clamped to the fd limit)
  --results-dir DIR   where <timestamp>.md/.jsonl go (default bench/results)
  --keep-workdir      keep the temp dir (configs, logs) for inspection
env: EDGEPROXY_BIN (default target/release/edgeproxy), EDGELOAD_BIN (default
     target/release/edgeload), EDGEHUB_CACHE (CHP install),
     BENCH_LOAD_CORE (0), BENCH_PROXY_CORE (1), PYTHON (python3)
EOF
}

# --quick first, so that explicit flags override it wherever they stand
for arg in "$@"; do
  if [[ $arg == --quick ]]; then
    DURATION=3 WARMUP=1 ROUNDS=1 ROUTES=10000 ADDS=200 GETALL_REPS=3 WS_N=1000
  fi
done
while (($#)); do
  case $1 in
    --only) ONLY=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --quick) ;;
    --duration) DURATION=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --hey-connections) HEY_CONNS=$2; shift ;;
    --edgeload-connections) EL_MAXCONN=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --scale-threads) SCALE_THREADS=$2; shift ;;
    --scale-connections) SCALE_CONNS=$2; shift ;;
    --scale-workers) SCALE_WORKERS=$2; shift ;;
    --routes) ROUTES=$2; shift ;;
    --adds) ADDS=$2; shift ;;
    --ws-tunnels) WS_N=$2; shift ;;
    --results-dir) RESULTS_DIR=$2; shift ;;
    --keep-workdir) KEEP_WORKDIR=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '\n[bench] ERROR: %s\n\n' "$*" >&2; exit 1; }

check_peers "$ONLY" "${ALL_PEERS[@]}"
for s in ${SCENARIOS//,/ }; do
  [[ $s =~ ^(throughput|fixedrate|fixedrate-edgeload|routes|ws|scale)$ ]] || die "--scenarios: unknown scenario '$s'"
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ $SCALE_THREADS =~ ^[1-9][0-9]*$ ]] || die "--scale-threads must be a positive integer"
[[ $SCALE_CONNS =~ ^[1-9][0-9]*$ ]] || die "--scale-connections must be a positive integer"
[[ $SCALE_WORKERS =~ ^[1-9][0-9]*$ ]] || die "--scale-workers must be a positive integer"
[[ $RATES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--rates: comma-separated positive integers (req/s), got '$RATES'"
RATES=$(tr ',' '\n' <<<"$RATES" | sort -n -u | paste -sd, -)   # ascending, no duplicates
[[ $HEY_CONNS =~ ^[1-9][0-9]*$ ]] || die "--hey-connections must be a positive integer"
[[ $EL_MAXCONN =~ ^[1-9][0-9]*$ ]] || die "--edgeload-connections must be a positive integer"
PEERS=()
for p in "${ALL_PEERS[@]}"; do has "$ONLY" "$p" && PEERS+=("$p"); done
((${#PEERS[@]})) || die "--only selects no peer"

# ------------------------------------------------------------------------------------------
# prerequisites

ensure_tools() {
  local pkgs=()
  command -v taskset >/dev/null || pkgs+=(util-linux)
  command -v wrk >/dev/null || pkgs+=(wrk)
  command -v nginx >/dev/null || pkgs+=(nginx-light)   # the backend is always nginx
  if has "$SCENARIOS" fixedrate && ! command -v hey >/dev/null; then pkgs+=(hey); fi
  if has "$ONLY" haproxy && ! command -v haproxy >/dev/null; then pkgs+=(haproxy); fi
  if has "$ONLY" chp && ! command -v node >/dev/null; then pkgs+=(nodejs npm); fi
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  for t in taskset wrk nginx "$PY"; do command -v "$t" >/dev/null || die "$t still missing after install"; done
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PY must be Python >= 3.11"
  if has "$ONLY" haproxy; then command -v haproxy >/dev/null || die "haproxy missing after install"; fi
  if has "$SCENARIOS" fixedrate; then command -v hey >/dev/null || die "hey missing after install"; fi

  if has "$ONLY" chp; then ensure_chp; fi
  if has "$ONLY" floor-epoll || has "$ONLY" floor-uring; then
    pkgs=()
    command -v cc >/dev/null || pkgs+=(gcc libc6-dev)
    [[ -e /usr/include/liburing.h ]] || pkgs+=(liburing-dev)
    ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  fi

  if has "$SCENARIOS" fixedrate-edgeload && [[ ! -x $EDGELOAD_BIN ]]; then
    die "edgeload binary not found at $EDGELOAD_BIN.
  Build it first:   (cd $REPO_ROOT && cargo build --release -p loadtest)
  or point EDGELOAD_BIN at a binary"
  fi

  if has "$ONLY" edgeproxy && [[ ! -x $EDGEPROXY_BIN ]]; then
    die "edgeproxy binary not found at $EDGEPROXY_BIN.
  Build it first:   (cd $REPO_ROOT && cargo build --release -p proxy)
  or point EDGEPROXY_BIN at a binary, or leave it out: --only direct,nginx,haproxy,chp"
  fi
}

# ------------------------------------------------------------------------------------------
# process bookkeeping (start_bg, run_fg, stop_bg, kill_tree, bench_cleanup), the configs of the
# backend and the peers (peer_argv): bench/lib/common.sh, shared with bench/callgrind.sh

WORKDIR=""
bench_traps

# ------------------------------------------------------------------------------------------
# peers

BACKEND_PID="" BACKEND_PIDS="" BACKEND_PORT=""
where() { if [[ -n $1 ]]; then echo "core $1"; else echo "not pinned"; fi; }

start_backend() {  # start_backend NAME CORE ("" = not pinned) WORKERS
  local name=$1 core=$2 workers=$3
  BACKEND_PORT=$(freeports 1)
  local d=$WORKDIR/$name
  write_backend_conf "$d" "$BACKEND_PORT" "$workers"
  start_bg "$name" "$core" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
  BACKEND_PID=$LAST_PID
  wait_ready "$name" "$BACKEND_PID" "$BACKEND_PORT"
  "$PY" "$LIB/benchctl.py" httpcheck "http://127.0.0.1:$BACKEND_PORT/" || die "backend does not answer 200 ok"
  BACKEND_PIDS=$("$PY" "$LIB/benchctl.py" pids "$BACKEND_PID")
  log "backend nginx, $workers worker(s), on 127.0.0.1:$BACKEND_PORT (pids $BACKEND_PIDS, $(where "$core"))"
}

stop_backend() {
  [[ -n $BACKEND_PID ]] && stop_bg "$BACKEND_PID"
  BACKEND_PID="" BACKEND_PIDS="" BACKEND_PORT=""
}

PROXY_PID="" PROXY_PIDS="" PROXY_PORT="" API_PORT=""
start_proxy() {  # start_proxy PEER TAG TARGET_URL [CORE ("" = not pinned)] [WORKERS]
  local peer=$1 tag=$2 target=$3 core=${4-$PROXY_CORE} workers=${5:-1} name="$1-$2" ports
  ports=$(freeports 2)
  PROXY_PORT=${ports% *}
  API_PORT=${ports#* }
  peer_argv "$peer" "$name" "$PROXY_PORT" "$API_PORT" "$target" "$workers"
  [[ $peer == chp || $peer == edgeproxy ]] || API_PORT=""
  CONFIGPROXY_AUTH_TOKEN=$TOKEN start_bg "$name" "$core" "${PEER_ARGV[@]}"
  PROXY_PID=$LAST_PID
  # shellcheck disable=SC2086
  wait_ready "$name" "$PROXY_PID" "$PROXY_PORT" $API_PORT
  "$PY" "$LIB/benchctl.py" httpcheck "http://127.0.0.1:$PROXY_PORT/" \
    || { log_tail "$name"; die "$peer does not proxy GET / to $target"; }
  PROXY_PIDS=$("$PY" "$LIB/benchctl.py" pids "$PROXY_PID")
  log "$peer ($tag) on 127.0.0.1:$PROXY_PORT${API_PORT:+ api :$API_PORT} -> $target (pids $PROXY_PIDS, $(where "$core"), $workers worker(s))"
}

stop_proxy() {
  [[ -n $PROXY_PID ]] && stop_bg "$PROXY_PID"
  PROXY_PID="" PROXY_PIDS=""
}

# ------------------------------------------------------------------------------------------
# scenarios

wrk_warmup() {  # URL [CORE ("" = not pinned) THREADS CONNECTIONS]
  ((WARMUP > 0)) || return 0
  local core=${2-$LOAD_CORE} pin=()
  [[ -z $core ]] || pin=(taskset -c "$core")
  run_fg "${pin[@]}" wrk -t"${3:-$THREADS}" -c"${4:-$CONNS}" -d"${WARMUP}s" "$1" >/dev/null \
    || die "wrk warm-up against $1 failed"
}

scenario_throughput() {
  log "== throughput: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (warm-up ${WARMUP}s), GET /, $ROUNDS round(s)"
  local peer url round
  for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS == 1)) || log "-- round $round/$ROUNDS"
    for peer in "${PEERS[@]}"; do
      if [[ $peer == direct ]]; then
        url="http://127.0.0.1:$BACKEND_PORT/"
        wrk_warmup "$url"
        run_fg "$PY" "$LIB/benchctl.py" wrk --url "$url" --peer direct --scenario throughput \
          --round "$round" --out "$RESULTS" --duration "$DURATION" --connections "$CONNS" \
          --threads "$THREADS" --core "$LOAD_CORE" --backend-pids "$BACKEND_PIDS" >/dev/null \
          || die "wrk run against the backend failed"
      else
        start_proxy "$peer" "tp$round" "http://127.0.0.1:$BACKEND_PORT"
        url="http://127.0.0.1:$PROXY_PORT/"
        wrk_warmup "$url"
        run_fg "$PY" "$LIB/benchctl.py" wrk --url "$url" --peer "$peer" --scenario throughput \
          --round "$round" --out "$RESULTS" --duration "$DURATION" --connections "$CONNS" \
          --threads "$THREADS" --core "$LOAD_CORE" --proxy-pids "$PROXY_PIDS" \
          --backend-pids "$BACKEND_PIDS" >/dev/null || { log_tail "$peer-tp$round"; die "wrk run through $peer failed"; }
        stop_proxy
      fi
    done
  done
}

# Fixed-rate measurements, ROUNDS × RATES × PEERS, with one benchctl.py subcommand: $1 is the
# subcommand (hey or edgeload), $2 tags the proxy logs, the rest are that tool's own options.
fixed_rate_rounds() {
  local tool=$1 tag=$2
  shift 2
  local rates=${RATES//,/ } lowest=${RATES%%,*} rate peer round
  if has "$ONLY" chp; then log "   chp at $lowest req/s only (it saturates at about 3-4k req/s)"; fi
  for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS == 1)) || log "-- round $round/$ROUNDS"
    for rate in $rates; do
      for peer in "${PEERS[@]}"; do
        [[ $peer == chp && $rate != "$lowest" ]] && continue
        local common=(--rate "$rate" --round "$round" --out "$RESULTS" --duration "$DURATION"
          --warmup "$WARMUP" --core "$LOAD_CORE" --backend-pids "$BACKEND_PIDS" "$@")
        if [[ $peer == direct ]]; then
          run_fg "$PY" "$LIB/benchctl.py" "$tool" --url "http://127.0.0.1:$BACKEND_PORT/" --peer direct \
            "${common[@]}" || die "$tool run against the backend failed"
        else
          start_proxy "$peer" "$tag$round-$rate" "http://127.0.0.1:$BACKEND_PORT"
          run_fg "$PY" "$LIB/benchctl.py" "$tool" --url "http://127.0.0.1:$PROXY_PORT/" --peer "$peer" \
            "${common[@]}" --proxy-pids "$PROXY_PIDS" \
            || { log_tail "$peer-$tag$round-$rate"; die "$tool run through $peer failed"; }
          stop_proxy
        fi
      done
    done
  done
}

scenario_fixedrate() {
  log "== fixed rate: hey -z ${DURATION}s -c $HEY_CONNS -q <rate/$HEY_CONNS> (warm-up ${WARMUP}s at the same rate), GET /, rates $RATES req/s, $ROUNDS round(s)"
  fixed_rate_rounds hey fr --connections "$HEY_CONNS"
}

scenario_fixedrate_edgeload() {
  log "== fixed rate, open loop: edgeload http --rate <rate> -d ${DURATION}s -w ${WARMUP}s -t 1 --max-connections $EL_MAXCONN, GET /, rates $RATES req/s, $ROUNDS round(s)"
  fixed_rate_rounds edgeload fe --edgeload "$EDGELOAD_BIN" --max-connections "$EL_MAXCONN"
}

# Both cores for everyone: nothing pinned (proxy, wrk and backend alike), SCALE_WORKERS workers
# for edgeproxy/nginx/HAProxy and for the backend, CHP as ever (node: one thread). Its own backend.
scenario_scale() {
  log "== scale: nothing pinned, wrk -t$SCALE_THREADS -c$SCALE_CONNS -d${DURATION}s --latency (warm-up" \
    "${WARMUP}s), edgeproxy --workers $SCALE_WORKERS, nginx worker_processes $SCALE_WORKERS, HAProxy" \
    "nbthread $SCALE_WORKERS, backend nginx worker_processes $SCALE_WORKERS; $ROUNDS round(s)"
  start_backend backend-scale "" "$SCALE_WORKERS"
  local peer url round workers
  for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS == 1)) || log "-- round $round/$ROUNDS"
    for peer in "${PEERS[@]}"; do
      local measure=("$PY" "$LIB/benchctl.py" wrk --peer "$peer" --scenario scale --round "$round"
        --out "$RESULTS" --duration "$DURATION" --connections "$SCALE_CONNS" --threads "$SCALE_THREADS"
        --core "" --backend-pids "$BACKEND_PIDS")
      if [[ $peer == direct ]]; then
        url="http://127.0.0.1:$BACKEND_PORT/"
        wrk_warmup "$url" "" "$SCALE_THREADS" "$SCALE_CONNS"
        run_fg "${measure[@]}" --url "$url" >/dev/null || die "wrk run against the backend failed"
      else
        workers=$SCALE_WORKERS
        [[ $peer == chp || $peer == floor-* ]] && workers=1   # node, and the floor relay, run one thread
        start_proxy "$peer" "sc$round" "http://127.0.0.1:$BACKEND_PORT" "" "$workers"
        url="http://127.0.0.1:$PROXY_PORT/"
        wrk_warmup "$url" "" "$SCALE_THREADS" "$SCALE_CONNS"
        run_fg "${measure[@]}" --url "$url" --proxy-pids "$PROXY_PIDS" >/dev/null \
          || { log_tail "$peer-sc$round"; die "wrk run through $peer failed"; }
        stop_proxy
      fi
    done
  done
  stop_backend
}

scenario_routes() {
  local peer any=0
  for peer in "${PEERS[@]}"; do [[ $peer == chp || $peer == edgeproxy ]] && any=1; done
  ((any)) || { log "== route scale: skipped (needs chp or edgeproxy in --only)"; return 0; }
  log "== route scale: $ROUTES routes, $ADDS sequential adds, GET all x$GETALL_REPS;" \
    "req/s at 1 vs $((ROUTES + 1)) routes: $ROUNDS round(s) alternating between two instances"
  run_fg taskset -c "$LOAD_CORE" timeout 120 "$PY" "$LIB/route_bench.py" floor --port "$BACKEND_PORT" \
    --count "$ADDS" --out "$RESULTS" >/dev/null || die "harness floor measurement failed"
  for peer in "${PEERS[@]}"; do
    [[ $peer == chp || $peer == edgeproxy ]] || continue
    # two instances started the same way, both on the proxy core: "routes" gets the N routes,
    # "routes1" keeps only its default route; wrk alternates between them (only one is busy)
    start_proxy "$peer" routes "http://127.0.0.1:$BACKEND_PORT"
    local main_pid=$PROXY_PID main_pids=$PROXY_PIDS main_port=$PROXY_PORT main_api=$API_PORT
    start_proxy "$peer" routes1 "http://127.0.0.1:$BACKEND_PORT"
    run_fg taskset -c "$LOAD_CORE" timeout $((900 + 2 * ROUNDS * (WARMUP + DURATION + 5))) \
      "$PY" "$LIB/route_bench.py" scale --peer "$peer" \
      --port "$main_port" --api-port "$main_api" --token "$TOKEN" \
      --backend-url "http://127.0.0.1:$BACKEND_PORT" --proxy-pids "$main_pids" \
      --one-port "$PROXY_PORT" --one-proxy-pids "$PROXY_PIDS" --rounds "$ROUNDS" \
      --backend-pids "$BACKEND_PIDS" --routes "$ROUTES" --adds "$ADDS" \
      --getall-reps "$GETALL_REPS" --load-concurrency "$LOAD_CONC" --duration "$DURATION" \
      --warmup "$WARMUP" --connections "$CONNS" --threads "$THREADS" --core "$LOAD_CORE" \
      --out "$RESULTS" >/dev/null \
      || { log_tail "$peer-routes"; log_tail "$peer-routes1"; die "route-scale scenario failed for $peer"; }
    stop_proxy
    stop_bg "$main_pid"
  done
}

scenario_ws() {
  local peer any=0 wsport wspid n=$WS_N
  local max=$(((NOFILE - 300) / 2))
  if ((n > max)); then
    WS_CLAMPED="requested $WS_N tunnels, but RLIMIT_NOFILE is $NOFILE (hard limit, not raisable here) and a proxy needs 2 fds per tunnel: ran $max"
    log "WARNING: $WS_CLAMPED"
    n=$max
  fi
  for peer in "${PEERS[@]}"; do [[ $peer != direct ]] && any=1; done
  ((any)) || { log "== websocket: skipped (no proxy in --only)"; return 0; }
  log "== websocket: $n idle tunnels per proxy"
  for peer in "${PEERS[@]}"; do
    [[ $peer == direct ]] && continue
    wsport=$(freeports 1)
    start_bg "ws-backend-$peer" "$LOAD_CORE" "$PY" "$LIB/ws_backend.py" --port "$wsport"
    wspid=$LAST_PID
    wait_ready "ws-backend-$peer" "$wspid" "$wsport"
    start_proxy "$peer" ws "http://127.0.0.1:$wsport"
    run_fg taskset -c "$LOAD_CORE" timeout 600 "$PY" "$LIB/ws_client.py" --port "$PROXY_PORT" --n "$n" \
      --pids "$PROXY_PIDS" --peer "$peer" --out "$RESULTS" >/dev/null \
      || { log_tail "$peer-ws"; die "WebSocket scenario failed for $peer"; }
    stop_proxy
    stop_bg "$wspid"
  done
}

# ------------------------------------------------------------------------------------------
# main

ensure_tools

# fds: raise the soft limit to the hard one; everything started below inherits it
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
((NOFILE > 65536)) && NOFILE=65536
ulimit -n "$NOFILE"
WS_CLAMPED=""

NCPU=$(nproc)
if ((NCPU < 2)); then
  log "WARNING: only $NCPU CPU; load and proxy share core 0"
  LOAD_CORE=0 PROXY_CORE=0
fi

WORKDIR=$(mktemp -d /tmp/edgehub-bench.XXXXXX)
chmod 755 "$WORKDIR"   # nginx workers run as nobody
mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$WORKDIR/results.jsonl   # copied to $RESULTS_DIR only when the run succeeds
REPORT=$RESULTS_DIR/$STAMP.md
: >"$RESULTS"
if has "$ONLY" floor-epoll || has "$ONLY" floor-uring; then
  RELAY_FLOOR_BIN=$WORKDIR/relay_floor
  cc -O2 -o "$RELAY_FLOOR_BIN" "$LIB/relay_floor.c" -luring || die "cannot build $LIB/relay_floor.c"
fi
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_CLK_TCK
BENCH_CLK_TCK=$(getconf CLK_TCK)

META=$WORKDIR/meta.tsv
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
ver() { "$@" 2>&1 | head -n 1 || true; }
meta date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
meta command "$CMDLINE"
meta host_nproc "$NCPU"
meta host_cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
meta host_kernel "$(uname -srm)"
meta host_mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
meta host_os "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta clk_tck "$BENCH_CLK_TCK"
meta nofile "$NOFILE"
meta v_nginx "$(ver nginx -v)"
meta v_wrk "$(ver wrk -v)"
if has "$SCENARIOS" fixedrate; then
  meta v_hey "hey $(dpkg-query -W -f='${Version}' hey 2>/dev/null || echo '(version unknown)')"
fi
meta v_python "$("$PY" --version 2>&1)"
if has "$ONLY" haproxy; then meta v_haproxy "$(ver haproxy -v)"; fi
if has "$ONLY" chp; then meta v_node "$(node --version)"; meta v_chp "$("$CHP_BIN" --version)"; fi
if has "$SCENARIOS" fixedrate-edgeload; then
  meta v_edgeload "$(timeout 5 "$EDGELOAD_BIN" --version 2>&1 | head -n 1 || true) ($EDGELOAD_BIN)"
  meta edgeload_args "http --rate <rate> -d ${DURATION}s -w ${WARMUP}s -t 1 --max-connections $EL_MAXCONN --timeout 5s"
fi
if has "$ONLY" edgeproxy; then
  meta v_edgeproxy "$(timeout 5 "$EDGEPROXY_BIN" --version 2>&1 | head -n 1 || true) ($EDGEPROXY_BIN)"
fi
meta git "$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"
meta peers "${PEERS[*]}"
meta scenarios "$SCENARIOS"
meta wrk_args "-t$THREADS -c$CONNS -d${DURATION}s --latency (warm-up ${WARMUP}s)"
meta rounds "$ROUNDS"
meta rates "$RATES"
meta hey_conns "$HEY_CONNS"
meta hey_args "-z ${DURATION}s -c $HEY_CONNS -q <rate/$HEY_CONNS> -t 5 -cpus 1 -disable-compression (warm-up ${WARMUP}s at the same rate)"
meta load_core "$LOAD_CORE"
meta proxy_core "$PROXY_CORE"
meta cores "load (wrk, hey, backend nginx, Python clients) on core $LOAD_CORE; proxy under test on core $PROXY_CORE$(has "$SCENARIOS" scale && echo "; scale scenario: nothing pinned")"
meta scale_args "-t$SCALE_THREADS -c$SCALE_CONNS -d${DURATION}s --latency (warm-up ${WARMUP}s)"
meta scale_workers "$SCALE_WORKERS"
meta routes "$ROUTES"
meta adds "$ADDS"
meta getall_reps "$GETALL_REPS"

log "edgehub proxy bench: peers ${PEERS[*]}; scenarios $SCENARIOS; work dir $WORKDIR"
T0=$SECONDS
if [[ ,$SCENARIOS, =~ ,(throughput|fixedrate|fixedrate-edgeload|routes), ]]; then
  start_backend backend "$LOAD_CORE" 1
fi
has "$SCENARIOS" throughput && scenario_throughput
has "$SCENARIOS" fixedrate && scenario_fixedrate
has "$SCENARIOS" fixedrate-edgeload && scenario_fixedrate_edgeload
has "$SCENARIOS" routes && scenario_routes
stop_backend
has "$SCENARIOS" ws && scenario_ws
has "$SCENARIOS" scale && scenario_scale

meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta elapsed "$((SECONDS - T0)) s"
[[ -n $WS_CLAMPED ]] && meta ws_clamped "$WS_CLAMPED"

cp "$RESULTS" "$RESULTS_DIR/$STAMP.jsonl"
"$PY" "$LIB/render_report.py" --meta "$META" --results "$RESULTS" --out "$REPORT"
log "report: $REPORT (raw data: $RESULTS_DIR/$STAMP.jsonl); took $((SECONDS - T0)) s"
