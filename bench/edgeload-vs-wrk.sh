#!/usr/bin/env bash
# edgeload vs wrk: closed-model requests/s against the same backend, with the same connections
# and threads, interleaved round by round (wrk, edgeload, wrk, edgeload, …), on loopback.
# The backend (nginx `return 200 "ok"`, one worker) runs alone on one core, the load generator
# on the other, so a generator that is the bottleneck shows as a ratio below 1.
#
#   bench/edgeload-vs-wrk.sh                       # 3 rounds of 10 s, -c 50 -t 1
#   bench/edgeload-vs-wrk.sh --duration 5 --rounds 5 --connections 100
#   EDGELOAD_BIN=/path/to/edgeload bench/edgeload-vs-wrk.sh --backend edgeload
#
# Needs wrk, nginx (unless --backend edgeload), taskset and python3; run
# `cargo build --release -p loadtest` first. Prints a Markdown table and the median ratio.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGELOAD_BIN=${EDGELOAD_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/edgeload}
DURATION=10 ROUNDS=3 CONNS=50 THREADS=1 BACKEND=nginx
LOAD_CORE=${BENCH_LOAD_CORE:-0}
BACKEND_CORE=${BENCH_BACKEND_CORE:-1}

usage() {
  cat <<EOF
usage: $0 [--duration S] [--rounds N] [--connections N] [--threads N] [--backend nginx|edgeload]
  --duration S      seconds per measurement (default $DURATION)
  --rounds N        rounds; each runs wrk then edgeload (default $ROUNDS)
  --connections N   wrk -c / edgeload -c (default $CONNS)
  --threads N       wrk -t / edgeload -t (default $THREADS)
  --backend NAME    nginx (default) or edgeload (edgeload serve)
env: EDGELOAD_BIN (default \$CARGO_TARGET_DIR or target/, then release/edgeload),
     BENCH_LOAD_CORE (default 0), BENCH_BACKEND_CORE (default 1)
EOF
}

while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --backend) BACKEND=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

die() { printf '[edgeload-vs-wrk] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[edgeload-vs-wrk %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
for v in DURATION ROUNDS CONNS THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ $BACKEND =~ ^(nginx|edgeload)$ ]] || die "--backend must be nginx or edgeload, got '$BACKEND'"
for t in wrk taskset python3 timeout; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ $BACKEND == edgeload ]] || command -v nginx >/dev/null || die "nginx is not installed (or use --backend edgeload)"
[[ -x $EDGELOAD_BIN ]] || die "no edgeload binary at $EDGELOAD_BIN: run cargo build --release -p loadtest"

WORKDIR=$(mktemp -d)
BACKEND_PID=
cleanup() {
  if [[ -n $BACKEND_PID ]]; then
    kill "$BACKEND_PID" 2>/dev/null || true
    wait "$BACKEND_PID" 2>/dev/null || true
  fi
  rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/"
if [[ $BACKEND == nginx ]]; then
  mkdir -p "$WORKDIR/tmp"
  cat >"$WORKDIR/nginx.conf" <<CONF
worker_processes 1;
pid $WORKDIR/nginx.pid;
error_log $WORKDIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORKDIR/tmp;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location / { default_type text/plain; return 200 "ok"; }
    }
}
CONF
  taskset -c "$BACKEND_CORE" nginx -e "$WORKDIR/error.log" -p "$WORKDIR" -c "$WORKDIR/nginx.conf" -g 'daemon off;' \
    >"$WORKDIR/backend.log" 2>&1 &
else
  taskset -c "$BACKEND_CORE" "$EDGELOAD_BIN" serve --port "$PORT" >"$WORKDIR/backend.log" 2>&1 &
fi
BACKEND_PID=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  kill -0 "$BACKEND_PID" 2>/dev/null || { cat "$WORKDIR/backend.log" >&2; die "backend did not start"; }
  sleep 0.1
done
log "backend $BACKEND on $URL (core $BACKEND_CORE); load on core $LOAD_CORE; -c $CONNS -t $THREADS; ${DURATION}s x $ROUNDS rounds"

LIMIT=$((DURATION + 30))
# measure OUT CMD... : runs CMD with stdout to OUT; prints the CPU seconds (user + system) it and
# its children used. CPU per request is the figure that survives a noisy machine.
measure() {
  python3 -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    rc = subprocess.run(sys.argv[2:], stdout=out).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)
sys.exit(rc)' "$@"
}
run_wrk() {  # -> requests/s, requests, CPU s
  local cpu
  cpu=$(measure "$WORKDIR/wrk.out" timeout "$LIMIT" taskset -c "$LOAD_CORE" wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" "$URL")
  awk -v cpu="$cpu" '/requests in/ { n = $1 } /^Requests\/sec:/ { rps = $2 } END { print rps, n, cpu }' "$WORKDIR/wrk.out"
}
run_edgeload() {  # -> requests/s, requests, CPU s
  local json=$WORKDIR/edgeload.json cpu
  rm -f "$json"
  cpu=$(measure /dev/null timeout "$LIMIT" taskset -c "$LOAD_CORE" "$EDGELOAD_BIN" http "$URL" -c "$CONNS" -t "$THREADS" \
    -d "${DURATION}s" -w 0s --quiet --json "$json")
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["throughput_rps"], r["counters"]["sent"], sys.argv[2])' "$json" "$cpu"
}

printf '| round | wrk req/s | edgeload req/s | req/s ratio | wrk CPU µs/req | edgeload CPU µs/req | CPU efficiency ratio |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
RATIOS=() EFF=()
for round in $(seq "$ROUNDS"); do
  read -r w_rps w_n w_cpu < <(run_wrk); [[ -n ${w_cpu:-} && -n ${w_n:-} ]] || die "wrk printed no result"
  read -r e_rps e_n e_cpu < <(run_edgeload); [[ -n ${e_cpu:-} ]] || die "edgeload wrote no result"
  # One Markdown row on stdout; the two ratios on the last line, read back here.
  row=$(python3 -c '
import sys
rnd, w_rps, w_n, w_cpu, e_rps, e_n, e_cpu = sys.argv[1], *map(float, sys.argv[2:])
w_us, e_us = w_cpu / w_n * 1e6, e_cpu / e_n * 1e6
r, eff = e_rps / w_rps, w_us / e_us
print(f"| {rnd} | {w_rps:.0f} | {e_rps:.0f} | {r:.3f} | {w_us:.2f} | {e_us:.2f} | {eff:.3f} |")
print(f"{r:.3f} {eff:.3f}")' "$round" "$w_rps" "$w_n" "$w_cpu" "$e_rps" "$e_n" "$e_cpu")
  head -n1 <<<"$row"
  read -r r eff < <(tail -n1 <<<"$row")
  RATIOS+=("$r") EFF+=("$eff")
done
python3 - "${RATIOS[*]}" "${EFF[*]}" <<'PY'
import statistics, sys
r = [float(x) for x in sys.argv[1].split()]
e = [float(x) for x in sys.argv[2].split()]
print(f"\nmedian edgeload/wrk requests/s: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})")
print(f"median CPU efficiency (wrk CPU per request / edgeload CPU per request): {statistics.median(e):.3f}"
      f" (min {min(e):.3f}, max {max(e):.3f}); above 1 means edgeload spends less CPU per request")
PY
