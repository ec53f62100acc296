#!/usr/bin/env bash
# Instruction counts per proxied request, which noise does not move: edgeproxy vs nginx vs HAProxy,
# each configured exactly as bench/proxy-bench.sh configures it (one worker / one thread), in front
# of the same backend (nginx `return 200 "ok"`, keep-alive). See bench/README.md.
#
#   bench/callgrind.sh                              # 20,000 requests per peer and measurement
#   bench/callgrind.sh --requests 5000 --only edgeproxy,nginx
#   EDGEPROXY_BIN=/path/to/edgeproxy bench/callgrind.sh
#   bench/callgrind.sh --only edgeproxy --edge-auth   # the request path of `edgehub up`
#
# For each peer: (1) the proxy under valgrind --tool=callgrind, warmed up, its counters zeroed,
# exactly N requests, a dump: user-space instructions per request = Ir of that interval / N;
# (2) the same proxy without valgrind, pinned to core 1 (load on core 0): Δutime and Δstime over
# N requests, then the system calls of another N (perf stat, or strace).
# Report (Markdown) on stdout and in bench/results/callgrind-<timestamp>.md; edgeproxy's top
# functions in bench/results/callgrind-<timestamp>-edgeproxy.txt; progress on stderr.
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

ALL_PEERS=(nginx haproxy edgeproxy)   # canonical order in the report
ONLY=nginx,haproxy,edgeproxy
REQUESTS=20000 CONNS=50 WARMUP_REQ=2000 SYSCALLS=auto TOP=40
LOAD_CORE=${BENCH_LOAD_CORE:-0}
PROXY_CORE=${BENCH_PROXY_CORE:-1}
RESULTS_DIR=$BENCH_DIR/results
KEEP_WORKDIR=0
EDGE_AUTH=0
CMDLINE="$0 $*"

