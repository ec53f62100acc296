#!/usr/bin/env bash
# edgeload vs wrk: closed-model requests/s against the same backend, with the same connections
# and threads, interleaved (wrk, edgeload, edgeload, wrk, …), on loopback. The backend (nginx
# `return 200 "ok"`, one worker) runs alone on one core, the load generator on the other.
#
# Two modes per round:
#   free     the generator may use its whole core. On this set-up the one-core backend is then
#            the bottleneck for either generator (see the backend busy column), so the ratio
#            tends to 1.0 whatever the generators cost: it shows parity, not headroom.
#   capped   the generator is confined to --cpu-limit percent of one core (a cgroup CPU quota),
#            so the generator is the bottleneck and the backend has spare capacity. Requests/s
#            then measure how much load each generator drives with the same CPU: this is the
#            figure that answers "the generator is not the bottleneck".
# Each run also reports the generator's CPU time per request (user + system, getrusage), how
# much of its core (free) or of its quota (capped) the generator used, the backend's CPU
# utilisation during the run (/proc/<pid>/stat), and the share of the run the hypervisor stole
# from the load or the backend core (/proc/stat). On a VM, steal slows either run of a pair at
# random, so pairs with more than --max-steal percent are shown but left out of the medians. As root, the backend and the generators run at
# nice -10 (--nice) and the capped cgroup gets ten times the default CPU weight, so that other
# jobs on the machine disturb the measurement less; both generators are treated alike.
#
#   bench/edgeload-vs-wrk.sh                       # 5 rounds of 10 s, -c 50 -t 1, cap 50%
#   bench/edgeload-vs-wrk.sh --duration 5 --rounds 7 --connections 10,50,200 --cpu-limit 25
#   bench/edgeload-vs-wrk.sh --cpu-limit 0         # free runs only
#   bench/edgeload-vs-wrk.sh --cpu-limit 0 --body-sizes 2,4096,262144   # CPU per request by body size
#   EDGELOAD_BIN=/path/to/edgeload bench/edgeload-vs-wrk.sh --backend edgeload
#
# Needs wrk, nginx (unless --backend edgeload), taskset and python3; the capped mode needs root
# and a cgroup CPU controller (v2 cpu.max or v1 cpu.cfs_quota_us). Run
# `cargo build --release -p loadtest` first. Prints Markdown tables and the medians.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGELOAD_BIN=${EDGELOAD_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/edgeload}
DURATION=10 ROUNDS=5 CONNS=50 THREADS=1 BACKEND=nginx CPU_LIMIT=50 MAX_STEAL=5 NICE= BODY_SIZES=2
((EUID == 0)) && NICE=-10 || NICE=0
LOAD_CORE=${BENCH_LOAD_CORE:-0}
BACKEND_CORE=${BENCH_BACKEND_CORE:-1}

usage() {
  cat <<EOF
usage: $0 [--duration S] [--rounds N] [--connections N] [--threads N] [--cpu-limit PCT]
          [--nice N] [--backend nginx|edgeload]
  --duration S      seconds per measurement (default $DURATION)
  --rounds N        rounds; each runs wrk then edgeload, free then capped (default $ROUNDS)
  --connections N   wrk -c / edgeload -c (default $CONNS); a comma-separated list runs each
                    count in every round
  --threads N       wrk -t / edgeload -t (default $THREADS)
  --cpu-limit PCT   capped mode: the generator gets PCT% of one core (default $CPU_LIMIT;
                    0 = free runs only)
  --nice N          niceness of the backend and the generators (default $NICE: -10 as root, else 0)
  --max-steal PCT   leave a pair of runs out of the medians when the hypervisor stole more than
                    PCT% of either run from the load or the backend core (default $MAX_STEAL;
                    100 keeps every pair); such pairs stay in the table, marked
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
    --cpu-limit) CPU_LIMIT=$2; shift ;;
    --nice) NICE=$2; shift ;;
    --max-steal) MAX_STEAL=$2; shift ;;
    --backend) BACKEND=$2; shift ;;
    --body-sizes) BODY_SIZES=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

