#!/usr/bin/env python3
"""Helpers of bench/k8s-storm.sh (standard library only).

  k8s_nodes.py sample SIM_URL COUNT_FILE [PERIOD]
                                           every PERIOD seconds (default 1), each node's requested
                                           CPU and memory and the user servers running, as CSV on
                                           stdout; the number of lists it made goes to COUNT_FILE
                                           (the report takes them out of the API-server reads)
  k8s_nodes.py report NAME N DIR POOL      one Markdown row from the run's journey and counters
  k8s_nodes.py cpu DIR                     CPU seconds by component during the storm (DIR/ps0.txt
                                           and DIR/ps1.txt, `ps -eo pid=,times=,args=` before and after)
                                           and the machine's busy and stolen shares during the storm
                                           (DIR/cpu0.stat, DIR/cpu1.stat: the `cpu` line of /proc/stat)
  k8s_nodes.py plot CSV SVG                each node's requested CPU and memory (% of allocatable)
                                           against users running, as an SVG line chart
"""

import csv
import json
import signal
import sys
import time
import urllib.request

UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity(text):
    """A Kubernetes quantity as a number (cores for CPU, bytes for memory)."""
    text = str(text)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix, factor in sorted(UNITS.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def sample(sim_url, count_file, period="1"):
    period = float(period)
    nodes = {n["metadata"]["name"]: n["status"]["allocatable"] for n in get(sim_url + "/api/v1/nodes")["items"]}
    lists = 1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out = csv.writer(sys.stdout)
    out.writerow(["t", "users", "node", "cpu_pct", "mem_pct", "pods"])
    start = time.monotonic()
    while not stop:
        lists += 1
        try:
            pods = get(sim_url + "/api/v1/pods")["items"]
        except OSError:
            continue  # a simulator busy with a storm: skip this sample
        with open(count_file, "w") as f:
            f.write(str(lists))
        users = 0
        used = {name: [0.0, 0.0, 0] for name in nodes}
        for p in pods:
            labels = p["metadata"].get("labels", {})
            running = p.get("status", {}).get("phase") == "Running"
            if running and labels.get("hub.jupyter.org/username"):
                users += 1
            node = p.get("spec", {}).get("nodeName")
            if node not in used:
                continue
            for c in p["spec"].get("containers", []):
                req = (c.get("resources") or {}).get("requests") or {}
                used[node][0] += quantity(req.get("cpu", 0))
                used[node][1] += quantity(req.get("memory", 0))
            used[node][2] += 1
        t = round(time.monotonic() - start, 1)
        for name, (cpu, mem, count) in sorted(used.items()):
            alloc = nodes[name]
            out.writerow([t, users, name, round(100 * cpu / quantity(alloc["cpu"]), 2),
                          round(100 * mem / quantity(alloc["memory"]), 2), count])
        sys.stdout.flush()
        time.sleep(period)


def report(name, n, run_dir, pool):
    n, pool = int(n), int(pool)
    journey = json.load(open(f"{run_dir}/journey.json"))
    ready = journey["latency"].get("spawn_ready") or {}
    count = ready.get("count", 0)
    before = json.load(open(f"{run_dir}/stats0.json"))["requests"]
    after = json.load(open(f"{run_dir}/stats1.json"))["requests"]
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    writes = sum(v for k, v in delta.items() if k.split()[0].lower() in ("create", "update", "patch", "delete", "deletecollection"))
    reads = sum(v for k, v in delta.items() if k.split()[0].lower() in ("get", "list"))
    try:
        reads -= int(open(f"{run_dir}/sampler.count").read())  # the sampler's own lists
    except (OSError, ValueError):
        pass
    per = max(count, 1)
    label = f"{name} (pool of {pool})" if pool else name
    if name == "kubespawner":
        label = "JupyterHub 5.5.4 + KubeSpawner 7.1.0, cold"
    request = journey["latency"].get("spawn_request") or {}
    ms = lambda h, q: f"{h.get(q + '_us', 0) / 1000:.0f}"
    retries = journey.get("counters", {}).get("retries_429", 0)
    print(f"| {label} | {count}/{n} | {ms(request, 'p50')} / {ms(request, 'p99')} ({retries} waits on 429) "
          f"| {ms(ready, 'p50')} / {ms(ready, 'p99')} | {writes / per:.2f} | {reads / per:.3f} |")
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(delta.items()) if v)
    print(f"{name}: API requests during the storm: {detail}", file=sys.stderr)


