#!/usr/bin/env bash
# edgeload's own memory with many idle WebSockets: `edgeload serve` (the echo server) in one
# process, `edgeload ws idle` holding N tunnels to it from another (each process has its own
# open-file limit), and the client's RSS per tunnel read from the JSON report. The server's
# figures come out too (it is the --pid target).
#
#   bench/edgeload-ws-idle.sh                      # 10,000 tunnels held 10 s, 3 runs
#   bench/edgeload-ws-idle.sh --tunnels 5000 --duration 8 --runs 1
#
# Needs python3; run `cargo build --release -p loadtest` first. Bounded: each run lasts
# --duration seconds plus the closing, and is killed after --duration + 60 s.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGELOAD_BIN=${EDGELOAD_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/edgeload}
TUNNELS=10000 DURATION=10 RUNS=3

usage() {
  cat <<USAGE
usage: $0 [--tunnels N] [--duration S] [--runs N]
  --tunnels N    idle WebSockets held open (default $TUNNELS)
  --duration S   seconds they are held, opening included (default $DURATION)
  --runs N       runs, each with a fresh server (default $RUNS)
env: EDGELOAD_BIN (default \$CARGO_TARGET_DIR or target/, then release/edgeload)
USAGE
}

while (($#)); do
  case $1 in
    --tunnels) TUNNELS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

die() { printf '[edgeload-ws-idle] ERROR: %s\n' "$*" >&2; exit 1; }
for v in TUNNELS DURATION RUNS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
for t in python3 timeout; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ -x $EDGELOAD_BIN ]] || die "no edgeload binary at $EDGELOAD_BIN: run cargo build --release -p loadtest"
need=$((TUNNELS + 100))
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] || (( hard >= need )) || die "the hard open-file limit $hard is below $need: lower --tunnels"

WORKDIR=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

printf '| run | tunnels open | edgeload RSS (MiB) | edgeload bytes/tunnel | edgeload fds/tunnel | server bytes/tunnel | server fds/tunnel |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for run in $(seq 1 "$RUNS"); do
  "$EDGELOAD_BIN" serve --port 0 >"$WORKDIR/serve.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 50); do grep -q 'listening on' "$WORKDIR/serve.out" && break; sleep 0.1; done
  addr=$(sed -n 's/.*listening on http:\/\///p' "$WORKDIR/serve.out")
  [[ -n $addr ]] || die "edgeload serve did not start: $(cat "$WORKDIR/serve.out")"
  timeout $((DURATION + 60)) "$EDGELOAD_BIN" ws idle "ws://$addr/" -c "$TUNNELS" -d "${DURATION}s" \
    --pid "$SERVER_PID" --quiet --json "$WORKDIR/run$run.json" >"$WORKDIR/run$run.txt"
  python3 - "$WORKDIR/run$run.json" "$run" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = r["ws"]
c, t = w["client"], w["target"] or {}
print(f"| {sys.argv[2]} | {w['tunnels_open']} | {w['client_rss_bytes'] / 2**20:.1f} | {c['rss_per_tunnel_bytes']:.0f} "
      f"| {c['fds_per_tunnel']:.2f} | {t.get('rss_per_tunnel_bytes', 0):.0f} | {t.get('fds_per_tunnel', 0):.2f} |")
if r["errors"]["total"]:
    print(f"errors: {r['errors']}", file=sys.stderr)
PY
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
done
