#!/usr/bin/env bash
# Kubernetes spawn storm on the API-server simulator: N users arrive at RATE/s, each starts a
# server and waits until it is ready (edgeload journey --spawn-only). Each run on a fresh
# simulator of 2 nodes:
#   cold:        `edgehub up` with the Kubernetes spawner; every spawn creates a pod (schedule,
#                image pull on a node's first pod, container start);
#   warm:        the same with a warm pool: the profile keeps POOL pods started ahead of demand,
#                and a spawn claims one;
#   kubespawner: the peer, JupyterHub 5.5.4 with KubeSpawner 7.1.0 (in a venv the script makes,
#                $KS_VENV) and edgeproxy as its proxy, spawning the same pods cold.
#
#   bench/k8s-storm.sh                                  # N=1000 RATE=20 POOL=100, every run
#   N=200 RATE=20 POOL=50 RUNS="cold warm" bench/k8s-storm.sh   # a quick look
#
# The simulated node: an image pull takes PULL_MS on a node's first pod of that image, a
# container starts CONTAINER_MS after it is created (a pod sandbox and a container start on a real
# node). Each pod runs edgehub's built-in server, which binds the pod's own 127.x address.
#
# Measured per run: servers ready; the spawn request's p50/p99 (POST until 201/202, with its
# waits after 429 answers) and then the time to ready (the progress stream's ready event); API-server writes and polling reads (GET/LIST; the watches
# are not reads) per spawn, from the simulator's counters; CPU by component and the machine's
# busy and stolen shares; and, sampled every second, each node's requested CPU and memory against
# the users running, drawn as an SVG (balanced placement). Report (Markdown) on stdout; data and
# logs in the work dir. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${N:-1000}
RATE=${RATE:-20}
POOL=${POOL:-100}
PULL_MS=${PULL_MS:-10000}
CONTAINER_MS=${CONTAINER_MS:-1500}
RUNS=${RUNS:-cold warm kubespawner}
KS_VENV=${KS_VENV:-$HOME/.cache/edgehub/bench-kubespawner}
log() { printf '%s\n' "$*" >&2; }

cargo build --release -q -p hub-core -p loadtest -p spawner-k8s -p proxy
EDGEHUB=$PWD/target/release/edgehub
EDGEPROXY=$PWD/target/release/edgeproxy
EDGELOAD=$PWD/target/release/edgeload
K8S_SIM=$PWD/target/release/k8s-sim
LAUNCHER=$PWD/spawner-k8s/launcher/edgehub-launcher
# The pool pods' interpreter: the system's Python, started without site-packages (-S; the launcher
# needs only the standard library). On a cluster each pod starts its launcher on its own node,
# before any claim; here 1,000 pods share 2 cores with the hub, and `python3` may be a pyenv shim
# (a shell script) that costs ten times the interpreter itself.
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
WORK=$(mktemp -d /tmp/k8s-storm.XXXXXX)
ulimit -n 65536 2>/dev/null || true
log "work dir: $WORK"

