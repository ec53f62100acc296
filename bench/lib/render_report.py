#!/usr/bin/env python3
"""Render the Markdown report of one proxy-bench.sh run (stdlib only).

  render_report.py --meta meta.tsv --results run.jsonl --out report.md

Prints the report to stdout and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

ORDER = ["direct", "nginx", "haproxy", "chp", "edgeproxy"]
NAMES = {"direct": "backend direct", "nginx": "nginx", "haproxy": "HAProxy", "chp": "CHP",
         "edgeproxy": "edgeproxy"}


def f(x, nd=1, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return f"{x:,}{unit}"
    return f"{x:,.{nd}f}{unit}"


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def by_peer(results, scenario):
    d = {r["peer"]: r for r in results if r.get("scenario") == scenario}
    return [(p, d[p]) for p in ORDER if p in d]


SUMMED = ("socket_errors", "non2xx", "requests")


def throughput_medians(results):
    """One row per peer: the median of each numeric figure over the rounds (errors summed)."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if r.get("scenario") == "throughput":
            groups.setdefault(r["peer"], []).append(r)
    out = []
    for p in ORDER:
        rows = groups.get(p)
        if not rows:
            continue
        m = dict(rows[0])
        for k, v in rows[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals = [x[k] for x in rows if isinstance(x.get(k), (int, float))]
                m[k] = sum(vals) if k in SUMMED else statistics.median(vals)
        cpu = [x["proxy_cpu_us_per_req"] for x in rows if x.get("proxy_cpu_us_per_req") is not None]
        rps = [x["rps"] for x in rows]
        m["rounds"] = len(rows)
        m["cpu_range"] = (min(cpu), max(cpu)) if cpu else None
        m["rps_range"] = (min(rps), max(rps))
        out.append((p, m))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    meta = {}
    with open(a.meta) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    results = [json.loads(line) for line in open(a.results) if line.strip()]
    load_core = meta.get("load_core", "0")
    proxy_core = meta.get("proxy_core", "1")
    warnings: list[str] = []
    md: list[str] = []

    md.append(f"# edgehub proxy benchmark — {meta.get('date', '')}\n")
    md.append("One run, one machine, loopback only. Method and caveats: `bench/README.md`.\n")
    md.append(table(["machine", ""], [
        ["CPUs (nproc)", meta.get("host_nproc", "")],
        ["CPU model", meta.get("host_cpu", "")],
        ["kernel", meta.get("host_kernel", "")],
        ["OS", meta.get("host_os", "")],
        ["memory", meta.get("host_mem", "")],
        ["load average at start / end", f"{meta.get('loadavg_start', '')} / {meta.get('loadavg_end', '')}"],
        ["CLK_TCK / RLIMIT_NOFILE", f"{meta.get('clk_tck', '')} / {meta.get('nofile', '')}"],
    ]))
    md.append("")
    vers = [["nginx (backend, peer)", meta.get("v_nginx", "")], ["wrk", meta.get("v_wrk", "")],
            ["Python (clients)", meta.get("v_python", "")]]
    for k, label in (("v_haproxy", "HAProxy"), ("v_node", "node"), ("v_chp", "CHP"),
                     ("v_edgeproxy", "edgeproxy")):
        if k in meta:
            vers.append([label, meta[k]])
    vers.append(["edgehub git", meta.get("git", "")])
    md.append(table(["software", "version"], vers))
    md.append("")
    md.append(table(["setup", ""], [
        ["command", f"`{meta.get('command', '')}`"],
        ["pinning", meta.get("cores", "")],
        ["load", f"wrk {meta.get('wrk_args', '')}"],
        ["peers / scenarios", f"{meta.get('peers', '')} / {meta.get('scenarios', '')}"],
        ["elapsed", meta.get("elapsed", "")],
    ]))
    md.append("")

    # ---------------------------------------------------------------- throughput
    tp = throughput_medians(results)
    key_rows: dict[str, dict] = {}
    if tp:
        d = dict(tp)
        ng = d.get("nginx", {}).get("proxy_cpu_us_per_req")
        hp = d.get("haproxy", {}).get("proxy_cpu_us_per_req")
        best = min([x for x in (ng, hp) if x], default=None)
        best_name = None if best is None else ("nginx" if best == ng else "HAProxy")
        ng_rps = d.get("nginx", {}).get("rps")
        rows = []
        for p, r in tp:
            cpu = r.get("proxy_cpu_us_per_req")
            errs = r.get("socket_errors", 0) + r.get("non2xx", 0)
            foreign = None
            if r.get("proxy_cpu_pct") is not None and f"cpu{proxy_core}_busy_pct" in r:
                foreign = max(0.0, r[f"cpu{proxy_core}_busy_pct"] - r["proxy_cpu_pct"])
                if foreign > 15:
                    warnings.append(f"throughput/{p}: ~{foreign:.0f}% of core {proxy_core} was used by "
                                    "something other than the proxy (other load on the machine)")
            if errs:
                warnings.append(f"throughput/{p}: {r.get('socket_errors', 0)} socket errors, "
                                f"{r.get('non2xx', 0)} non-2xx responses")
            rng = r.get("cpu_range")
            key_rows.setdefault(p, {}).update({
                "cpu": cpu, "cpu_ng": cpu / ng if cpu and ng else None,
                "cpu_best": cpu / best if cpu and best else None, "rps": r["rps"]})
            rows.append([
                NAMES[p], f(r["rps"], 0) + (f" ({f(r['rps_range'][0], 0)}–{f(r['rps_range'][1], 0)})"
                                            if r["rounds"] > 1 else ""),
                f(r.get("p50_ms"), 2), f(r.get("p99_ms"), 2),
                (f"**{f(cpu, 1)}**" + (f" ({f(rng[0], 1)}–{f(rng[1], 1)})" if r["rounds"] > 1 else ""))
                if cpu is not None else "—",
                f(r.get("proxy_cpu_pct"), 0),
                f(cpu / ng, 2) if cpu and ng else "—",
                f(cpu / best, 2) if cpu and best else "—",
                f(r["rps"] / ng_rps, 2) if ng_rps else "—",
                f(r.get("backend_cpu_us_per_req"), 1),
                f(r.get(f"cpu{load_core}_busy_pct"), 0), f(r.get(f"cpu{proxy_core}_busy_pct"), 0),
                f(errs, 0) if errs else "0",
            ])
        md.append("## 1. Throughput and proxy CPU per request\n")
        nr = tp[0][1]["rounds"]
        md.append(f"`GET /` → nginx `return 200 \"ok\"`, wrk {meta.get('wrk_args', '')} on core {load_core} "
                  f"(with the backend); the proxy under test alone on core {proxy_core}, one worker. "
                  + (f"{nr} rounds, peers interleaved, a fresh proxy each time; every figure is the median "
                     "over the rounds, (min–max) in brackets." if nr > 1 else "One round.") + "\n")
        md.append(table([
            "peer", "req/s", "p50 ms", "p99 ms", "proxy CPU µs/req", "proxy CPU % core",
            "CPU/req ÷ nginx", f"CPU/req ÷ best({best_name or 'nginx/HAProxy'})", "req/s ÷ nginx",
            "backend CPU µs/req", f"core {load_core} busy %", f"core {proxy_core} busy %", "errors"], rows))
        md.append("")
        md.append("*proxy CPU µs/req* = Δ(utime+stime) of all the proxy's processes (all threads) over the "
                  "wrk run ÷ requests wrk completed. It is the figure that survives a saturated "
                  f"load core: when *proxy CPU % core* is well below 100, core {load_core} (wrk + backend) "
                  "limited req/s, not the proxy. For *backend direct* the backend's own cost is shown.\n")

    # ---------------------------------------------------------------- routes
    rs = by_peer(results, "routes")
    floor = next((r for r in results if r.get("scenario") == "floor"), None)
    if rs:
        n = rs[0][1]["routes"]
        rows = []
        for p, r in rs:
            key_rows.setdefault(p, {}).update({
                "ratio": r["rps_ratio"], "add_p99": r["add_p99_ms"], "getall": r["getall_median_ms"],
                "rss_n": r["rss_kib_n_after_load"] / 1024})
            rows.append([
                NAMES[p], f(r["wrk1_rps"], 0), f(r["wrkn_rps"], 0), f"**{f(r['rps_ratio'], 2)}**",
                f"{f(r['wrk1_proxy_cpu_us_per_req'], 1)} → {f(r['wrkn_proxy_cpu_us_per_req'], 1)}",
                f"{f(r['wrk1_p99_ms'], 2)} → {f(r['wrkn_p99_ms'], 2)}",
                f"{f(r['load_seconds'], 1)} ({f(r['load_routes_per_s'], 0)}/s)",
                f"**{f(r['add_p50_ms'], 3)}**", f"**{f(r['add_p99_ms'], 3)}**",
                f"**{f(r['getall_median_ms'], 1)}** ({f(r['getall_bytes'] / 1e6, 1)} MB, "
                f"{f(r['getall_routes'], 0)} routes)",
                f(r["rss_kib_1"] / 1024, 1), f"**{f(r['rss_kib_n_after_load'] / 1024, 1)}**",
                f(r["rss_kib_after_getall"] / 1024, 1),
            ])
            for tag in ("1", "n"):
                e = (r.get(f"wrk{tag}_socket_errors") or 0) + (r.get(f"wrk{tag}_non2xx") or 0)
                if e:
                    warnings.append(f"routes/{p}: {e} wrk errors in the {tag}-route run")
        md.append(f"## 2. Route scale ({n:,} routes)\n")
        md.append(f"Routes `/user/u<i>` → backend, loaded through the REST API "
                  f"({rs[0][1]['load_concurrency']} parallel keep-alive connections). wrk hits "
                  f"`/user/u{n // 2}/x`: first with only the default route `/`, then with {n + 1:,} routes. "
                  f"Then {rs[0][1]['add_count']:,} sequential `POST /api/routes/user/add<i>` on one "
                  f"keep-alive connection, then `GET /api/routes` ×{rs[0][1]['getall_reps']} (median).\n")
        md.append(table([
            "peer", "req/s 1 route", f"req/s {n:,} routes", "ratio", "CPU µs/req 1 → N",
            "p99 ms 1 → N", "load s (routes/s)", "add p50 ms", "add p99 ms", "GET all ms (median)",
            "RSS MiB 1 route", f"RSS MiB {n:,} routes", "RSS MiB after GET all"], rows))
        md.append("")
        if floor:
            md.append(f"Harness floor: the same sequential-POST loop against the plain backend "
                      f"(nginx `return 200`) takes p50 {floor['p50_ms']:.3f} ms, p99 {floor['p99_ms']:.3f} ms "
                      "per request; add latencies near this are client-bound.\n")

    # ---------------------------------------------------------------- websocket
    ws = by_peer(results, "ws")
    if ws:
        rows = []
        for p, r in ws:
            key_rows.setdefault(p, {})["kib_tunnel"] = r["kib_per_tunnel"]
            errs = r.get("errors") or {}
            rows.append([
                NAMES[p], f"{r['established']:,} / {r['requested']:,}", f(r["open_seconds"], 1),
                f(r["rss_before_kib"] / 1024, 1), f(r["rss_after_kib"] / 1024, 1),
                f"**{f(r['kib_per_tunnel'], 2)}**", f(r["fds_per_tunnel"], 2),
                f"{r['echo_ok']}/{r['echo_sample']}", f(r["rss_closed_kib"] / 1024, 1),
                "; ".join(f"{k} ×{v}" for k, v in errs.items()) or "0",
            ])
            if r["established"] < r["requested"]:
                warnings.append(f"ws/{p}: only {r['established']} of {r['requested']} tunnels opened")
            if r["echo_ok"] < r["echo_sample"]:
                warnings.append(f"ws/{p}: echo check {r['echo_ok']}/{r['echo_sample']}")
        md.append("## 3. Idle WebSocket tunnels: proxy memory\n")
        md.append("Python asyncio client → proxy → Python asyncio RFC 6455 backend (101 with computed "
                  "Sec-WebSocket-Accept, then idle). VmRSS of the proxy (all processes) after a warm-up, "
                  "then after all tunnels are open and idle for 2 s; *KiB/tunnel* = ΔRSS ÷ tunnels. "
                  "A sample of 100 tunnels is then checked end to end (masked frame → echo), all are "
                  "closed and RSS is read again 2 s later.\n")
        md.append(table(["peer", "tunnels", "open s", "RSS MiB before", "RSS MiB idle",
                         "KiB / tunnel", "proxy fds / tunnel", "echo check", "RSS MiB after close",
                         "errors"], rows))
        md.append("")
    if meta.get("ws_clamped"):
        warnings.append("ws: " + meta["ws_clamped"])

    if key_rows:
        n_routes = rs[0][1]["routes"] if rs else 0
        rows = []
        for p in ORDER:
            k = key_rows.get(p)
            if not k:
                continue
            rows.append([NAMES[p], f(k.get("cpu"), 1), f(k.get("cpu_best"), 2), f(k.get("rps"), 0),
                         f(k.get("ratio"), 2), f(k.get("add_p99"), 3), f(k.get("getall"), 1),
                         f(k.get("rss_n"), 1), f(k.get("kib_tunnel"), 2)])
        summary = ["## Key figures\n", table([
            "peer", "proxy CPU µs/req", "÷ best(nginx,HAProxy)", "req/s",
            f"req/s ratio {n_routes:,} routes ÷ 1", f"add p99 ms @{n_routes:,}",
            f"GET all ms @{n_routes:,}", f"RSS MiB @{n_routes:,} routes", "KiB / idle WS tunnel"], rows), ""]
        at = md.index(next(x for x in md if x.startswith("## ")))
        md[at:at] = summary

    md.append("## Warnings\n")
    md.append("\n".join(f"- {w}" for w in warnings) if warnings else "- none")
    md.append("")
    md.append("## Caveats\n")
    md.append("- Loopback only, 2 cores, client and backend share one core: figures are for comparing "
              "the peers *with each other in this run*, not absolute capacity.\n"
              "- wrk is closed-loop (each connection waits for its response), so p99 under saturation "
              "mostly reflects queueing; a fixed-rate p99 comparison needs an open-loop generator "
              "(edgeload).\n"
              "- Any other load on the machine shows up in the *core busy* columns and in the load "
              "averages above.")
    text = "\n".join(md) + "\n"
    with open(a.out, "w") as fh:
        fh.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
