#!/usr/bin/env python3
"""The Redis route store, measured (bench/route-store.sh runs this; docs/route-store.md).

Three scenarios, on loopback, with a real redis-server and edgeproxy replicas:

  propagation  a route added on replica A, timed until B and C both route requests by it,
               at 10,000 and 100,000 routes in the table
  coldstart    a replica started against a store of 100,000 routes, timed until /ready is 200
  lookup       proxy CPU per request, the same 100,000-route table in memory and in the Redis
               store, wrk against each in interleaved rounds (A B A B ...)

Prints a Markdown report on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Conn as HttpConn, HTTPError, core_ticks, percentile, run_wrk  # noqa: E402

TOKEN = "bench-token"


def log(msg: str):
    print(f"[route-store {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Cluster:
    """A redis-server on a UNIX socket and edgeproxy processes, all in one temp dir."""

    def __init__(self, edgeproxy: str, workdir: str, backend: str, proxy_core: str):
        self.edgeproxy = edgeproxy
        self.dir = workdir
        self.backend = backend
        self.proxy_core = proxy_core
        self.socket = os.path.join(workdir, "redis.sock")
        self.procs: list[subprocess.Popen] = []
        self.redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.redis)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.02)

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-s", self.socket, *args], capture_output=True, text=True)
        return out.stdout.strip()

    def url(self) -> str:
        return f"unix://{self.socket}"

    def proxy(self, name: str, *, store: bool, wait_ready: bool = True, pin: bool = False):
        """Starts edgeproxy on free ports; returns (process, public port, api port)."""
        log_path = os.path.join(self.dir, f"{name}.log")
        # The start-up lines (at info) name the ports.
        args = [self.edgeproxy, "--ip", "127.0.0.1", "--port", "0", "--api-ip", "127.0.0.1",
                "--api-port", "0", "--log-level", "info", "--workers", "1"]
        if store:
            args += ["--storage-backend", "redis", "--storage-url", self.url()]
        if pin:
            args = ["taskset", "-c", self.proxy_core] + args
        env = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=TOKEN)
        started = time.monotonic()
        proc = subprocess.Popen(args, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        public = api = None
        while public is None or api is None:
            text = open(log_path).read()
            for line in text.splitlines():
                if "Proxying " in line:
                    public = int(line.split("Proxying ")[1].split()[0].rsplit(":", 1)[1])
                if "Proxy API at " in line:
                    api = int(line.split("Proxy API at ")[1].split("/api")[0].rsplit(":", 1)[1])
            if proc.poll() is not None:
                raise SystemExit(f"edgeproxy {name} exited:\n{text}")
            if time.monotonic() - started > 15:
                raise SystemExit(f"edgeproxy {name} did not start:\n{text}")
            time.sleep(0.002)
        ready_s = None
        if wait_ready:
            ready_s = wait_ready_since(api, started)
        return proc, public, api, ready_s

    def close(self):
        for p in reversed(self.procs):
            p.kill()
            p.wait()


def wait_ready_since(api: int, started: float, limit: float = 30) -> float:
    conn = HttpConn("127.0.0.1", api)
    while True:
        try:
            status, _, _ = conn.request("GET", "/ready")
            if status == 200:
                return time.monotonic() - started
        except (OSError, HTTPError):
            conn = HttpConn("127.0.0.1", api)
        if time.monotonic() - started > limit:
            raise SystemExit("replica not ready in time")
        time.sleep(0.001)


def api_call(api: int, method: str, path: str, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{api}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def load_table(api: int, n: int, backend: str, prefix: str = "/user/u"):
    add = {f"{prefix}{i}": {"target": backend, "user": f"u{i}", "jupyterhub": True} for i in range(n)}
    t = time.monotonic()
    status, body = api_call(api, "POST", "/api/batch", {"replace": True, "add": add})
    assert status == 200, body
    return time.monotonic() - t


def propagation(cluster: Cluster, sizes: list[int], samples: int) -> list[dict]:
    _, _, a_api, _ = cluster.proxy("a", store=True)
    _, b_pub, _, _ = cluster.proxy("b", store=True)
    _, c_pub, _, _ = cluster.proxy("c", store=True)
    a = HttpConn("127.0.0.1", a_api)
    out = []
    for size in sizes:
        took = load_table(a_api, size, cluster.backend)
        log(f"propagation: {size} routes loaded in {took:.2f} s")
        # Let B and C apply the big batch before timing anything.
        for pub in (b_pub, c_pub):
            wait_routed(HttpConn("127.0.0.1", pub), f"/user/u{size - 1}/", 30)
        b, c = HttpConn("127.0.0.1", b_pub), HttpConn("127.0.0.1", c_pub)
        acks, seen = [], []
        for i in range(samples):
            key = f"/bench/s{size}-{i}"
            body = json.dumps({"target": cluster.backend}).encode()
            t0 = time.perf_counter()
            status, _, _ = a.request("POST", f"/api/routes{key}",
                                     {"Authorization": f"token {TOKEN}"}, body)
            t_ack = time.perf_counter()
            assert status == 201, status
            pending = {"b": b, "c": c}
            while pending:
                for name, conn in list(pending.items()):
                    status, _, _ = conn.request("GET", f"{key}/x")
                    if status == 200:
                        del pending[name]
                if time.perf_counter() - t0 > 5:
                    raise SystemExit(f"{key} not on {sorted(pending)} after 5 s")
            seen.append((time.perf_counter() - t0) * 1000)
            acks.append((t_ack - t0) * 1000)
        seen.sort()
        acks.sort()
        row = {"routes": size, "samples": samples,
               "ack_p50_ms": percentile(acks, 50), "ack_p99_ms": percentile(acks, 99),
               "p50_ms": percentile(seen, 50), "p99_ms": percentile(seen, 99), "max_ms": seen[-1]}
        log(f"propagation at {size}: {row}")
        out.append(row)
    return out


def wait_routed(conn: HttpConn, path: str, limit: float):
    deadline = time.monotonic() + limit
    while conn.request("GET", path)[0] != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never routed")
        time.sleep(0.01)


def coldstart(cluster: Cluster, routes: int, runs: int) -> dict:
    _, _, a_api, _ = cluster.proxy("writer", store=True)
    load_table(a_api, routes, cluster.backend)
    times = []
    for i in range(runs):
        proc, pub, _, ready = cluster.proxy(f"cold{i}", store=True)
        # Ready means routed: the last route answers at once.
        assert HttpConn("127.0.0.1", pub).request("GET", f"/user/u{routes - 1}/")[0] == 200
        times.append(ready * 1000)
        proc.kill()
        proc.wait()
        log(f"cold start {i + 1}/{runs}: ready in {ready * 1000:.0f} ms")
    return {"routes": routes, "runs_ms": times, "median_ms": statistics.median(times)}


def lookup(cluster: Cluster, routes: int, rounds: int, duration: float, load_core: str) -> dict:
    mem_proc, mem_pub, mem_api, _ = cluster.proxy("memory", store=False, pin=True)
    load_table(mem_api, routes, cluster.backend)
    red_proc, red_pub, red_api, _ = cluster.proxy("redis", store=True, pin=True)
    load_table(red_api, routes, cluster.backend)
    path = f"/user/u{routes // 2}/api/status"
    for pub in (mem_pub, red_pub):
        wait_routed(HttpConn("127.0.0.1", pub), path, 30)
    peers = {"memory": (mem_proc, mem_pub), "redis": (red_proc, red_pub)}
    runs = {name: [] for name in peers}
    for r in range(rounds):
        for name, (proc, pub) in peers.items():
            res = run_wrk(f"http://127.0.0.1:{pub}{path}", duration=duration, connections=50,
                          threads=1, core=load_core, proxy_pids=[proc.pid])
            if res.get("non2xx"):
                raise SystemExit(f"{name}: {res['non2xx']} non-2xx responses")
            steal = max((v for k, v in res.items() if k.endswith("_steal_pct") and k != "cpu_steal_pct"),
                        default=0.0)
            # The host may be shared: what else ran on the proxy's core while it was measured
            # (the core's busy time less the proxy's own CPU time).
            core_busy = res.get(f"cpu{cluster.proxy_core}_busy_pct")
            other = None if core_busy is None else max(0.0, core_busy - res["proxy_cpu_pct"])
            runs[name].append({"rps": res["requests"] / res["wall_seconds"],
                               "cpu_us": res["proxy_cpu_us_per_req"], "steal_pct": steal,
                               "other_on_proxy_core_pct": other})
            log(f"lookup round {r + 1} {name}: {runs[name][-1]}")
    med = {n: statistics.median(x["cpu_us"] for x in v) for n, v in runs.items()}
    # Each round runs the two back to back, so a round's ratio cancels what drifts across the
    # run (other guests on the host, frequency); the median of those is the figure.
    paired = [r["cpu_us"] / m["cpu_us"] for r, m in zip(runs["redis"], runs["memory"])]
    return {"routes": routes, "path": path, "rounds": runs, "median_cpu_us": med,
            "round_ratios": paired, "ratio": statistics.median(paired)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--edgeproxy", required=True)
    p.add_argument("--backend", required=True, help="URL of the backend every route points at")
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--coldstart-routes", type=int, default=100000)
    p.add_argument("--coldstart-runs", type=int, default=5)
    p.add_argument("--lookup-routes", type=int, default=100000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--load-core", default="0")
    p.add_argument("--proxy-core", default="1")
    p.add_argument("--scenarios", default="propagation,coldstart,lookup")
    p.add_argument("--json", help="also write the raw figures here")
    a = p.parse_args()
    scenarios = a.scenarios.split(",")
    report = {}
    with tempfile.TemporaryDirectory(prefix="route-store-bench-") as tmp:
        for scenario in scenarios:
            workdir = os.path.join(tmp, scenario)
            os.makedirs(workdir)
            cluster = Cluster(a.edgeproxy, workdir, a.backend, a.proxy_core)
            before = core_ticks()
            try:
                if scenario == "propagation":
                    report[scenario] = propagation(cluster, [int(s) for s in a.sizes.split(",")], a.samples)
                elif scenario == "coldstart":
                    report[scenario] = coldstart(cluster, a.coldstart_routes, a.coldstart_runs)
                elif scenario == "lookup":
                    report[scenario] = lookup(cluster, a.lookup_routes, a.rounds, a.duration, a.load_core)
                else:
                    raise SystemExit(f"unknown scenario {scenario}")
            finally:
                cluster.close()
            report[f"{scenario}_steal_pct"] = steal_since(before)
            # Other work on a shared host shows in the load average, not in steal.
            report[f"{scenario}_loadavg"] = os.getloadavg()[0]
    print(markdown(report))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


def steal_since(before: dict) -> float:
    """The largest per-core steal % since `before` (time the hypervisor ran someone else)."""
    worst = 0.0
    for name, (_, total1, steal1) in core_ticks().items():
        if name == "cpu" or name not in before:
            continue
        _, total0, steal0 = before[name]
        worst = max(worst, 100.0 * (steal1 - steal0) / max(total1 - total0, 1))
    return worst


def markdown(report: dict) -> str:
    out = []
    for row in report.get("propagation", []):
        if not out:
            out += ["| routes | add acknowledged by A p50 / p99 | visible on B and C p50 / p99 / max |",
                    "| --- | --- | --- |"]
        out.append(f"| {row['routes']:,} | {row['ack_p50_ms']:.2f} / {row['ack_p99_ms']:.2f} ms "
                   f"| {row['p50_ms']:.2f} / {row['p99_ms']:.2f} / {row['max_ms']:.2f} ms |")
    if "propagation" in report:
        out += ["", f"{report['propagation'][0]['samples']} adds per table size, one at a time; "
                    f"steal during the scenario: {report['propagation_steal_pct']:.1f} % (max per core); "
                    f"load average {report['propagation_loadavg']:.2f}"]
    if "coldstart" in report:
        c = report["coldstart"]
        runs = ", ".join(f"{t:.0f}" for t in c["runs_ms"])
        out += ["", f"Cold start with {c['routes']:,} routes in the store, spawn to `/ready` 200: "
                    f"median {c['median_ms']:.0f} ms (runs: {runs} ms); steal "
                    f"{report['coldstart_steal_pct']:.1f} %; load average {report['coldstart_loadavg']:.2f}"]
    if "lookup" in report:
        lk = report["lookup"]
        out += ["", f"Proxied requests at {lk['routes']:,} routes (`{lk['path']}`), edgeproxy "
                    "`--workers 1` pinned, wrk -c 50 on the other core, rounds interleaved:", "",
                "| store | CPU µs per request, each round | req/s, each round | steal % max "
                "| other load on the proxy core %, each round |",
                "| --- | --- | --- | --- | --- |"]
        for name, runs in lk["rounds"].items():
            other = ", ".join("?" if r["other_on_proxy_core_pct"] is None else f"{r['other_on_proxy_core_pct']:.0f}"
                              for r in runs)
            out.append(f"| {name} | " + ", ".join(f"{r['cpu_us']:.1f}" for r in runs)
                       + " | " + ", ".join(f"{r['rps']:,.0f}" for r in runs)
                       + f" | {max(r['steal_pct'] for r in runs):.1f} | {other} |")
        ratios = ", ".join(f"{r:.3f}" for r in lk["round_ratios"])
        out += ["", f"CPU per request, Redis store / memory: **{lk['ratio']:.3f}** (median of the "
                    f"rounds' ratios: {ratios}; ratio of the medians "
                    f"{lk['median_cpu_us']['redis'] / lk['median_cpu_us']['memory']:.3f}); "
                    f"load average {report['lookup_loadavg']:.2f}"]
    return "\n".join(out)


if __name__ == "__main__":
    main()