. bench/lib/common.sh
SIM_PID= HUB_PID= SAMPLER_PID=
cleanup() {
    for pid in $SAMPLER_PID $HUB_PID $SIM_PID; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# start_edgehub DIR POOL SIM_URL: `edgehub up` with the Kubernetes spawner; sets HUB_URL, HUB_TOKEN,
# HUB_PID, and waits for a warm pool to run.
start_edgehub() {
    local dir=$1 pool=$2 sim_url=$3 port
    port=$(free_port)
    HUB_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    cat >"$dir/edgehub.toml" <<TOML
bind = "127.0.0.1:$port"
db = "$dir/edgehub.sqlite"
api_tokens = ["$HUB_TOKEN"]
spawner_class = "kubernetes"
[cull]
timeout_secs = 0
[kubernetes]
kubeconfig = "$dir/kubeconfig"
launcher_command = ["$PYTHON", "-S", "$LAUNCHER"]
start_timeout_secs = 300
[kubernetes.pod]
image = "edgehub/builtin:bench"
command = ["$EDGEHUB", "singleuser"]
port = 8888
cpu_guarantee = 0.1
mem_guarantee = "256Mi"
[[kubernetes.profiles]]
slug = "standard"
default = true
warm_pool = $pool
TOML
    "$EDGEHUB" up --config "$dir/edgehub.toml" >"$dir/edgehub.log" 2>&1 &
    HUB_PID=$!
    HUB_URL="http://127.0.0.1:$port/"
    wait_http "${HUB_URL}hub/health" 30
    if [ "$pool" -gt 0 ]; then
        log "waiting for the pool of $pool"
        for _ in $(seq 600); do
            [ "$(curl -fs "$sim_url/api/v1/pods" | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["items"] if p.get("status",{}).get("phase")=="Running"))')" -ge "$pool" ] && break
            sleep 0.5
        done
    fi
}

# The peer's venv: JupyterHub and KubeSpawner at fixed versions, made once.
ensure_kubespawner() {
    if ! "$KS_VENV/bin/python" -c 'import kubespawner, jupyterhub' 2>/dev/null; then
        log "installing JupyterHub 5.5.4 and KubeSpawner 7.1.0 into $KS_VENV"
        python3 -m venv "$KS_VENV"
        "$KS_VENV/bin/pip" install -q --disable-pip-version-check jupyterhub==5.5.4 jupyterhub-kubespawner==7.1.0
    fi
}

# start_kubespawner DIR: JupyterHub with KubeSpawner against the simulator (KUBECONFIG), edgeproxy
# as its proxy, the same pod as edgehub's cold run; sets HUB_URL, HUB_TOKEN, HUB_PID (the holder
# that stops JupyterHub and what it started when its stdin closes).
start_kubespawner() {
    local dir=$1
    ensure_kubespawner
    cat >"$dir/kubespawner_config.py" <<PY
c.JupyterHub.spawner_class = 'kubespawner.KubeSpawner'
c.KubeSpawner.namespace = 'default'
c.KubeSpawner.image = 'edgehub/builtin:bench'
# The pod binds its own IP, from the downward API (KubeSpawner's default is 0.0.0.0: on this one
# machine every pod would want the same port).
c.KubeSpawner.cmd = ['$EDGEHUB', 'singleuser', '--ip', '\$(POD_IP)', '--port', '8888']
c.KubeSpawner.args = []
c.KubeSpawner.ip = '0.0.0.0'
c.KubeSpawner.cpu_guarantee = 0.1
c.KubeSpawner.mem_guarantee = '256M'
c.KubeSpawner.start_timeout = 300
c.KubeSpawner.http_timeout = 120

def _pod_ip_env(spawner, pod):
    from kubernetes_asyncio.client.models import V1EnvVar, V1EnvVarSource, V1ObjectFieldSelector
    container = pod.spec.containers[0]
    container.env = (container.env or []) + [V1EnvVar(name='POD_IP', value_from=V1EnvVarSource(
        field_ref=V1ObjectFieldSelector(field_path='status.podIP')))]
    return pod

c.KubeSpawner.modify_pod_hook = _pod_ip_env
PY
    mkfifo "$dir/hold"
    KUBECONFIG="$dir/kubeconfig" "$KS_VENV/bin/python" loadtest/tests/journey_hub.py \
        --proxy-command "$EDGEPROXY" --timeout 120 --concurrent-spawn-limit 100 \
        --extra-config "$dir/kubespawner_config.py" --log "$dir/jupyterhub.log" \
        <"$dir/hold" >"$dir/jupyterhub.ready" 2>&1 &
    HUB_PID=$!
    exec 9>"$dir/hold"
    for _ in $(seq 600); do grep -q '^ready\|^FAIL' "$dir/jupyterhub.ready" && break; sleep 0.2; done
    local line
    line=$(head -n1 "$dir/jupyterhub.ready")
    case $line in ready*) ;; *) log "JupyterHub did not start: $(cat "$dir/jupyterhub.ready")"; exit 1 ;; esac
    read -r _ HUB_URL HUB_TOKEN _ <<<"$line"
    HUB_URL="$HUB_URL/"
}

