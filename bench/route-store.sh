#!/usr/bin/env bash
# The Redis route store, measured (docs/route-store.md, docs/benchmarks.md): propagation of a
# route add from replica A to B and C at 10,000 and 100,000 routes, cold start of a replica with
# 100,000 routes in the store, and proxy CPU per request with the store vs the memory table.
# Loopback only; a real redis-server; nginx as the backend every route points at.
#
#   cargo build --release -p proxy
#   bench/route-store.sh                 # about 7 minutes on 2 cores
#   bench/route-store.sh --quick         # about 1 minute: fewer samples, shorter rounds
#
# Report (Markdown) on stdout and in bench/results/route-store-<timestamp>.md.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
source "$BENCH_DIR/lib/common.sh"
EDGEPROXY_BIN=${EDGEPROXY_BIN:-$REPO_ROOT/target/release/edgeproxy}
RESULTS_DIR=$BENCH_DIR/results
CMDLINE="bench/route-store.sh $*"
ARGS=()
if [[ ${1:-} == --quick ]]; then
  ARGS=(--samples 100 --coldstart-runs 3 --rounds 2 --duration 5)
  shift
fi
ARGS+=("$@")

log() { printf '[route-store %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[route-store] ERROR: %s\n' "$*" >&2; exit 1; }

[[ -x $EDGEPROXY_BIN ]] || die "no $EDGEPROXY_BIN: cargo build --release -p proxy"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed (run as root)"
fi

WORK=$(mktemp -d /tmp/route-store-bench.XXXXXX)
cleanup() { [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
BACKEND_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 "ok"; } }
}
CONF
taskset -c 0 nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" || die "the nginx backend did not start"
wait_http "http://127.0.0.1:$BACKEND_PORT/" 10 || die "the nginx backend does not answer"

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
log "host: $CPU_MODEL, $(nproc) cores; edgeproxy $EDGEPROXY_BIN"
report=$(python3 "$BENCH_DIR/lib/route_store_bench.py" --edgeproxy "$EDGEPROXY_BIN" \
  --backend "http://127.0.0.1:$BACKEND_PORT" --json "$WORK/raw.json" "${ARGS[@]}")
mkdir -p "$RESULTS_DIR"
out=$RESULTS_DIR/route-store-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# Route store benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Host: $CPU_MODEL, $(nproc) cores, $(redis-server --version | awk '{print $3}'). Command: $CMDLINE"
  echo
  echo "$report"
  echo
  echo '```json'
  cat "$WORK/raw.json"
  echo '```'
} | tee "$out"
