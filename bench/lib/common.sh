# shellcheck shell=bash
# Shell helpers of the benchmark scripts (sourced; bash).

# A free loopback TCP port (bound and released: good enough on a quiet machine).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL [SECONDS]: until URL answers 2xx, at most SECONDS (default 10); 1 if it never did.
wait_http() {
    local url=$1 tries=$(( ${2:-10} * 10 ))
    for _ in $(seq "$tries"); do curl -fs "$url" >/dev/null && return 0; sleep 0.1; done
    printf 'no answer from %s within %s s\n' "$url" "${2:-10}" >&2
    return 1
}

# has LIST ITEM: whether the comma-separated LIST names ITEM.
has() { [[ ",$1," == *",$2,"* ]]; }

# check_peers LIST KNOWN...: every peer of --only's comma-separated LIST is one of KNOWN, or the
# script stops with the caller's die.
check_peers() {
    local only=$1 p; shift
    for p in ${only//,/ }; do
        [[ " $* " == *" $p "* ]] || die "--only: unknown peer '$p' (known: $*)"
    done
}

# The machine a result was measured on: CPU model and core count, on one line.
cpu_line() {
    printf '%s, %s cores\n' "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" "$(nproc)"
}

# "TOTAL STEAL": all CPU ticks and the hypervisor's stolen ones so far (/proc/stat). The steal
# over a run is the difference of two readings: steal_pct BEFORE AFTER.
cpu_ticks_all() { awk '/^cpu /{t=0; for (i=2; i<=NF; i++) t+=$i; print t, $9; exit}' /proc/stat; }
steal_pct() {
    local t0 s0 t1 s1
    read -r t0 s0 <<<"$1"; read -r t1 s1 <<<"$2"
    awk -v t="$((t1 - t0))" -v s="$((s1 - s0))" 'BEGIN{ printf "%.1f", (t > 0 ? 100 * s / t : 0) }'
}

# --------------------------------------------------------------------------------------------
# Shared by proxy-bench.sh and callgrind.sh: installs, the processes a script starts, and the
# configs of the backend and of the peers (so that both scripts run the peers identically).
# The caller defines log and die, and sets PY (python), LIB (bench/lib), WORKDIR (created by the
# caller), KEEP_WORKDIR (0/1), NOFILE (fd limit) and, for chp/edgeproxy, CHP_BIN, EDGEPROXY_BIN
# and TOKEN.

APT_UPDATED=0
apt_install() {
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

# configurable-http-proxy, pinned: the one proxy-bench.sh, seed-ab.sh and the test command
# (scripts/test.sh, for the seed-ab test) use, in the cache of edgehub's tools.
CHP_VERSION=5.3.0
CHP_DIR=${EDGEHUB_CACHE:-$HOME/.cache/edgehub}/chp
CHP_BIN=${CHP_BIN:-$CHP_DIR/node_modules/.bin/configurable-http-proxy}
ensure_chp() {  # installs CHP_VERSION into CHP_DIR with npm unless CHP_BIN runs it (idempotent)
  [[ $("$CHP_BIN" --version 2>/dev/null) == "$CHP_VERSION" ]] && return 0
  CHP_BIN=$CHP_DIR/node_modules/.bin/configurable-http-proxy
  [[ $("$CHP_BIN" --version 2>/dev/null) == "$CHP_VERSION" ]] && return 0
  { command -v node && command -v npm; } >/dev/null || apt_install nodejs npm
  log "npm install configurable-http-proxy@$CHP_VERSION into $CHP_DIR"
  mkdir -p "$CHP_DIR"
  npm install --prefix "$CHP_DIR" --no-audit --no-fund "configurable-http-proxy@$CHP_VERSION" >&2 \
    || die "npm install configurable-http-proxy@$CHP_VERSION failed"
  [[ $("$CHP_BIN" --version 2>/dev/null) == "$CHP_VERSION" ]] || die "CHP $CHP_VERSION not runnable at $CHP_BIN"
}

# Process bookkeeping: everything started through start_bg/run_fg is recorded and stopped by
# bench_cleanup, which bench_traps installs for EXIT, INT and TERM (so also on an error).
STARTED=()
LAST_PID=""

kill_tree() {  # TERM the process and its descendants, KILL what is left after 5 s
  local root=$1 pids
  [[ -e /proc/$root ]] || { wait "$root" 2>/dev/null || true; return 0; }
  pids=$("$PY" "$LIB/benchctl.py" pids "$root" 2>/dev/null || echo "$root")
  pids=${pids//,/ }
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  local i p alive=0
  for ((i = 0; i < 50; i++)); do
    alive=0
    for p in $pids; do
      if [[ -e /proc/$p ]] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  ((alive == 0)) || kill -KILL $pids 2>/dev/null || true
  wait "$root" 2>/dev/null || true
}

bench_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    [[ -n ${STARTED[i]} ]] && kill_tree "${STARTED[i]}"
  done
  if [[ -n ${WORKDIR:-} && -d $WORKDIR ]]; then
    if ((KEEP_WORKDIR)) || ((rc != 0 && rc != 130 && rc != 143)); then
      log "work dir kept: $WORKDIR"
    else
      rm -rf "$WORKDIR"
    fi
  fi
  ((rc == 0)) || log "FAILED (exit $rc); all started processes were stopped"
  exit "$rc"
}

bench_traps() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

start_bg() {  # start_bg NAME CORE CMD...   -> LAST_PID; CORE "" = not pinned; output in $WORKDIR/NAME.log
  local name=$1 core=$2
  shift 2
  if [[ -n $core ]]; then
    taskset -c "$core" "$@" >"$WORKDIR/$name.log" 2>&1 &
  else
    "$@" >"$WORKDIR/$name.log" 2>&1 &
  fi
  LAST_PID=$!
  STARTED+=("$LAST_PID")
}

run_fg() {  # run a foreground step as a tracked child, so that a signal interrupts it at once
  "$@" &
  local pid=$! rc=0 i
  STARTED+=("$pid")
  wait "$pid" || rc=$?
  for i in "${!STARTED[@]}"; do [[ ${STARTED[i]} == "$pid" ]] && STARTED[i]=""; done
  return "$rc"
}

stop_bg() {
  local pid=$1 i
  kill_tree "$pid"
  for i in "${!STARTED[@]}"; do [[ ${STARTED[i]} == "$pid" ]] && STARTED[i]=""; done
  return 0
}

freeports() { "$PY" "$LIB/benchctl.py" freeports "$1" --state "$WORKDIR/ports"; }

log_tail() {  # the last lines of $WORKDIR/NAME.log on stderr, if there is one
  if [[ -f $WORKDIR/$1.log ]]; then tail -n 30 "$WORKDIR/$1.log" | sed 's/^/    | /' >&2 || true; fi
}

wait_ready() {  # wait_ready NAME PID PORT... (BENCH_READY_TIMEOUT seconds, 30 by default)
  local name=$1 pid=$2
  shift 2
  "$PY" "$LIB/benchctl.py" waitport "$@" --pid "$pid" --timeout "${BENCH_READY_TIMEOUT:-30}" \
    || { log_tail "$name"; die "$name did not start"; }
}

# The configs. WORKERS (nginx worker_processes, HAProxy nbthread) is 1 unless given.

nginx_common() {  # nginx_common DIR -> common http-level lines
  local d=$1
  cat <<EOC
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
EOC
}

write_backend_conf() {  # DIR PORT [WORKERS]
  local d=$1 port=$2 workers=${3:-1}
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOC
worker_processes $workers;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections 8192; }
http {
$(nginx_common "$d")
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / { default_type text/plain; return 200 "ok"; }
    }
}
EOC
}