# run NAME POOL HUB: one storm on a fresh simulator and a fresh hub (HUB: edgehub or kubespawner).
run() {
    local name=$1 pool=$2 hub=$3 dir=$WORK/$1
    mkdir -p "$dir"
    # Room for every user on 2 nodes: 1,000 pods of 0.1 CPU / 256 MiB each, and the pool.
    "$K8S_SIM" --nodes 2 --node-cpu 64 --node-memory 256Gi --node-max-pods 1200 \
        --image-pull-ms "$PULL_MS" --container-start-ms "$CONTAINER_MS" \
        --kubeconfig "$dir/kubeconfig" --root "$dir/sim" >"$dir/sim.url" 2>"$dir/sim.log" &
    SIM_PID=$!
    for _ in $(seq 100); do [ -s "$dir/sim.url" ] && break; sleep 0.1; done
    local sim_url
    sim_url=$(head -n1 "$dir/sim.url")
    case $hub in
        edgehub) start_edgehub "$dir" "$pool" "$sim_url" ;;
        kubespawner) start_kubespawner "$dir" ;;
    esac
    curl -fs "$sim_url/sim/stats" >"$dir/stats0.json"
    head -n1 /proc/stat >"$dir/cpu0.stat"
    ps -eo pid=,times=,args= >"$dir/ps0.txt"
    # The placement plot comes from the cold run; the others sample less often, so the
    # sampler's lists of every pod do not compete with the spawns being measured.
    python3 bench/k8s_nodes.py sample "$sim_url" "$dir/sampler.count" "$([ "$name" = cold ] && echo 1 || echo 5)" \
        >"$dir/nodes.csv" &
    SAMPLER_PID=$!
    log "$name: $N users at $RATE/s"
    "$EDGELOAD" journey "$HUB_URL" --token "$HUB_TOKEN" -n "$N" -r "$RATE" --spawn-only \
        --spawn-timeout 600s --timeout 60s --user-prefix "k8s-$name-" -q --json "$dir/journey.json" \
        >"$dir/journey.txt" 2>&1 || log "$name: journey exited $? (see $dir/journey.txt)"
    sleep 2
    curl -fs "$sim_url/sim/stats" >"$dir/stats1.json"
    ps -eo pid=,times=,args= >"$dir/ps1.txt"
    head -n1 /proc/stat >"$dir/cpu1.stat"
    kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=
    if [ "$hub" = kubespawner ]; then exec 9>&-; else kill "$HUB_PID"; fi
    wait "$HUB_PID" 2>/dev/null || true; HUB_PID=
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=
    python3 bench/k8s_nodes.py report "$name" "$N" "$dir" "$pool"
    python3 bench/k8s_nodes.py cpu "$dir"
}

# A user's wait is the spawn request (its retries after 429 included) and then the time to ready.
echo "| run | servers ready | spawn request p50 / p99 (ms) | then to ready p50 / p99 (ms) | API writes per spawn | polling reads (GET/LIST) per spawn |"
echo "| --- | --- | --- | --- | --- | --- |"
for r in $RUNS; do
    case $r in
        cold) run cold 0 edgehub ;;
        warm) run warm "$POOL" edgehub ;;
        kubespawner) run kubespawner 0 kubespawner ;;
        *) log "unknown run $r (cold, warm, kubespawner)"; exit 2 ;;
    esac
done
python3 bench/k8s_nodes.py plot "$WORK/cold/nodes.csv" "$WORK/nodes.svg" 2>/dev/null \
    && log "node placement plot: $WORK/nodes.svg" || true
log "done; details in $WORK"