die() { printf '[edgeload-vs-wrk] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[edgeload-vs-wrk %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
for v in DURATION ROUNDS THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
[[ $CONNS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--connections must be N or N,M,..., got '$CONNS'"
[[ $CPU_LIMIT =~ ^[0-9]+$ ]] && ((CPU_LIMIT <= 100)) || die "--cpu-limit must be 0-100, got '$CPU_LIMIT'"
[[ $NICE =~ ^-?[0-9]+$ ]] || die "--nice must be an integer, got '$NICE'"
[[ $MAX_STEAL =~ ^[0-9]+$ ]] || die "--max-steal must be a percentage, got '$MAX_STEAL'"
[[ $BACKEND =~ ^(nginx|edgeload)$ ]] || die "--backend must be nginx or edgeload, got '$BACKEND'"
[[ $BODY_SIZES =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--body-sizes must be N or N,M,..., got '$BODY_SIZES'"
[[ $BACKEND == nginx || $BODY_SIZES == 2 ]] || die "--body-sizes other than 2 need the nginx backend"
for t in wrk taskset nice python3; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ $BACKEND == edgeload ]] || command -v nginx >/dev/null || die "nginx is not installed (or use --backend edgeload)"
[[ -x $EDGELOAD_BIN ]] || die "no edgeload binary at $EDGELOAD_BIN: run cargo build --release -p loadtest"

WORKDIR=$(mktemp -d)
BACKEND_PID= CGROUP=
cleanup() {
  if [[ -n $BACKEND_PID ]]; then
    kill "$BACKEND_PID" 2>/dev/null || true
    wait "$BACKEND_PID" 2>/dev/null || true
  fi
  # The generators have exited, so the cgroup is empty and can go.
  [[ -z $CGROUP ]] || rmdir "$CGROUP" 2>/dev/null || true
  rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The capped mode's cgroup: a quota of CPU_LIMIT% of one core per 10 ms period (a short period
# keeps the throttling smooth for a closed loop), and ten times the default weight, the
# counterpart of --nice for a group.
if ((CPU_LIMIT > 0)); then
  ((EUID == 0)) || die "--cpu-limit needs root (cgroup); use --cpu-limit 0 for free runs only"
  PERIOD_US=10000 QUOTA_US=$((CPU_LIMIT * 100))
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then # cgroup v2
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control ||
      die "cannot enable the cpu controller in /sys/fs/cgroup"
    CGROUP=/sys/fs/cgroup/edgeload-vs-wrk-$$
    mkdir "$CGROUP" && echo "$QUOTA_US $PERIOD_US" >"$CGROUP/cpu.max" && echo 1000 >"$CGROUP/cpu.weight" ||
      die "cannot set up $CGROUP"
  elif [[ -d /sys/fs/cgroup/cpu ]]; then # cgroup v1
    CGROUP=/sys/fs/cgroup/cpu/edgeload-vs-wrk-$$
    mkdir "$CGROUP" && echo "$PERIOD_US" >"$CGROUP/cpu.cfs_period_us" && echo "$QUOTA_US" >"$CGROUP/cpu.cfs_quota_us" &&
      echo 10240 >"$CGROUP/cpu.shares" || die "cannot set up $CGROUP"
  else
    die "no cgroup CPU controller found; use --cpu-limit 0"
  fi
fi

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
        location /body/ { root $WORKDIR; default_type application/octet-stream; }
    }
}
CONF
  mkdir -p "$WORKDIR/body"
  for size in ${BODY_SIZES//,/ }; do head -c "$size" /dev/zero >"$WORKDIR/body/$size"; done
  # nginx's worker runs as nobody when started as root: the files must be readable by it.
  chmod 755 "$WORKDIR" "$WORKDIR/body" && chmod 644 "$WORKDIR"/body/*
  nice -n "$NICE" taskset -c "$BACKEND_CORE" nginx -e "$WORKDIR/error.log" -p "$WORKDIR" -c "$WORKDIR/nginx.conf" -g 'daemon off;' \
    >"$WORKDIR/backend.log" 2>&1 &
else
  nice -n "$NICE" taskset -c "$BACKEND_CORE" "$EDGELOAD_BIN" serve --port "$PORT" >"$WORKDIR/backend.log" 2>&1 &
fi
BACKEND_PID=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  kill -0 "$BACKEND_PID" 2>/dev/null || { cat "$WORKDIR/backend.log" >&2; die "backend did not start"; }
  sleep 0.1
done
log "backend $BACKEND on $URL (core $BACKEND_CORE); load on core $LOAD_CORE; -c $CONNS -t $THREADS;" \
  "bodies of $BODY_SIZES bytes; ${DURATION}s x $ROUNDS rounds; cap ${CPU_LIMIT}% of a core${CGROUP:+ ($CGROUP)}; nice $NICE"
log "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs usable"

# The rounds. Per run: the generator's requests/s and requests (from its own report), its CPU
# time (getrusage of the child), and the backend's CPU time over the same interval (utime +
# stime of the backend process and its children, from /proc).
python3 - "$DURATION" "$ROUNDS" "$CONNS" "$THREADS" "$LOAD_CORE" "$URL" "$EDGELOAD_BIN" "$BACKEND_PID" \
  "$CGROUP" "$CPU_LIMIT" "$WORKDIR" "$NICE" "$BACKEND_CORE" "$MAX_STEAL" "$BODY_SIZES" <<'PY'
import json, os, resource, statistics, subprocess, sys, time

(duration, rounds, conns_list, threads, core, url, edgeload, backend_pid, cgroup, cap, workdir, nice,
 backend_core, max_steal, body_sizes) = sys.argv[1:]
body_sizes = body_sizes.split(",")
max_steal = int(max_steal) / 100
rounds, cap = int(rounds), int(cap)
conns_list = conns_list.split(",")
limit = int(duration) + 30
tick = os.sysconf("SC_CLK_TCK")


def backend_cpu():
    """CPU seconds used so far by the backend process and its children (nginx's workers)."""
    pids = [backend_pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == backend_pid:
                        pids.append(p)
            except OSError:
                pass
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def steal():
    """Ticks the hypervisor took from the load core and from the backend core so far."""
    ticks = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name in (f"cpu{core}", f"cpu{backend_core}"):
                ticks[name] = int(fields[7])
    return ticks.get(f"cpu{core}", 0), ticks.get(f"cpu{backend_core}", 0)


def enter_cgroup():
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))


def run(generator, capped, conns, size):
    """-> requests/s, requests, generator CPU s, generator busy fraction (of its core or quota),
    backend busy fraction, largest share of the run stolen by the hypervisor from either core"""
    out = os.path.join(workdir, "out")
    target = url if size == "2" else f"{url}body/{size}"
    if generator == "wrk":
        cmd = ["wrk", "-t", threads, "-c", conns, "-d", f"{duration}s", target]
    else:
        cmd = [edgeload, "http", target, "-c", conns, "-t", threads, "-d", f"{duration}s", "-w", "0s",
               "--quiet", "--json", out + ".json"]
    cmd = ["timeout", str(limit), "nice", "-n", nice, "taskset", "-c", core] + cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0, b0, t0 = steal(), backend_cpu(), time.monotonic()
    with open(out, "w") as f:
        rc = subprocess.run(cmd, stdout=f, preexec_fn=enter_cgroup if capped else None).returncode
    s1, b1, t1 = steal(), backend_cpu(), time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        sys.exit(f"{generator} exited with {rc}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # A run that measured error responses measured something else: stop.
    if generator == "wrk":
        text = open(out).read()
        if "Non-2xx" in text or "Socket errors" in text:
            sys.exit(f"wrk saw errors against {target}:\n{text}")
        n = int(text.split(" requests in ")[0].split()[-1])
        rps = float(text.split("Requests/sec:")[1].split()[0])
    else:
        r = json.load(open(out + ".json"))
        if r["errors"]["total"]:
            sys.exit(f"edgeload saw errors against {target}: {r['errors']['by_kind']}")
        n, rps = r["counters"]["sent"], r["throughput_rps"]
    share = cap / 100 if capped else 1
    stolen = max(b - a for a, b in zip(s0, s1)) / tick / (t1 - t0)
    return rps, n, cpu, cpu / (t1 - t0) / share, (b1 - b0) / (t1 - t0), stolen


modes = ["free"] + (["capped"] if cap else [])
rows = {(b, c, m): [] for b in body_sizes for c in conns_list for m in modes}
excluded = {key: 0 for key in rows}
print("| round | body | -c | mode | wrk req/s | edgeload req/s | req/s ratio | wrk CPU µs/req | edgeload CPU µs/req "
      "| CPU ratio wrk/edgeload | generator busy (wrk, edgeload) | backend busy (wrk, edgeload) | steal (wrk, edgeload) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for rnd in range(1, rounds + 1):
    for size, conns, mode in rows:
        # wrk first in odd rounds, edgeload first in even ones, so that neither always runs
        # on the heels of the other.
        if rnd % 2:
            w = run("wrk", mode == "capped", conns, size)
            e = run("edgeload", mode == "capped", conns, size)
        else:
            e = run("edgeload", mode == "capped", conns, size)
            w = run("wrk", mode == "capped", conns, size)
        w_us, e_us = w[2] / w[1] * 1e6, e[2] / e[1] * 1e6
        row = (e[0] / w[0], w_us / e_us, w[3], e[3], w[4], e[4])
        disturbed = max(w[5], e[5]) > max_steal
        if disturbed:
            excluded[size, conns, mode] += 1
        else:
            rows[size, conns, mode].append(row)
        print(f"| {rnd}{' (left out: steal)' if disturbed else ''} | {size} B | {conns} | {mode} | {w[0]:.0f} | {e[0]:.0f} | {row[0]:.3f} | {w_us:.2f} | {e_us:.2f} "
              f"| {row[1]:.3f} | {w[3]:.0%}, {e[3]:.0%} | {w[4]:.0%}, {e[4]:.0%} | {w[5]:.0%}, {e[5]:.0%} |", flush=True)

print()
for (size, conns, mode), r in rows.items():
    col = lambda i: [x[i] for x in r]
    label = f"{size} B bodies, -c {conns}, " + (f"capped at {cap}% of a core" if mode == "capped" else "free")
    label += f", {len(r)} rounds" + (f" ({excluded[size, conns, mode]} left out for steal)" if excluded[size, conns, mode] else "")
    if not r:
        print(f"{label}: no undisturbed round")
        continue
    ahead = sum(x > 1 for x in col(0))
    print(f"{label}: median edgeload/wrk requests/s {statistics.median(col(0)):.3f} "
          f"(min {min(col(0)):.3f}, max {max(col(0)):.3f}; edgeload ahead in {ahead} of {len(r)}); "
          f"median CPU per request wrk/edgeload {statistics.median(col(1)):.3f} "
          f"(min {min(col(1)):.3f}, max {max(col(1)):.3f}; edgeload's CPU per request "
          f"{1 / statistics.median(col(1)):.2f}x wrk's); "
          f"generator busy median {statistics.median(col(2)):.0%} (wrk), {statistics.median(col(3)):.0%} (edgeload); "
          f"backend busy median {statistics.median(col(4)):.0%} (wrk runs), {statistics.median(col(5)):.0%} (edgeload runs)")
if len(conns_list) > 1:
    for mode in modes:
        r = [x[0] for (b, c, m), v in rows.items() if m == mode for x in v]
        if r:
            print(f"all counts, {mode}: median edgeload/wrk requests/s {statistics.median(r):.3f} over {len(r)} pairs "
                  f"(min {min(r):.3f}, max {max(r):.3f}; edgeload ahead in {sum(x > 1 for x in r)})")
PY
