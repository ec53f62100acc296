#!/usr/bin/env bash
# Spawn storm: N users arrive at RATE/s; each gets a token, starts its server and waits until it
# is ready (edgeload journey --spawn-only), and the servers stay up, idle.
# Against, one after the other, with the same server command (edgehub's built-in server) and the
# same limits (100 concurrent spawns):
#   edgehub            `edgehub up`: one hub, SQLite, the proxy embedded;
#   edgehub-pair       two hubs on one PostgreSQL, behind nginx (as a Kubernetes Service is), one
#                      external edgeproxy, sessions and routes in Redis;
#   edgehub-pair-kill  the same, with one hub SIGKILLed once half the servers are ready;
#   jupyterhub         a stock JupyterHub 5.5.4 with edgeproxy as its proxy.
#
#   bench/hub-storm.sh                 # N=1000 RATE=50, all four
#   N=200 RATE=20 bench/hub-storm.sh   # a quick look
#   HUBS="edgehub edgehub-pair" bench/hub-storm.sh
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
HUBS=${HUBS:-edgehub edgehub-pair edgehub-pair-kill jupyterhub}
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
# Whatever a run left (an interrupted one too): hubs, proxies, nginx, Redis, PostgreSQL, servers.
stop_all() {
    kill_servers
    kill $(jobs -p) 2>/dev/null || true
    local pg
    for pg in "$WORK"/*/pg; do
        [ -f "$pg/postmaster.pid" ] || continue
        kill -QUIT "$(head -n1 "$pg/postmaster.pid")" 2>/dev/null || true
    done
}
trap 'stop_all; true' EXIT

# Sums over the hub processes in PIDS (comma-separated). A hub killed during the storm counts
# with the CPU it had used when it was killed (written to $WORK/cpu.<pid> by the killer).
sum_cpu() { local t=0 p; for p in ${1//,/ }; do
    if [ -r "/proc/$p/stat" ]; then t=$((t + $(cpu_ticks "$p"))); elif [ -r "$WORK/cpu.$p" ]; then t=$((t + $(cat "$WORK/cpu.$p"))); fi
done; echo "$t"; }
sum_rss() { local t=0 p; for p in ${1//,/ }; do [ -r "/proc/$p/status" ] && t=$((t + $(rss_kib "$p"))); done; echo "$t"; }

# run_storm NAME URL TOKEN HUB_PIDS [DB_PIDS]: the journey, with the hubs' CPU and RSS around it,
# and the CPU of a state database in processes of its own (PostgreSQL), if any.
run_storm() {
    local name=$1 url=$2 token=$3 pid=$4 db=${5:-}
    local rss0 cpu0 rss1 cpu1 db0=0 db1=0
    sleep 2
    rss0=$(sum_rss "$pid"); cpu0=$(sum_cpu "$pid")
    [ -n "$db" ] && db0=$(sum_cpu "$db")
    local ticks0; ticks0=$(cpu_ticks_all)
    log "$name: $N users at $RATE/s"
    "$EDGELOAD" journey "$url" --token "$token" -n "$N" -r "$RATE" --spawn-only \
        --spawn-timeout 600s --timeout 60s --user-prefix storm- -q --json "$WORK/$name.json" \
        >"$WORK/$name.journey.txt" 2>&1 || log "$name: journey exited $? (see $WORK/$name.journey.txt)"
    cpu1=$(sum_cpu "$pid")
    [ -n "$db" ] && db1=$(sum_cpu "$db")
    local steal; steal=$(steal_pct "$ticks0" "$(cpu_ticks_all)")
    sleep 5
    rss1=$(sum_rss "$pid")
    python3 - "$name" "$WORK/$name.json" "$N" "$rss0" "$rss1" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" "$steal" "$db0" "$db1" "$db" <<'PY'
import json, sys
name, path, n, rss0, rss1, cpu0, cpu1, hz, steal, db0, db1, db = sys.argv[1:]
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
      f"{ms('spawn_ready','p50')} / {ms('spawn_ready','p99')} | {cpu_ms:.2f} | "
      + (f"{(int(db1) - int(db0)) * 1000 / int(hz) / n:.2f}" if db else "in the hub") + f" | {rss:.1f} | {steal} % |")
PY
}

echo "Machine: $(cpu_line)"
echo
echo "| hub | servers ready | spawn request p50 / p99 (ms) | request to ready p50 / p99 (ms) | hub CPU per spawn (ms) | state database CPU per spawn (ms) | hub RSS per idle user (KiB) | steal |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"

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

# --- two hubs on PostgreSQL ---------------------------------------------------------------------
# run_pair NAME KILL: PostgreSQL, Redis, edgeproxy and nginx started fresh, two hubs behind nginx;
# with KILL=1 the first hub is SIGKILLed once N/2 servers are ready.
run_pair() {
    local name=$1 kill=$2 d=$WORK/$1
    mkdir -p "$d"
    # PostgreSQL refuses to run as root: its cluster belongs to the postgres user then.
    local pg_bin as=() pgport ppport apport lbport porta portb
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    if [ "$(id -u)" -eq 0 ]; then chmod a+x "$WORK"; chown postgres "$d"; as=(runuser -u postgres --); fi
    pgport=$(free_port)
    "${as[@]}" "$pg_bin/initdb" -D "$d/pg" -A trust -U edgehub -E UTF8 --locale=C >/dev/null
    "${as[@]}" "$pg_bin/pg_ctl" -D "$d/pg" -l "$d/pg.log" -w \
        -o "-p $pgport -c listen_addresses=127.0.0.1 -k $d -c max_connections=100" start >/dev/null
    "$pg_bin/psql" -h 127.0.0.1 -p "$pgport" -U edgehub -d postgres -qc 'CREATE DATABASE hub'
    redis-server --port 0 --unixsocket "$d/redis.sock" --save "" --appendonly no >"$d/redis.log" 2>&1 &
    local redis_pid=$!
    ppport=$(free_port); apport=$(free_port); lbport=$(free_port); porta=$(free_port); portb=$(free_port)
    for _ in $(seq 50); do [ -S "$d/redis.sock" ] && break; sleep 0.1; done
    CONFIGPROXY_AUTH_TOKEN=proxy-token "$EDGEPROXY" --ip 127.0.0.1 --port "$ppport" --api-ip 127.0.0.1 \
        --api-port "$apport" --storage-backend redis --storage-url "unix://$d/redis.sock" >"$d/edgeproxy.log" 2>&1 &
    local proxy_pid=$!
    cat >"$d/nginx.conf" <<NGINX
daemon off; master_process off; pid $d/nginx.pid; error_log $d/nginx.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fcgi;
  uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
  upstream hubs { server 127.0.0.1:$porta max_fails=0; server 127.0.0.1:$portb max_fails=0; }
  server { listen 127.0.0.1:$lbport;
    location / { proxy_pass http://hubs; proxy_next_upstream error timeout non_idempotent;
      proxy_set_header Host \$http_host; proxy_buffering off; proxy_read_timeout 3600s; } }
}
NGINX
    /usr/sbin/nginx -c "$d/nginx.conf" &
    local nginx_pid=$!
    local hub_pids=() hub
    for hub in "a:$porta" "b:$portb"; do
        cat >"$d/${hub%%:*}.toml" <<TOML
bind = "127.0.0.1:$ppport"
hub_bind = "127.0.0.1:${hub#*:}"
hub_connect_url = "http://127.0.0.1:$lbport"
api_tokens = ["$TOKEN"]
[state]
url = "postgres://edgehub@127.0.0.1:$pgport/hub"
[proxy]
api_url = "http://127.0.0.1:$apport"
api_token = "proxy-token"
[session]
redis_url = "unix://$d/redis.sock"
[spawner]
command = ["$EDGEHUB", "singleuser", "--port", "{port}"]
[cull]
timeout_secs = 0
TOML
        "$EDGEHUB" up --config "$d/${hub%%:*}.toml" >"$d/hub-${hub%%:*}.log" 2>&1 &
        hub_pids+=($!)
        wait_http "http://127.0.0.1:${hub#*:}/hub/health" 20
    done
    wait_http "http://127.0.0.1:$ppport/hub/health" 10
    local killer=
    if [ "$kill" = 1 ]; then
        # Once half the servers are ready (the hubs' own gauge), hub A goes, as a node would.
        ( while :; do
            ready=$(curl -fs -H "Authorization: token $TOKEN" "http://127.0.0.1:$portb/hub/metrics" \
                | awk '/^jupyterhub_running_servers /{print int($2)}')
            if [ "${ready:-0}" -ge $((N / 2)) ]; then
                cpu_ticks "${hub_pids[0]}" >"$WORK/cpu.${hub_pids[0]}"
                kill -9 "${hub_pids[0]}"; date +%s.%N >"$d/killed"; log "$name: hub A killed at $ready ready"
                exit 0
            fi
            sleep 0.5
        done ) &
        killer=$!
    fi
    # The database's CPU: the postmaster and its children (the hubs' backends, the WAL writer…).
    local postmaster pg_pids; postmaster=$(head -n1 "$d/pg/postmaster.pid")
    pg_pids="$postmaster,$(pgrep -d, -P "$postmaster" || true)"
    run_storm "$name" "http://127.0.0.1:$ppport/" "$TOKEN" "${hub_pids[0]},${hub_pids[1]}" "${pg_pids%,}"
    if [ -n "$killer" ]; then kill "$killer" 2>/dev/null || true; wait "$killer" 2>/dev/null || true; fi
    if [ -r "$d/killed" ]; then
        log "$name: hub B took the background work over: $(grep -m1 'now runs the background work' "$d/hub-b.log" | cut -c1-40)"
    fi
    # (`|| true`: the killed hub is gone already, and `kill` says so.)
    kill "${hub_pids[@]}" 2>/dev/null || true; wait "${hub_pids[@]}" 2>/dev/null || true
    kill "$nginx_pid" "$proxy_pid" "$redis_pid" 2>/dev/null || true
    wait "$nginx_pid" "$proxy_pid" "$redis_pid" 2>/dev/null || true
    "${as[@]}" "$pg_bin/pg_ctl" -D "$d/pg" -m immediate stop >/dev/null 2>&1 || true
    kill_servers
}

if [[ " $HUBS " == *" edgehub-pair "* ]]; then
    TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    run_pair edgehub-pair 0
fi
if [[ " $HUBS " == *" edgehub-pair-kill "* ]]; then
    TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    run_pair edgehub-pair-kill 1
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