usage() {
  cat <<EOF
usage: $0 [options]
  --only LIST          peers, comma-separated subset of: edgeproxy,nginx,haproxy (default: all)
  --requests N         requests per measurement (default $REQUESTS): the callgrind interval, the CPU
                       pass and the system-call pass each send exactly N
  --connections C      keep-alive connections of the client (default $CONNS)
  --warmup-requests W  requests before each measurement, not counted (default $WARMUP_REQ)
  --syscalls TOOL      perf, strace or auto (default $SYSCALLS: perf if it can count a process here)
  --results-dir DIR    where callgrind-<timestamp>.{md,jsonl} go (default bench/results)
  --keep-workdir       keep the temp dir (configs, logs, every callgrind dump)
  --edge-auth          edgeproxy with edge auth, as \`edgehub up\` runs it: an HS384 JWT issuer,
                       requests for /user/bench/ (a route bench owns) with a browser's cookies,
                       the JWT among them; edgeproxy only (nginx and HAProxy check no JWTs)
env: EDGEPROXY_BIN (default target/release/edgeproxy), BENCH_LOAD_CORE (0), BENCH_PROXY_CORE (1),
     PYTHON (python3)
EOF
}

while (($#)); do
  case $1 in
    --only) ONLY=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --warmup-requests) WARMUP_REQ=$2; shift ;;
    --syscalls) SYSCALLS=$2; shift ;;
    --results-dir) RESULTS_DIR=$2; shift ;;
    --keep-workdir) KEEP_WORKDIR=1 ;;
    --edge-auth) EDGE_AUTH=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[callgrind %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '\n[callgrind] ERROR: %s\n\n' "$*" >&2; exit 1; }

check_peers "$ONLY" "${ALL_PEERS[@]}"
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ $WARMUP_REQ =~ ^[0-9]+$ ]] || die "--warmup-requests must be a non-negative integer"
[[ $SYSCALLS =~ ^(perf|strace|auto)$ ]] || die "--syscalls must be perf, strace or auto"
((CONNS <= REQUESTS)) || die "--connections ($CONNS) must not exceed --requests ($REQUESTS)"
PEERS=()
for p in "${ALL_PEERS[@]}"; do has "$ONLY" "$p" && PEERS+=("$p"); done
((${#PEERS[@]})) || die "--only selects no peer"
if ((EDGE_AUTH)) && [[ $ONLY != edgeproxy ]]; then
  die "--edge-auth measures edgeproxy alone: add --only edgeproxy (nginx and HAProxy check no JWTs)"
fi

# ------------------------------------------------------------------------------------------
# prerequisites

ensure_tools() {
  local pkgs=()
  command -v taskset >/dev/null || pkgs+=(util-linux)
  command -v nginx >/dev/null || pkgs+=(nginx-light)   # the backend is always nginx
  command -v valgrind >/dev/null || pkgs+=(valgrind)
  if [[ $SYSCALLS != perf ]] && ! command -v strace >/dev/null; then pkgs+=(strace); fi
  if has "$ONLY" haproxy && ! command -v haproxy >/dev/null; then pkgs+=(haproxy); fi
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  local t
  for t in taskset nginx "$PY"; do command -v "$t" >/dev/null || die "$t still missing after install"; done
  for t in valgrind callgrind_control callgrind_annotate vgdb; do
    command -v "$t" >/dev/null || die "$t missing: it comes with valgrind (apt-get install valgrind)"
  done
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PY must be Python >= 3.11"
  if has "$ONLY" haproxy; then command -v haproxy >/dev/null || die "haproxy missing after install"; fi
  if [[ $SYSCALLS == perf ]]; then command -v perf >/dev/null || die "--syscalls perf: perf is not installed (apt-get install linux-perf)"; fi
  if [[ $SYSCALLS == strace ]]; then command -v strace >/dev/null || die "strace missing after install"; fi
  if has "$ONLY" edgeproxy && [[ ! -x $EDGEPROXY_BIN ]]; then
    die "edgeproxy binary not found at $EDGEPROXY_BIN.
  Build it first:   (cd $REPO_ROOT && cargo build --release -p proxy)
  or point EDGEPROXY_BIN at a binary, or leave it out: --only nginx,haproxy"
  fi
  # valgrind must be able to run a program here at all (a missing debuginfo/ld.so issue shows now)
  valgrind --tool=callgrind --callgrind-out-file=/dev/null true >/dev/null 2>&1 \
    || die "valgrind --tool=callgrind cannot run 'true' on this machine: $(valgrind --tool=callgrind --callgrind-out-file=/dev/null true 2>&1 | tail -n 3)"
}

# ------------------------------------------------------------------------------------------
# runs

BACKEND_PID="" BACKEND_PIDS="" BACKEND_PORT=""
start_backend() {
  BACKEND_PORT=$(freeports 1)
  local d=$WORKDIR/backend
  write_backend_conf "$d" "$BACKEND_PORT"
  start_bg backend "$LOAD_CORE" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
  BACKEND_PID=$LAST_PID
  wait_ready backend "$BACKEND_PID" "$BACKEND_PORT"
  "$PY" "$LIB/benchctl.py" httpcheck "http://127.0.0.1:$BACKEND_PORT/" || die "backend does not answer 200 ok"
  BACKEND_PIDS=$("$PY" "$LIB/benchctl.py" pids "$BACKEND_PID")
  log "backend nginx on 127.0.0.1:$BACKEND_PORT (pids $BACKEND_PIDS, core $LOAD_CORE)"
}

PROXY_PID="" PROXY_PORT=""
# start_peer PEER TAG [WRAPPER...]: the peer pinned to the proxy core, its command line from
# peer_argv (common.sh, as in proxy-bench.sh), behind WRAPPER (valgrind) if given
start_peer() {
  local peer=$1 tag=$2 name="$1-$2" ports api
  shift 2
  ports=$(freeports 2)
  PROXY_PORT=${ports% *}
  api=${ports#* }
  peer_argv "$peer" "$name" "$PROXY_PORT" "$api" "http://127.0.0.1:$BACKEND_PORT" 1
  ((EDGE_AUTH)) && PEER_ARGV+=(--auth-config "$WORKDIR/auth.toml")
  CONFIGPROXY_AUTH_TOKEN=$TOKEN start_bg "$name" "$PROXY_CORE" "$@" "${PEER_ARGV[@]}"
  PROXY_PID=$LAST_PID
  [[ $peer == edgeproxy ]] || api=""
  # shellcheck disable=SC2086
  BENCH_READY_TIMEOUT=${READY_TIMEOUT:-30} wait_ready "$name" "$PROXY_PID" "$PROXY_PORT" $api
  "$PY" "$LIB/benchctl.py" httpcheck "http://127.0.0.1:$PROXY_PORT/" --timeout "${READY_TIMEOUT:-30}" \
    || { log_tail "$name"; die "$peer does not proxy GET / to the backend"; }
  if ((EDGE_AUTH)); then
    curl -fsS -o /dev/null -X POST -H "Authorization: token $TOKEN" \
      -d "{\"target\": \"http://127.0.0.1:$BACKEND_PORT\", \"user\": \"bench\"}" \
      "http://127.0.0.1:$api/api/routes/user/bench" || die "cannot add the route /user/bench"
  fi
  log "$peer ($tag) on 127.0.0.1:$PROXY_PORT (pid $PROXY_PID, core $PROXY_CORE)"
}

stop_peer() {
  [[ -n $PROXY_PID ]] && stop_bg "$PROXY_PID"
  PROXY_PID=""
}

nrequests() {  # nrequests NAME ARGS...: the exact-count client on the load core, JSON to NAME.json
  local name=$1
  shift
  run_fg taskset -c "$LOAD_CORE" "$PY" "$LIB/nrequests.py" --url "http://127.0.0.1:$PROXY_PORT$REQUEST_PATH" \
    --requests "$REQUESTS" --connections "$CONNS" --warmup "$WARMUP_REQ" --workdir "$WORKDIR" \
    --json "$WORKDIR/$name.json" "${REQUEST_HEADERS[@]}" "$@" >/dev/null
}

# a shell hook for nrequests: callgrind_control -z|-d PID, failing unless it answers OK within
# 60 s (vgdb reaches a proxy that waits in epoll_wait through ptrace)
cg_hook() {
  echo "out=\$(timeout 60 callgrind_control $1 $2 2>&1); echo \"\$out\"; case \$out in *OK.*) ;; *) exit 1 ;; esac"
}

measure_peer() {
  local peer=$1
  local out=$WORKDIR/callgrind.$peer.out
  # 1. instructions: under callgrind (nginx without its master, so that the one process is the
  #    worker); zero after the warm-up, dump after the N requests
  log "$peer: under callgrind, $WARMUP_REQ warm-up requests, then $REQUESTS counted"
  NGINX_GLOBALS=" master_process off;" READY_TIMEOUT=180 start_peer "$peer" cg \
    valgrind --tool=callgrind --callgrind-out-file="$out" --trace-children=no
  nrequests "$peer-cg" --timeout 300 --before "$(cg_hook -z "$PROXY_PID")" \
    --after "$(cg_hook -d "$PROXY_PID")" \
    || { log_tail "$peer-cg"; die "the callgrind run of $peer failed"; }
  [[ -s $out.1 ]] || { log_tail "$peer-cg"; die "callgrind wrote no dump $out.1 for $peer"; }
  stop_peer

  # 2. CPU time and system calls, without valgrind: the proxy alone on its core
  log "$peer: without valgrind, Δutime/Δstime over $REQUESTS requests, then system calls over $REQUESTS"
  start_peer "$peer" cpu
  nrequests "$peer-cpu" --cpu-pid "$PROXY_PID" --syscalls "$SYSCALLS" \
    || { log_tail "$peer-cpu"; die "the CPU / system-call run of $peer failed"; }
  stop_peer
  # one JSON line per peer in $RESULTS, a summary line on stderr
  "$PY" "$LIB/callgrind_report.py" result --peer "$peer" --dump "$out.1" --requests "$REQUESTS" \
    --callgrind-json "$WORKDIR/$peer-cg.json" --cpu-json "$WORKDIR/$peer-cpu.json" --out "$RESULTS" \
    || die "cannot read the results of $peer"
}

# ------------------------------------------------------------------------------------------
# main

ensure_tools

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
((NOFILE > 65536)) && NOFILE=65536
ulimit -n "$NOFILE"

if (($(nproc) < 2)); then
  log "WARNING: only $(nproc) CPU; load and proxy share core 0"
  LOAD_CORE=0 PROXY_CORE=0
fi

WORKDIR=$(mktemp -d /tmp/edgehub-callgrind.XXXXXX)
chmod 755 "$WORKDIR"   # nginx workers run as nobody
bench_traps
mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$WORKDIR/results.jsonl   # copied to $RESULTS_DIR only when the run succeeds
: >"$RESULTS"
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
REQUEST_PATH=/ REQUEST_HEADERS=()
if ((EDGE_AUTH)); then
  # An issuer's key, its auth config, and a JWT for bench, sent as a browser sends its session
  # cookie: beside the cookies a notebook page also carries.
  JWT=$("$PY" - "$WORKDIR/auth.toml" <<'EOPY'
import base64, hashlib, hmac, json, secrets, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = secrets.token_hex(32)
with open(sys.argv[1], "w") as f:
    f.write('login_url = "/hub/login"\n[[issuers]]\nissuer = "https://login.bench"\n'
            f'audiences = ["notebooks"]\nalgorithms = ["HS384"]\nsecret = "{key}"\n')
head = b64(json.dumps({"alg": "HS384", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench", "iss": "https://login.bench", "aud": "notebooks",
                       "exp": int(time.time()) + 86400, "groups": []}).encode())
sig = b64(hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha384).digest())
print(f"{head}.{body}.{sig}")
EOPY
  ) || die "cannot make the edge-auth config"
  REQUEST_PATH=/user/bench/
  REQUEST_HEADERS=(--header "Cookie: _xsrf=2|8e1f0a3c|a9c3b0d2e1f45b6c|1733480000; jupyterhub-session-id=0f4c2a9e8b7d4e1f; edgehub-token=$JWT; theme=dark")
fi
export BENCH_CLK_TCK
BENCH_CLK_TCK=$(getconf CLK_TCK)

META=$WORKDIR/meta.tsv
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
ver() { "$@" 2>&1 | head -n 1 || true; }
meta date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
meta command "$CMDLINE"
meta host_cpu "$(cpu_line)"
meta host_kernel "$(uname -srm)"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta clk_tck "$BENCH_CLK_TCK"
meta requests "$REQUESTS"
meta connections "$CONNS"
meta warmup "$WARMUP_REQ"
meta request_path "$REQUEST_PATH"
((EDGE_AUTH)) && meta edge_auth "an HS384 JWT in a Cookie field of four cookies, checked against a route its subject owns"
meta cores "client (bench/lib/nrequests.py) and backend nginx on core $LOAD_CORE; proxy under test on core $PROXY_CORE"
meta v_valgrind "$(valgrind --version)"
meta v_nginx "$(ver nginx -v)"
if has "$ONLY" haproxy; then meta v_haproxy "$(ver haproxy -v)"; fi
if has "$ONLY" edgeproxy; then
  meta v_edgeproxy "$(timeout 5 "$EDGEPROXY_BIN" --version 2>&1 | head -n 1 || true) ($EDGEPROXY_BIN)"
fi
meta git "$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"

log "edgehub callgrind bench: peers ${PEERS[*]}; $REQUESTS requests over $CONNS connections; work dir $WORKDIR"
T0=$SECONDS
S0=$(cpu_ticks_all)
start_backend
for peer in "${PEERS[@]}"; do measure_peer "$peer"; done
stop_bg "$BACKEND_PID"
meta steal_all "$(steal_pct "$S0" "$(cpu_ticks_all)")"
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta elapsed "$((SECONDS - T0)) s"

REPORT=$RESULTS_DIR/callgrind-$STAMP.md
TOPFILE=""
cp "$RESULTS" "$RESULTS_DIR/callgrind-$STAMP.jsonl"
if has "$ONLY" edgeproxy; then
  TOPFILE=$RESULTS_DIR/callgrind-$STAMP-edgeproxy.txt
  cp "$WORKDIR/callgrind.edgeproxy.out.1" "$RESULTS_DIR/callgrind-$STAMP-edgeproxy.callgrind"
  "$PY" "$LIB/callgrind_report.py" annotate --dump "$RESULTS_DIR/callgrind-$STAMP-edgeproxy.callgrind" \
    --requests "$REQUESTS" --top "$TOP" --out "$TOPFILE" || die "callgrind_annotate failed"
  meta top_file "$TOPFILE"
fi
"$PY" "$LIB/callgrind_report.py" render --meta "$META" --results "$RESULTS" --out "$REPORT"
log "report: $REPORT (raw data: $RESULTS_DIR/callgrind-$STAMP.jsonl${TOPFILE:+; top functions of edgeproxy: $TOPFILE}); took $((SECONDS - T0)) s"
