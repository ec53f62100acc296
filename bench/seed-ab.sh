#!/usr/bin/env bash
# The seed paper's load test (issue 20): `ab -c 100 -n 20000` through the front door of a hub,
# read as ab reads it: 100 concurrent clients, one per user, 20,000 requests in all, every request
# to the requesting user's OWN notebook server (GET /user/<name>/api/status) with that user's
# credentials. Two front doors, one after the other, on this machine:
#
#   edgehub    `edgehub up`: the edge proxy (session cookie checked at the edge) + hub + local
#              spawner, one public port;
#   monolith   a stock JupyterHub 5 (DummyAuthenticator, SimpleLocalProcessSpawner) with the real
#              configurable-http-proxy from npm as its proxy.
#
# Both run the same single-user server, jupyterhub-singleuser from the test venv, so the
# difference is the front door. Report (Markdown) on stdout and in $RESULTS_DIR/seed-ab-<ts>.md,
# edgeload's JSON reports beside it. Docs: bench/README.md, results in docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=$ROOT/bench/lib
PY=python3

USERS=100
REQUESTS=20000
DURATION=""            # --duration D: a timed run instead of a request count
ONLY=edgehub,monolith
RESULTS_DIR=$ROOT/bench/results
KEEP_WORKDIR=0
PARALLEL=10            # servers starting at once
NOFILE=65536

usage() {
  cat <<EOF
usage: bench/seed-ab.sh [options]

  --users N          concurrent users, one connection each (default $USERS)
  --requests N       requests in all, as ab -n (default $REQUESTS)
  --quick            3 users, 300 requests (the test)
  --duration D       run for D (edgeload's -d, e.g. 20s) instead of a request count
  --only LIST        edgehub, monolith or both, comma-separated (default $ONLY)
  --parallel N       servers starting at once (default $PARALLEL)
  --results-dir DIR  where the report and the JSON go (default bench/results)
  --keep-workdir     keep the work directory (configs, logs) after a good run

Environment: EDGEHUB_BIN, EDGELOAD_BIN (default: \${CARGO_TARGET_DIR:-target}/release/…, built
when missing), EDGEHUB_PYENV (the test venv; made by scripts/ensure-pyenv.sh when unset), CHP_BIN
(default: configurable-http-proxy under \${EDGEHUB_CACHE:-~/.cache/edgehub}/chp, the version
pinned in bench/lib/common.sh, installed with npm when missing).
EOF
}

while (($#)); do
  case $1 in
    --users) USERS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --quick) USERS=3; REQUESTS=300; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --results-dir) RESULTS_DIR=$2; shift 2 ;;
    --keep-workdir) KEEP_WORKDIR=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; printf 'unknown option: %s\n' "$1" >&2; exit 2 ;;
  esac
done

