#!/usr/bin/env python3
"""Route-scale scenario for proxies that speak the CHP REST API (stdlib only).

  route_bench.py scale --peer chp --port P --api-port A --token T \
      --backend-url http://127.0.0.1:B --proxy-pids PID [--routes 100000] ...
  route_bench.py floor --port B [--count 1000]

`scale`, against two instances of the proxy started the same way, both with only their
default route `/`: the main one (--port/--api-port) and a reference one (--one-port):
  1. warm the main instance with wrk at 1 route (--warmup s), read its RSS
  2. load N routes /user/u<i> -> backend into the main instance through the API, using
     several keep-alive connections in parallel (asyncio, raw HTTP/1.1)
  3. --rounds rounds of wrk against /user/u<N/2>/x, alternating the reference instance
     (1 route, served by `/`) and the main one (N+1 routes): 1,N / N,1 / 1,N ...
     -> req/s and CPU/req, median and min-max each, ratio of the medians
  4. 1,000 sequential POSTs of new routes on one keep-alive connection -> p50/p99 ms
  5. GET /api/routes, 5 times                                         -> median ms, size
  6. VmRSS of the main instance at 1 route, after N routes and the wrk runs, after the GETs
`floor` times the same sequential-POST loop against the plain backend
(nginx `return 200`), i.e. the cost of the client and loopback alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def log(msg: str):
    print(f"  [routes] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- async loader


async def _read_response(r: asyncio.StreamReader) -> int:
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if status in (204, 304) or 100 <= status < 200:
        return status
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await r.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            await r.readexactly(size + 2)
    elif "content-length" in hdrs:
        await r.readexactly(int(hdrs["content-length"]))
    if hdrs.get("connection", "").lower() == "close":
        return -status  # caller reconnects
    return status


async def load_routes(host: str, port: int, token: str, n: int, target: str, conc: int,
                      prefix: str = "/user/u") -> dict:
    body = json.dumps({"target": target}).encode()
    hosthdr = f"{host}:{port}"
    todo = iter(range(n))
    statuses: dict[int, int] = {}
    reconnects = 0

    async def connect():
        r, w = await asyncio.open_connection(host, port, limit=1 << 20)
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return r, w

    async def worker():
        nonlocal reconnects
        r, w = await connect()
        for i in todo:
            req = common.Conn.build("POST", f"/api/routes{prefix}{i}", hosthdr,
                                    {"Authorization": f"token {token}",
                                     "Content-Type": "application/json"}, body)
            for attempt in range(3):
                try:
                    w.write(req)
                    st = await _read_response(r)
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    if attempt == 2:
                        raise
                    reconnects += 1
                    w.close()
                    r, w = await connect()
            if st < 0:  # server said Connection: close
                st = -st
                reconnects += 1
                w.close()
                r, w = await connect()
            statuses[st] = statuses.get(st, 0) + 1
        w.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    dt = time.perf_counter() - t0
    return {"loaded": n, "load_seconds": dt, "load_routes_per_s": n / dt,
            "load_statuses": {str(k): v for k, v in statuses.items()},
            "load_concurrency": conc, "load_reconnects": reconnects}


# --------------------------------------------------------------------------- sequential ops


def sequential_posts(port: int, token: str, count: int, target: str, prefix: str,
                     expect=(200, 201)) -> dict:
    c = common.Conn("127.0.0.1", port)
    body = json.dumps({"target": target}).encode()
    hdrs = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    lat = []
    bad = 0
    t0 = time.perf_counter()
    for i in range(count):
        s = time.perf_counter()
        st, h, _ = c.request("POST", f"{prefix}{i}", hdrs, body)
        lat.append((time.perf_counter() - s) * 1e3)
        if st not in expect:
            bad += 1
        if h.get("connection", "").lower() == "close":
            c.close()
            c = common.Conn("127.0.0.1", port)
    total = time.perf_counter() - t0
    c.close()
    lat.sort()
    return {"count": count, "p50_ms": common.percentile(lat, 50), "p99_ms": common.percentile(lat, 99),
            "mean_ms": statistics.fmean(lat), "max_ms": lat[-1], "total_s": total, "bad_status": bad}


def get_all(port: int, token: str, reps: int) -> dict:
    c = common.Conn("127.0.0.1", port, timeout=120)
    hdrs = {"Authorization": f"token {token}"}
    times, size, body = [], 0, b""
    for _ in range(reps):
        s = time.perf_counter()
        st, h, body = c.request("GET", "/api/routes", hdrs)
        times.append((time.perf_counter() - s) * 1e3)
        if st != 200:
            raise RuntimeError(f"GET /api/routes -> {st}")
        size = len(body)
        if h.get("connection", "").lower() == "close":
            c.close()
            c = common.Conn("127.0.0.1", port, timeout=120)
    c.close()
    routes = len(json.loads(body))
    return {"getall_reps": reps, "getall_median_ms": statistics.median(times),
            "getall_min_ms": min(times), "getall_max_ms": max(times),
            "getall_bytes": size, "getall_routes": routes}


# --------------------------------------------------------------------------- commands


WRK_KEYS = ("rps", "p50_ms", "p99_ms", "proxy_cpu_us_per_req", "proxy_cpu_pct", "requests",
            "socket_errors", "non2xx", "cpu0_busy_pct", "cpu1_busy_pct", "cpu0_steal_pct",
            "cpu1_steal_pct")
SUMMED = ("requests", "socket_errors", "non2xx")


def summarize_rounds(runs: list[dict], tag: str) -> dict:
    """wrk<tag>_<key>: median over the rounds (errors and requests summed), plus _min/_max for
    req/s and CPU/req, and the per-round figures and outputs."""
    out: dict = {}
    for k in WRK_KEYS:
        vals = [w[k] for w in runs if isinstance(w.get(k), (int, float))]
        if not vals:
            out[f"wrk{tag}_{k}"] = None
            continue
        out[f"wrk{tag}_{k}"] = sum(vals) if k in SUMMED else statistics.median(vals)
        if k in ("rps", "proxy_cpu_us_per_req", "p99_ms"):
            out[f"wrk{tag}_{k}_min"] = min(vals)
            out[f"wrk{tag}_{k}_max"] = max(vals)
    out[f"wrk{tag}_rounds"] = [{k: w.get(k) for k in WRK_KEYS} for w in runs]
    out[f"wrk{tag}_outputs"] = [w["wrk_output"] for w in runs]
    return out


def cmd_scale(a):
    pids = common.parse_pids(a.proxy_pids)
    one_pids = common.parse_pids(a.one_proxy_pids)
    backend = common.parse_pids(a.backend_pids)
    res: dict = {"scenario": "routes", "peer": a.peer, "routes": a.routes, "rounds": a.rounds,
                 "method": "two instances started the same way: 1 route vs N+1 routes, "
                           "wrk alternating between them"}
    mid = a.routes // 2
    path = f"/user/u{mid}/x"
    inst = {"1": (f"http://127.0.0.1:{a.one_port}{path}", one_pids),
            "n": (f"http://127.0.0.1:{a.port}{path}", pids)}

    def wrk(tag, rnd):
        url, ppids = inst[tag]
        if a.warmup > 0:
            common.run_wrk(url, duration=a.warmup, connections=a.connections, threads=a.threads,
                           core=a.core)
        w = common.run_wrk(url, duration=a.duration, connections=a.connections, threads=a.threads,
                           core=a.core, proxy_pids=ppids, backend_pids=backend)
        label = "1 route" if tag == "1" else f"{a.routes + 1} routes"
        errs = w["socket_errors"] + w["non2xx"]
        steal = max(w.get("cpu0_steal_pct") or 0, w.get("cpu1_steal_pct") or 0)
        log(f"{a.peer} r{rnd} {label:>14}: {w['rps']:.0f} req/s, p99 {w.get('p99_ms', 0):.2f} ms, "
            f"{w['proxy_cpu_us_per_req']:.1f} us CPU/req" + (f", STEAL {steal:.0f}%" if steal >= 5 else "")
            + (f", {errs} ERRORS" if errs else ""))
        return w

    res["rss_kib_1"] = common.rss_kib(pids)
    if a.warmup > 0:   # the main instance serves traffic at 1 route before loading, as it used to
        common.run_wrk(inst["n"][0], duration=a.warmup, connections=a.connections,
                       threads=a.threads, core=a.core)
    res["rss_kib_1_after_load"] = common.rss_kib(pids)

    log(f"{a.peer}: loading {a.routes} routes over {a.load_concurrency} connections ...")
    res.update(asyncio.run(load_routes("127.0.0.1", a.api_port, a.token, a.routes,
                                       a.backend_url, a.load_concurrency)))
    log(f"{a.peer}: loaded in {res['load_seconds']:.1f} s ({res['load_routes_per_s']:.0f} routes/s)"
        f" statuses {res['load_statuses']}")
    bad = sum(v for k, v in res["load_statuses"].items() if k not in ("200", "201"))
    if bad:
        raise SystemExit(f"{bad} route POSTs failed: {res['load_statuses']}")
    res["rss_kib_n"] = common.rss_kib(pids)

    runs: dict[str, list[dict]] = {"1": [], "n": []}
    for rnd in range(1, a.rounds + 1):
        for tag in (("1", "n") if rnd % 2 else ("n", "1")):
            runs[tag].append(wrk(tag, rnd))
    res["rss_kib_n_after_load"] = common.rss_kib(pids)
    res["rss_kib_1_instance"] = common.rss_kib(one_pids)
    for tag in ("1", "n"):
        res.update(summarize_rounds(runs[tag], tag))
    res["rps_ratio"] = res["wrkn_rps"] / res["wrk1_rps"]
    res["cpu_ratio"] = res["wrkn_proxy_cpu_us_per_req"] / res["wrk1_proxy_cpu_us_per_req"]
    # per-round paired ratios (N-route run / 1-route run of the same round): their spread
    res["rps_ratio_rounds"] = [n["rps"] / o["rps"] for o, n in zip(runs["1"], runs["n"])]
    res["cpu_ratio_rounds"] = [n["proxy_cpu_us_per_req"] / o["proxy_cpu_us_per_req"]
                               for o, n in zip(runs["1"], runs["n"])]
    log(f"{a.peer}: req/s N/1 = {res['rps_ratio']:.3f} (ratio of medians over {a.rounds} round(s); "
        f"per round {min(res['rps_ratio_rounds']):.3f}-{max(res['rps_ratio_rounds']):.3f}), "
        f"CPU/req N/1 = {res['cpu_ratio']:.3f}")

    adds = sequential_posts(a.api_port, a.token, a.adds, a.backend_url, "/api/routes/user/add")
    res.update({f"add_{k}": v for k, v in adds.items()})
    log(f"{a.peer}: {a.adds} sequential adds: p50 {adds['p50_ms']:.3f} ms, p99 {adds['p99_ms']:.3f} ms")
    if adds["bad_status"]:
        raise SystemExit(f"{adds['bad_status']} sequential POSTs failed")

    res.update(get_all(a.api_port, a.token, a.getall_reps))
    log(f"{a.peer}: GET /api/routes ({res['getall_routes']} routes, {res['getall_bytes'] / 1e6:.1f} MB):"
        f" median {res['getall_median_ms']:.1f} ms")
    res["rss_kib_after_getall"] = common.rss_kib(pids)
    res["hwm_kib"] = common.hwm_kib(pids)
    common.emit(res, a.out)


def cmd_floor(a):
    r = sequential_posts(a.port, "x", a.count, "http://127.0.0.1:1", "/api/routes/floor/",
                         expect=(200,))
    r.update({"scenario": "floor", "peer": "backend"})
    log(f"harness floor ({a.count} POSTs to nginx return 200): p50 {r['p50_ms']:.3f} ms, "
        f"p99 {r['p99_ms']:.3f} ms")
    common.emit(r, a.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("scale")
    p.add_argument("--peer", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api-port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--backend-url", required=True)
    p.add_argument("--proxy-pids", required=True)
    p.add_argument("--one-port", type=int, required=True,
                   help="proxy port of the reference instance that keeps only its default route")
    p.add_argument("--one-proxy-pids", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend-pids", default="")
    p.add_argument("--routes", type=int, default=100_000)
    p.add_argument("--adds", type=int, default=1000)
    p.add_argument("--getall-reps", type=int, default=5)
    p.add_argument("--load-concurrency", type=int, default=16)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--core", default="0")
    p.add_argument("--out")
    p.set_defaults(f=cmd_scale)
    p = sub.add_parser("floor")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--out")
    p.set_defaults(f=cmd_floor)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
