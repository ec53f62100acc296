#!/usr/bin/env python3
"""Small CLI used by proxy-bench.sh (stdlib only).

  benchctl.py freeports N --state FILE     print N free 127.0.0.1 TCP ports (20000-32767)
  benchctl.py waitport PORT... [--pid P] [--timeout S]
  benchctl.py pids ROOTPID                 root + descendants, comma-separated
  benchctl.py httpcheck URL [--expect TEXT]
  benchctl.py wrk --url U --peer NAME --scenario S --out FILE [...]
  benchctl.py hey --url U --peer NAME --rate R --out FILE [...]   warm-up + one fixed-rate run
  benchctl.py edgeload --edgeload BIN --url U --peer NAME --rate R --out FILE [...]
                                           one open-loop fixed-rate run (its own warm-up)
  benchctl.py rss PIDS
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def cmd_freeports(a):
    used = set()
    if a.state and os.path.exists(a.state):
        used = {int(x) for x in open(a.state).read().split()}
    got = []
    rnd = random.Random()
    for _ in range(5000):
        if len(got) == a.n:
            break
        # below the ephemeral range (32768-60999) so that client sockets never take them
        p = rnd.randrange(20000, 32700)
        if p in used or p in got:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        got.append(p)
    if len(got) < a.n:
        sys.exit("could not find free ports")
    if a.state:
        with open(a.state, "a") as f:
            f.write(" ".join(map(str, got)) + "\n")
    print(" ".join(map(str, got)))


def cmd_waitport(a):
    deadline = time.monotonic() + a.timeout
    for port in a.ports:
        while True:
            if a.pid and not os.path.exists(f"/proc/{a.pid}"):
                sys.exit(f"process {a.pid} exited before port {port} was ready")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"port {port} not ready after {a.timeout}s")
            time.sleep(0.05)


def cmd_pids(a):
    print(",".join(map(str, common.descendants(a.root))))


def cmd_rss(a):
    print(common.rss_kib(common.parse_pids(a.pids)))


def cmd_httpcheck(a):
    from urllib.parse import urlsplit
    u = urlsplit(a.url)
    deadline = time.monotonic() + a.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            c = common.Conn(u.hostname, u.port, timeout=5)
            st, _, body = c.request("GET", u.path or "/")
            c.close()
            if st == 200 and a.expect.encode() in body:
                return
            last = f"status {st} body {body[:200]!r}"
        except Exception as e:  # noqa: BLE001
            last = repr(e)
        time.sleep(0.1)
    sys.exit(f"httpcheck {a.url} failed: {last}")


def cmd_wrk(a):
    proxy = common.parse_pids(a.proxy_pids)
    backend = common.parse_pids(a.backend_pids)
    res = common.run_wrk(a.url, duration=a.duration, connections=a.connections,
                         threads=a.threads, core=a.core, proxy_pids=proxy, backend_pids=backend)
    if a.proxy_pids:
        res["proxy_rss_kib"] = common.rss_kib(proxy)
    res.update({"scenario": a.scenario, "peer": a.peer, "round": a.round, "duration": a.duration,
                "connections": a.connections, "threads": a.threads})
    if a.out:
        with open(a.out, "a") as f:
            import json
            f.write(json.dumps(res, sort_keys=True) + "\n")
    pc = res.get("proxy_cpu_us_per_req")
    print(f"  {a.peer:<10} r{a.round} {res['rps']:>10.0f} req/s  p50 {res.get('p50_ms', 0):.2f} ms  "
          f"p99 {res.get('p99_ms', 0):.2f} ms  "
          + (f"proxy {pc:.1f} us/req ({res['proxy_cpu_pct']:.0f}% cpu)" if pc is not None else
             f"backend {res['backend_cpu_us_per_req']:.1f} us/req")
          + (f"  STEAL {steal:.0f}%" if (steal := max_steal(res)) >= 5 else "")
          + (f"  ERRORS socket={res['socket_errors']} non2xx={res['non2xx']}"
             if res["socket_errors"] or res["non2xx"] else ""),
          file=sys.stderr)


def max_steal(res: dict) -> float:
    """Largest per-core steal % of one measured run (time the hypervisor ran someone else)."""
    return max((v for k, v in res.items() if k.endswith("_steal_pct") and k != "cpu_steal_pct"),
               default=0.0)


def cmd_hey(a):
    proxy = common.parse_pids(a.proxy_pids)
    backend = common.parse_pids(a.backend_pids)
    qps = a.rate / a.connections   # hey -q is per worker
    if a.warmup > 0:
        w = common.run_hey(a.url, duration=a.warmup, connections=a.connections,
                           qps_per_worker=qps, core=a.core)
        if w["responses"] == 0:
            raise SystemExit(f"hey warm-up against {a.url} got no response:\n{w['hey_output']}")
    res = common.run_hey(a.url, duration=a.duration, connections=a.connections,
                         qps_per_worker=qps, core=a.core, proxy_pids=proxy, backend_pids=backend)
    if a.proxy_pids:
        res["proxy_rss_kib"] = common.rss_kib(proxy)
    res.update({"scenario": "fixedrate", "peer": a.peer, "round": a.round, "duration": a.duration,
                "warmup": a.warmup, "connections": a.connections, "target_rps": a.rate,
                "qps_per_worker": qps, "achieved_ratio": res["rps"] / a.rate})
    if a.out:
        with open(a.out, "a") as f:
            import json
            f.write(json.dumps(res, sort_keys=True) + "\n")

    def ms(k):
        v = res.get(k)
        return "—" if v is None else f"{v:.2f}"

    pc = res.get("proxy_cpu_us_per_req")
    print(f"  {a.peer:<10} r{a.round} @{a.rate:>6}/s {res['rps']:>8.0f} req/s  p50 {ms('p50_ms')}  "
          f"p90 {ms('p90_ms')}  p99 {ms('p99_ms')}  max {ms('slowest_ms')} ms  "
          + (f"proxy {pc:.1f} us/req ({res['proxy_cpu_pct']:.0f}% cpu)" if pc is not None else
             f"backend {res['backend_cpu_us_per_req']:.1f} us/req")
          + f"  load core {res.get(f'cpu{a.core}_busy_pct', 0):.0f}%"
          + (f"  STEAL {steal:.0f}%" if (steal := max_steal(res)) >= 5 else "")
          + (f"  SHORT: {100 * res['achieved_ratio']:.0f}% of the target rate"
             if res["achieved_ratio"] < 0.95 else "")
          + (f"  ERRORS non200={res['non200']} transport={res['transport_errors']}"
             if res["error_count"] else ""),
          file=sys.stderr)


def cmd_edgeload(a):
    import json
    import tempfile
    proxy = common.parse_pids(a.proxy_pids)
    backend = common.parse_pids(a.backend_pids)
    with tempfile.NamedTemporaryFile(prefix="edgeload-", suffix=".json") as tmp:
        res = common.run_edgeload(a.edgeload, a.url, rate=a.rate, duration=a.duration,
                                  warmup=a.warmup, max_connections=a.max_connections, core=a.core,
                                  json_path=tmp.name, proxy_pids=proxy, backend_pids=backend)
    if a.proxy_pids:
        res["proxy_rss_kib"] = common.rss_kib(proxy)
    res.update({"scenario": "fixedrate-edgeload", "peer": a.peer, "round": a.round,
                "duration": a.duration, "warmup": a.warmup, "max_connections": a.max_connections,
                "target_rps": a.rate, "achieved_ratio": res["rps"] / a.rate})
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(res, sort_keys=True) + "\n")
    pc = res.get("proxy_cpu_us_per_req")
    print(f"  {a.peer:<10} r{a.round} @{a.rate:>6}/s {res['rps']:>8.0f} req/s  corrected p50 "
          f"{res['corrected_p50_ms']:.3f}  p99 {res['corrected_p99_ms']:.3f}  p99.9 "
          f"{res['corrected_p99_9_ms']:.3f} ms (service p99 {res['service_time_p99_ms']:.3f})  "
          f"missed {res['missed']}  late {res['late']}  "
          + (f"proxy {pc:.1f} us/req ({res['proxy_cpu_pct']:.0f}% cpu)" if pc is not None else
             f"backend {res['backend_cpu_us_per_req']:.1f} us/req")
          + f"  load core {res.get(f'cpu{a.core}_busy_pct', 0):.0f}%"
          + (f"  STEAL {steal:.0f}%" if (steal := max_steal(res)) >= 5 else "")
          + (f"  ERRORS {res['errors']}" if res["error_count"] else ""),
          file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("freeports"); p.add_argument("n", type=int); p.add_argument("--state")
    p.set_defaults(f=cmd_freeports)
    p = sub.add_parser("waitport"); p.add_argument("ports", type=int, nargs="+")
    p.add_argument("--pid", type=int); p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(f=cmd_waitport)
    p = sub.add_parser("pids"); p.add_argument("root", type=int); p.set_defaults(f=cmd_pids)
    p = sub.add_parser("rss"); p.add_argument("pids"); p.set_defaults(f=cmd_rss)
    p = sub.add_parser("httpcheck"); p.add_argument("url"); p.add_argument("--expect", default="ok")
    p.add_argument("--timeout", type=float, default=10); p.set_defaults(f=cmd_httpcheck)
    p = sub.add_parser("wrk")
    p.add_argument("--url", required=True); p.add_argument("--peer", required=True)
    p.add_argument("--scenario", default="throughput"); p.add_argument("--out")
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--duration", type=int, default=10); p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=1); p.add_argument("--core", default="0")
    p.add_argument("--proxy-pids", default=""); p.add_argument("--backend-pids", default="")
    p.set_defaults(f=cmd_wrk)
    p = sub.add_parser("hey")
    p.add_argument("--url", required=True); p.add_argument("--peer", required=True)
    p.add_argument("--rate", type=int, required=True); p.add_argument("--out")
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--duration", type=int, default=10); p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=int, default=50); p.add_argument("--core", default="0")
    p.add_argument("--proxy-pids", default=""); p.add_argument("--backend-pids", default="")
    p.set_defaults(f=cmd_hey)
    p = sub.add_parser("edgeload")
    p.add_argument("--edgeload", required=True)
    p.add_argument("--url", required=True); p.add_argument("--peer", required=True)
    p.add_argument("--rate", type=int, required=True); p.add_argument("--out")
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--duration", type=int, default=10); p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-connections", type=int, default=1000); p.add_argument("--core", default="0")
    p.add_argument("--proxy-pids", default=""); p.add_argument("--backend-pids", default="")
    p.set_defaults(f=cmd_edgeload)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
