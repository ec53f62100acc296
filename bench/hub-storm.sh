#!/usr/bin/env bash
# Spawn storm: N users arrive at RATE/s; each gets a token, starts its server and waits until it
# is ready (edgeload journey --spawn-only), and the servers stay up, idle.
# Against `edgehub up` and a stock JupyterHub 5.5.4 (edgeproxy as its proxy), in one run, with
# the same server command (edgehub's built-in server) and the same limits (100 concurrent spawns).
#
#   bench/hub-storm.sh                 # N=1000 RATE=50
#   N=200 RATE=20 bench/hub-storm.sh   # a quick look
#   HUBS=edgehub bench/hub-storm.sh     # one hub only (edgehub, jupyterhub)
#
# Measured per hub: users ready; spawn request (POST /users/{name}/server) p50/p99 = the hub
# API's latency during the storm; request-to-ready p50/p99; hub CPU per spawn (utime+stime of
# the hub process over the storm / N: the hub's whole cost per user, its spawner's fork/exec
# included, so an upper bound on "hub overhead"); hub RSS growth per idle user after the storm.
# Report (Markdown) on stdout; logs in the work dir. Loopback only; servers are killed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${N:-1000}
RATE=${RATE:-50}
HUBS=${HUBS:-edgehub jupyterhub}
log() { printf '%s\n' "$*" >&2; }

cargo build --release -q -p hub-core -p loadtest -p proxy
EDGEHUB=$PWD/target/release/edgehub
EDGELOAD=$PWD/target/release/edgeload
EDGEPROXY=$PWD/target/release/edgeproxy
PYENV=$(bash scripts/ensure-pyenv.sh | tail -n1)
WORK=$(mktemp -d /tmp/hub-storm.XXXXXX)
ulimit -n 65536 2>/dev/null || true
log "work dir: $WORK"

. bench/lib/common.sh
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
kill_servers() { pkill -f "$EDGEHUB singleuser" 2>/dev/null || true; sleep 1; pkill -9 -f "$EDGEHUB singleuser" 2>/dev/null || true; }
trap 'kill_servers; [ -n "${HUB_PID:-}" ] && kill "$HUB_PID" 2>/dev/null; true' EXIT

# run_storm NAME URL TOKEN HUB_PID: the journey, with the hub's CPU and RSS around it.
run_storm() {
    local name=$1 url=$2 token=$3 pid=$4
    local rss0 cpu0 rss1 cpu1
    sleep 2
    rss0=$(rss_kib "$pid"); cpu0=$(cpu_ticks "$pid")
    log "$name: $N users at $RATE/s"
    "$EDGELOAD" journey "$url" --token "$token" -n "$N" -r "$RATE" --spawn-only \
        --spawn-timeout 600s --timeout 60s --user-prefix storm- -q --json "$WORK/$name.json" \
        >"$WORK/$name.journey.txt" 2>&1 || log "$name: journey exited $? (see $WORK/$name.journey.txt)"
    cpu1=$(cpu_ticks "$pid")
    sleep 5
    rss1=$(rss_kib "$pid")
    python3 - "$name" "$WORK/$name.json" "$N" "$rss0" "$rss1" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
name, path, n, rss0, rss1, cpu0, cpu1, hz = sys.argv[1:]
n, rss0, rss1, cpu0, cpu1, hz = int(n), int(rss0), int(rss1), int(cpu0), int(cpu1), int(hz)
r = json.load(open(path))
lat = r["latency"]
def ms(series, q):
    v = (lat.get(series) or {}).get(f"{q}_us")
    return "–" if v is None else f"{v / 1000:.1f}"
ready = (lat.get("spawn_ready") or {}).get("count", 0)
cpu_ms = (cpu1 - cpu0) * 1000 / hz / n
rss = (rss1 - rss0) / n
print(f"| {name} | {ready}/{n} | {ms('spawn_request','p50')} / {ms('spawn_request','p99')} | "
      f"{ms('spawn_ready','p50')} / {ms('spawn_ready','p99')} | {cpu_ms:.2f} | {rss:.1f} |")
PY
}

echo "| hub | servers ready | spawn request p50 / p99 (ms) | request to ready p50 / p99 (ms) | hub CPU per spawn (ms) | hub RSS per idle user (KiB) |"
echo "| --- | --- | --- | --- | --- | --- |"

# --- edgehub up -------------------------------------------------------------------------------
if [[ " $HUBS " == *" edgehub "* ]]; then
PORT=$(free_port)
TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
cat >"$WORK/edgehub.toml" <<TOML
bind = "127.0.0.1:$PORT"
db = "$WORK/edgehub.sqlite"
api_tokens = ["$TOKEN"]
[spawner]
command = ["$EDGEHUB", "singleuser", "--port", "{port}"]
[cull]
timeout_secs = 0
TOML
"$EDGEHUB" up --config "$WORK/edgehub.toml" >"$WORK/edgehub.log" 2>&1 &
HUB_PID=$!
wait_http "http://127.0.0.1:$PORT/hub/health" 10
run_storm edgehub "http://127.0.0.1:$PORT/" "$TOKEN" "$HUB_PID"
kill "$HUB_PID"; wait "$HUB_PID" 2>/dev/null || true; HUB_PID=
kill_servers
fi

# --- stock JupyterHub -------------------------------------------------------------------------
if [[ " $HUBS " == *" jupyterhub "* ]]; then
mkfifo "$WORK/hold"
"$PYENV/bin/python" loadtest/tests/journey_hub.py --proxy-command "$EDGEPROXY" --timeout 120 \
    --concurrent-spawn-limit 100 --spawner-cmd "$EDGEHUB" singleuser <"$WORK/hold" >"$WORK/jupyterhub.ready" 2>&1 &
HOLDER=$!
exec 9>"$WORK/hold"
for _ in $(seq 600); do grep -q '^ready\|^FAIL' "$WORK/jupyterhub.ready" && break; sleep 0.2; done
read -r _ JH_URL JH_TOKEN _ <"$WORK/jupyterhub.ready"
JH_PID=$(pgrep -n -f "bin/jupyterhub -f")
run_storm jupyterhub "$JH_URL/" "$JH_TOKEN" "$JH_PID"
exec 9>&-
wait "$HOLDER" 2>/dev/null || true
kill_servers
fi
log "done; details in $WORK"