log() { printf '[seed-ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$LIB/common.sh"
check_peers "$ONLY" edgehub monolith
[[ $USERS =~ ^[1-9][0-9]*$ ]] || die "--users: expected a number above 0, got '$USERS'"
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "--requests: expected a number above 0, got '$REQUESTS'"
((REQUESTS >= USERS)) || die "--requests ($REQUESTS) must be at least --users ($USERS)"

# --- prerequisites ------------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
EDGEHUB_BIN=${EDGEHUB_BIN:-$TARGET/release/edgehub}
EDGELOAD_BIN=${EDGELOAD_BIN:-$TARGET/release/edgeload}
if [[ ! -x $EDGELOAD_BIN ]] || { has "$ONLY" edgehub && [[ ! -x $EDGEHUB_BIN ]]; }; then
  log "building edgehub and edgeload (cargo build --release -p hub-core -p loadtest)"
  (cd "$ROOT" && cargo build --release -q -p hub-core -p loadtest) || die "cargo build failed"
fi
[[ -x $EDGELOAD_BIN ]] || die "no edgeload at $EDGELOAD_BIN"
has "$ONLY" edgehub && { [[ -x $EDGEHUB_BIN ]] || die "no edgehub at $EDGEHUB_BIN"; }

# THE COUNT FLAG: the one place where the run's length is given to edgeload. ab's -n is
# edgeload's -n/--requests (exactly N measured requests shared by the connections, no warm-up of
# its own; from branch edgeload-count). --duration replaces it with a timed run.
if [[ -n $DURATION ]]; then
  LENGTH_ARGS=(-d "$DURATION" -w 0s)
else
  [[ $("$EDGELOAD_BIN" http --help) == *--requests* ]] \
    || die "this edgeload has no -n/--requests (exactly N requests, ab's count mode); build one that has, or run by time with --duration D"
  LENGTH_ARGS=(-n "$REQUESTS")
fi

PYENV=${EDGEHUB_PYENV:-$(bash "$ROOT/scripts/ensure-pyenv.sh" | tail -n1)}
SINGLEUSER=$PYENV/bin/jupyterhub-singleuser
[[ -x $SINGLEUSER ]] || die "no jupyterhub-singleuser in the venv $PYENV (scripts/ensure-pyenv.sh makes it)"
if has "$ONLY" monolith; then ensure_chp; fi

ulimit -n "$NOFILE" 2>/dev/null || NOFILE=$(ulimit -n)
WORKDIR=$(mktemp -d /tmp/seed-ab.XXXXXX)
bench_traps
mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
log "work dir: $WORKDIR; $USERS users, $(if [[ -n $DURATION ]]; then echo "for $DURATION"; else echo "$REQUESTS requests"; fi)"

# run_load NAME FRONT_DOOR_URL: a warm-up of the same load (discarded), then the measured run;
# its report goes to $RESULTS_DIR/seed-ab-<ts>-NAME.json and the steal over it to $WORKDIR/NAME.steal.
run_load() {
  local name=$1 json=$RESULTS_DIR/seed-ab-$STAMP-$1.json t0
  # The same load for a moment first: connections, the token caches of the edge and of the
  # servers, node's and Python's code paths are warm when the count starts, on both front doors.
  run_fg "$EDGELOAD_BIN" http --urls-file "$WORKDIR/$name.urls" --pin-urls -c "$USERS" -t 1 -d 2s -w 0s \
    --timeout 30s -q >"$WORKDIR/$name.warmup.txt" 2>&1 || die "$name: the warm-up failed (see $WORKDIR/$name.warmup.txt)"
  log "$name: the measured run: $USERS connections, one per user"
  t0=$(cpu_ticks_all)
  run_fg "$EDGELOAD_BIN" http --urls-file "$WORKDIR/$name.urls" --pin-urls -c "$USERS" -t 1 "${LENGTH_ARGS[@]}" \
    --timeout 30s -q --json "$json" >"$WORKDIR/$name.load.txt" 2>&1 \
    || { cat "$WORKDIR/$name.load.txt" >&2; die "$name: edgeload failed"; }
  steal_pct "$t0" "$(cpu_ticks_all)" >"$WORKDIR/$name.steal"
}

# users NAME ACTION URL TOKEN [ARGS…]: bench/lib/seed_ab_users.py for this front door.
users() {
  local name=$1 action=$2 url=$3 token=$4
  shift 4
  run_fg "$PY" "$LIB/seed_ab_users.py" "$action" --hub "$url" --admin-token "$token" --users "$USERS" \
    --parallel "$PARALLEL" --timeout $((120 + USERS * 6)) "$@"
}

# --- edgehub up ---------------------------------------------------------------------------------
run_edgehub() {
  local d=$WORKDIR/edgehub token url=
  mkdir -p "$d"
  token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  # Port 0: the system picks a free port when edgehub binds it, and edgehub prints its URL. A
  # port found free beforehand could be taken before edgehub bound it.
  cat >"$d/edgehub.toml" <<TOML
bind = "127.0.0.1:0"
db = "$d/edgehub.sqlite"
api_tokens = ["$token"]

[spawner]
command = ["$SINGLEUSER", "--ip=127.0.0.1", "--port={port}", "--ServerApp.root_dir=$d", "--allow-root",
           "--KernelManager.transport=ipc"]
working_dir = "$d"
start_timeout_secs = 120
http_timeout_secs = 120

# Kernels talk over Unix sockets, as the monolith's do (run_hub_test.py): TCP ports picked by
# binding port 0 and letting go can be taken by another server's kernel before they are bound.
[spawner.environment]
HOME = "$d"
PATH = "$PYENV/bin:/usr/bin:/bin"
JUPYTER_RUNTIME_DIR = "$d/rt"

[cull]
timeout_secs = 0
TOML
  start_bg edgehub "" env NO_COLOR=1 "$EDGEHUB_BIN" up --config "$d/edgehub.toml" --log-level warn
  local hub=$LAST_PID i
  for ((i = 0; i < 300; i++)); do
    url=$(sed -n 's|.*edgehub is up: open \(http://[^ ]*\).*|\1|p' "$WORKDIR/edgehub.log" | head -n1)
    [[ -n $url ]] && break
    kill -0 "$hub" 2>/dev/null || { log_tail edgehub; die "edgehub up exited before it was up"; }
    sleep 0.1
  done
  [[ -n $url ]] || { log_tail edgehub; die "edgehub up did not print its URL within 30 s"; }
  url=${url%/}
  log "edgehub: edgehub up on $url"
  wait_http "$url/hub/health" 30 || { log_tail edgehub; die "edgehub up did not come up"; }
  users edgehub setup "$url" "$token" --login form --out "$WORKDIR/edgehub.urls" \
    || { log_tail edgehub; die "edgehub: the users' servers could not be set up"; }
  run_load edgehub "$url"
  users edgehub stop "$url" "$token" || log "edgehub: not every server stopped through the API; killing them"
  stop_bg "$hub"
}

# --- the monolith: JupyterHub + configurable-http-proxy -----------------------------------------
run_monolith() {
  local d=$WORKDIR/monolith url token
  mkdir -p "$d"
  cat >"$d/extra_config.py" <<PY
# 100 Python servers starting on 2 cores: as edgehub's start and HTTP time-outs above
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
PY
  # loadtest/tests/journey_hub.py: the stock JupyterHub of edgeload's journey test, here with
  # CHP as its proxy; it prints "ready URL TOKEN PASSWORD" and runs until its stdin closes.
  # Its stdin is a FIFO whose only writer is this shell's fd 8 (opened read-write, so that
  # neither open blocks, and closed for the child): closing fd 8 stops the hub. (The FIFO is
  # opened by the child itself: bash gives a background command /dev/null as its stdin.)
  mkfifo "$d/hold"
  exec 8<>"$d/hold"
  # shellcheck disable=SC2016  # $0 and $@ are the inner shell's
  start_bg monolith "" bash -c 'exec "$@" <"$0"' "$d/hold" \
    "$PYENV/bin/python" "$ROOT/loadtest/tests/journey_hub.py" \
    --proxy-command "$CHP_BIN" --timeout 90 --concurrent-spawn-limit 100 \
    --extra-config "$d/extra_config.py" --log "$d/jupyterhub.log" 8>&-
  local hub=$LAST_PID
  local i
  for ((i = 0; i < 1000; i++)); do
    grep -q '^ready\|^FAIL' "$WORKDIR/monolith.log" 2>/dev/null && break
    [[ -e /proc/$hub ]] || break
    sleep 0.1
  done
  grep -q '^ready' "$WORKDIR/monolith.log" 2>/dev/null || { exec 8>&-; log_tail monolith; die "JupyterHub did not come up"; }
  read -r _ url token _ < <(grep -m1 '^ready' "$WORKDIR/monolith.log")
  log "monolith: JupyterHub with configurable-http-proxy on $url"
  users monolith setup "$url" "$token" --login none --out "$WORKDIR/monolith.urls" \
    || { exec 8>&-; log_tail monolith; die "monolith: the users' servers could not be set up"; }
  run_load monolith "$url"
  users monolith stop "$url" "$token" || log "monolith: not every server stopped through the API"
  exec 8>&-   # journey_hub.py stops the hub and kills what it left
  local deadline=$((SECONDS + 40))
  while [[ -e /proc/$hub ]] && ((SECONDS < deadline)); do sleep 0.2; done
  stop_bg "$hub"
}

has "$ONLY" edgehub && run_edgehub
has "$ONLY" monolith && run_monolith

# --- report -------------------------------------------------------------------------------------
REPORT=$RESULTS_DIR/seed-ab-$STAMP.md
{
  echo "# The seed paper's load test: $USERS users, $(if [[ -n $DURATION ]]; then echo "$DURATION"; else echo "$REQUESTS requests"; fi)"
  echo
  echo "Machine: $(cpu_line)"
  echo
  "$PY" - "$RESULTS_DIR" "$STAMP" "$REQUESTS" "$DURATION" "$WORKDIR" "$ONLY" <<'PY'
import json, os, sys
results, stamp, requested, duration, workdir, only = sys.argv[1:]
rows = {}
for name in ("edgehub", "monolith"):
    path = os.path.join(results, f"seed-ab-{stamp}-{name}.json")
    if name not in only.split(",") or not os.path.exists(path):
        continue
    r = json.load(open(path))
    lat = r["latency"]["service_time"]
    rows[name] = {
        "requested": "–" if duration else requested,
        "completed": lat["count"],
        "errors": r["errors"]["total"],
        "rps": r["throughput_rps"],
        "p50": lat["p50_us"] / 1000,
        "p99": lat["p99_us"] / 1000,
        "steal": open(os.path.join(workdir, f"{name}.steal")).read().strip(),
        "users": r["parameters"]["connections"],
    }
print("| front door | users | requests | completed | errors | req/s | p50 ms | p99 ms | steal % |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, x in rows.items():
    print(f"| {name} | {x['users']} | {x['requested']} | {x['completed']} | {x['errors']} | "
          f"{x['rps']:.0f} | {x['p50']:.2f} | {x['p99']:.2f} | {x['steal']} |")
if len(rows) == 2:
    e, m = rows["edgehub"], rows["monolith"]
    ratio = lambda a, b: f"{a / b:.2f}" if b else "–"
    print(f"| edgehub ÷ monolith | | | | | {ratio(e['rps'], m['rps'])} | {ratio(e['p50'], m['p50'])} | "
          f"{ratio(e['p99'], m['p99'])} | |")
PY
  echo
  echo "Latencies are edgeload's service time (closed model, as ab's): from sending a request to the"
  echo "last byte of its response. JSON reports: $RESULTS_DIR/seed-ab-$STAMP-<front door>.json"
} | tee "$REPORT"
log "report: $REPORT"