write_nginx_proxy_conf() {  # DIR PORT UPSTREAM(host:port) [WORKERS]
  local d=$1 port=$2 up=$3 workers=${4:-1}
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOC
worker_processes $workers;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile $NOFILE;
# nginx starts closing idle/reusable connections once fewer than 1/16 of worker_connections
# are free, so allow more connection slots than fds (the fd limit still applies)
events { worker_connections $((NOFILE * 2)); }
http {
$(nginx_common "$d")
    upstream backend {
        server $up;
        keepalive 64;
        keepalive_requests 1000000;
    }
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            # "" for plain requests (upstream keep-alive), "upgrade" for WebSocket
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOC
}

write_haproxy_conf() {  # FILE PORT UPSTREAM(host:port) [NBTHREAD]
  local f=$1 port=$2 up=$3 threads=${4:-1}
  cat >"$f" <<EOC
global
    nbthread $threads
    maxconn $(((NOFILE - 200) / 2))
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:$port
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    default_backend be
backend be
    server s1 $up
EOC
}

# peer_argv PEER NAME PORT API_PORT TARGET_URL [WORKERS] -> PEER_ARGV: the command line of a peer
# (nginx/haproxy: its config is written under $WORKDIR, HAProxy's is checked). API_PORT is used
# by chp and edgeproxy; they read their token from CONFIGPROXY_AUTH_TOKEN, which the caller sets.
# nginx runs in the foreground with its master ("daemon off;"); NGINX_GLOBALS adds to -g.
# shellcheck disable=SC2034  # PEER_ARGV is the result, read by the caller
PEER_ARGV=()
# shellcheck disable=SC2034
peer_argv() {
  local peer=$1 name=$2 port=$3 api=$4 target=$5 workers=${6:-1}
  local up=${target#http://}
  up=${up%%/*}
  case $peer in
    nginx)
      local d=$WORKDIR/$name
      write_nginx_proxy_conf "$d" "$port" "$up" "$workers"
      PEER_ARGV=(nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g "daemon off;${NGINX_GLOBALS:-}")
      ;;
    haproxy)
      write_haproxy_conf "$WORKDIR/$name.cfg" "$port" "$up" "$workers"
      haproxy -c -q -f "$WORKDIR/$name.cfg" >&2 || die "haproxy config check failed ($WORKDIR/$name.cfg)"
      PEER_ARGV=(haproxy -db -f "$WORKDIR/$name.cfg")
      ;;
    chp)
      PEER_ARGV=("$CHP_BIN" --ip 127.0.0.1 --port "$port" --api-ip 127.0.0.1 --api-port "$api"
        --default-target "$target" --log-level warn)
      ;;
    edgeproxy)
      PEER_ARGV=("$EDGEPROXY_BIN" --ip 127.0.0.1 --port "$port" --api-ip 127.0.0.1 --api-port "$api"
        --default-target "$target" --workers "$workers" --log-level warn)
      ;;
    floor-epoll | floor-uring)   # proxy-bench.sh builds RELAY_FLOOR_BIN from relay_floor.c
      PEER_ARGV=("$RELAY_FLOOR_BIN" "${peer#floor-}" "$port" "${up##*:}")
      ;;
    *) die "peer_argv: unknown peer $peer" ;;
  esac
}