# Which process is which, first match wins (a claimed launcher has exec'd the server).
COMPONENTS = [
    ("hub (edgehub up)", " up --config"),
    ("hub (JupyterHub + KubeSpawner)", "bin/jupyterhub -f"),
    ("JupyterHub's proxy (edgeproxy)", "release/edgeproxy"),
    ("simulator (k8s-sim)", "k8s-sim"),
    ("waiting launchers", "edgehub-launcher"),
    ("servers (edgehub singleuser)", " singleuser"),
    ("load generator (edgeload)", "edgeload"),
    ("node sampler", "k8s_nodes.py sample"),
]


def cpu(run_dir):
    """CPU seconds per component during the storm (processes alive at its end), and how much of the
    machine the storm had: a virtual machine's host may take ("steal") a share of its cores, and
    latencies measured then are not the software's."""
    def snapshot(path):
        procs = {}
        for line in open(path):
            pid, seconds, args = (line.split(None, 2) + ["", ""])[:3]
            procs[pid] = (int(seconds), args)
        return procs

    before, after = snapshot(f"{run_dir}/ps0.txt"), snapshot(f"{run_dir}/ps1.txt")
    totals = {name: [0, 0] for name, _ in COMPONENTS}
    for pid, (seconds, args) in after.items():
        # A process already there at the start counts only what it used since (not its start-up).
        was = before.get(pid)
        used = seconds - (was[0] if was and was[1] == args else 0)
        for name, needle in COMPONENTS:
            if needle in args:
                totals[name][0] += used
                totals[name][1] += 1
                break
    parts = [f"{name} {secs} s ({count} processes)" if count > 1 else f"{name} {secs} s"
             for name, (secs, count) in totals.items() if count]
    print("CPU by component: " + ", ".join(parts), file=sys.stderr)
    try:
        # cpu  user nice system idle iowait irq softirq steal guest guest_nice (ticks)
        before, after = ([int(v) for v in open(f"{run_dir}/{f}").read().split()[1:9]] for f in ("cpu0.stat", "cpu1.stat"))
    except (OSError, ValueError):
        return
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta) or 1
    idle = delta[3] + delta[4]
    steal = delta[7]
    print(f"machine during the storm: {100 * (total - idle - steal) / total:.0f} % busy, "
          f"{100 * idle / total:.0f} % idle, {100 * steal / total:.0f} % stolen by the hypervisor", file=sys.stderr)


def plot(csv_path, svg_path):
    rows = list(csv.DictReader(open(csv_path)))
    nodes = sorted({r["node"] for r in rows})
    width, height, pad = 720, 360, 50
    max_users = max(int(r["users"]) for r in rows) or 1
    max_pct = max(max(float(r["cpu_pct"]), float(r["mem_pct"])) for r in rows) or 1
    top = max(10, (int(max_pct) // 10 + 1) * 10)
    x = lambda users: pad + (width - 2 * pad) * users / max_users
    y = lambda pct: height - pad - (height - 2 * pad) * pct / top
    colours = ["#0969da", "#cf222e", "#1a7f37", "#8250df"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">Requested CPU and memory per node as users are added</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">user servers running (max {max_users})</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">% of allocatable</text>']
    for pct in range(0, top + 1, max(1, top // 5)):
        parts.append(f'<text x="{pad - 6}" y="{y(pct) + 4}" text-anchor="end">{pct}</text>')
    legend_y = pad
    for i, node in enumerate(nodes):
        mine = [r for r in rows if r["node"] == node]
        for kind, dash in (("cpu_pct", ""), ("mem_pct", ' stroke-dasharray="6 4"')):
            points = " ".join(f"{x(int(r['users'])):.1f},{y(float(r[kind])):.1f}" for r in mine)
            colour = colours[i % len(colours)]
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{points}"/>')
            parts.append(f'<line x1="{width - 190}" y1="{legend_y}" x2="{width - 160}" y2="{legend_y}" stroke="{colour}" stroke-width="2"{dash}/>')
            parts.append(f'<text x="{width - 154}" y="{legend_y + 4}">{node} {"CPU" if kind == "cpu_pct" else "memory"}</text>')
            legend_y += 16
    parts.append("</svg>")
    open(svg_path, "w").write("\n".join(parts) + "\n")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"sample": sample, "report": report, "cpu": cpu, "plot": plot}[command](*args)
