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

ORDER = ["direct", "nginx", "haproxy", "chp", "edgeproxy", "floor-epoll", "floor-uring"]
NAMES = {"direct": "backend direct", "nginx": "nginx", "haproxy": "HAProxy", "chp": "CHP",
         "edgeproxy": "edgeproxy", "floor-epoll": "floor: byte relay, epoll",
         "floor-uring": "floor: byte relay, io_uring"}


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


def throughput_medians(results, scenario="throughput"):
    """One row per peer: the median of each numeric figure over the rounds (errors summed)."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if r.get("scenario") == scenario:
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


FR_SUMMED = ("error_count", "non200", "transport_errors", "requests", "responses")
FR_RANGES = ("rps", "p99_ms", "proxy_cpu_us_per_req", "backend_cpu_us_per_req")
SHORT = 0.95   # achieved < 95 % of the target rate: the peer did not sustain it


EL_RANGES = ("rps", "corrected_p50_ms", "corrected_p99_ms", "corrected_p99_9_ms", "proxy_cpu_us_per_req",
             "backend_cpu_us_per_req")
EL_SUMMED = ("error_count", "missed", "late", "sent", "requests_all")


def fixedrate_medians(results, scenario="fixedrate"):
    """{rate: [(peer, row)]}: per rate and peer, the median of each numeric figure over the rounds
    (error and request counts summed), min/max of the main ones, and how many rounds fell short."""
    summed, ranges = (FR_SUMMED, FR_RANGES) if scenario == "fixedrate" else (EL_SUMMED, EL_RANGES)
    groups: dict[int, dict[str, list[dict]]] = {}
    for r in results:
        if r.get("scenario") == scenario:
            groups.setdefault(r["target_rps"], {}).setdefault(r["peer"], []).append(r)
    out = {}
    for rate in sorted(groups):
        rows = []
        for p in ORDER:
            runs = groups[rate].get(p)
            if not runs:
                continue
            m = {"peer": p, "target_rps": rate, "rounds": len(runs)}
            keys = {k for x in runs for k, v in x.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for k in keys:
                vals = [x[k] for x in runs if isinstance(x.get(k), (int, float))
                        and not isinstance(x.get(k), bool)]
                if not vals:
                    continue
                m[k] = sum(vals) if k in summed else statistics.median(vals)
                if k in ranges:
                    m[f"{k}_range"] = (min(vals), max(vals))
            m["short_rounds"] = sum(1 for x in runs if x["rps"] < SHORT * rate)
            m["truncated"] = any(x.get("truncated") for x in runs)
            errs: dict[str, int] = {}
            for x in runs:
                for k, v in (x.get("errors") or {}).items():
                    errs[k] = errs.get(k, 0) + v
                for k, v in (x.get("statuses") or {}).items():
                    if k != "200":
                        errs[f"HTTP {k}"] = errs.get(f"HTTP {k}", 0) + v
            m["error_kinds"] = errs
            rows.append((p, m))
        out[rate] = rows
    return out


def steal_cell(r, cores) -> str:
    """Hypervisor steal % of each core, 'a / b' (medians over the rounds)."""
    vals = [r.get(f"cpu{c}_steal_pct") for c in cores]
    return " / ".join(f(v, 1) for v in vals)


def span(r, k, nd):
    """' (min–max)' when there was more than one round."""
    v = r.get(f"{k}_range")
    if not v or r.get("rounds", 1) < 2:
        return ""
    return f" ({f(v[0], nd)}–{f(v[1], nd)})"


def rng_keys(r, k, nd):
    """' (min–max)' from r[k_min], r[k_max] (route-scale rounds)."""
    lo, hi = r.get(f"{k}_min"), r.get(f"{k}_max")
    if lo is None or hi is None or r.get("rounds", 1) < 2:
        return ""
    return f" ({f(lo, nd)}–{f(hi, nd)})"


def reference_peers(medians):
    """nginx's CPU per request, the cheaper of nginx's and HAProxy's with its name, and nginx's
    req/s, from one scenario's medians: what every peer's ratios are taken against."""
    d = dict(medians)
    ng = d.get("nginx", {}).get("proxy_cpu_us_per_req")
    hp = d.get("haproxy", {}).get("proxy_cpu_us_per_req")
    best = min([x for x in (ng, hp) if x], default=None)
    best_name = None if best is None else ("nginx" if best == ng else "HAProxy")
    return ng, best, best_name, d.get("nginx", {}).get("rps")


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
    vers = [["nginx (backend, peer)", meta.get("v_nginx", "")], ["wrk", meta.get("v_wrk", "")]]
    if "v_hey" in meta:
        vers.append(["hey", meta["v_hey"]])
    if "v_edgeload" in meta:
        vers.append(["edgeload", meta["v_edgeload"]])
    vers.append(["Python (clients)", meta.get("v_python", "")])
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
        *([["load", f"wrk {meta.get('wrk_args', '')}"]]
          if set(meta.get("scenarios", "").split(",")) - {"scale"} else []),
        *([["load, scale scenario", f"wrk {meta.get('scale_args', '')}, nothing pinned, "
            f"{meta.get('scale_workers', '2')} workers for edgeproxy, nginx, HAProxy and the backend"]]
          if "scale" in meta.get("scenarios", "").split(",") else []),
        *([["fixed-rate load", f"hey {meta.get('hey_args', '')} at {meta.get('rates', '')} req/s"]]
          if "fixedrate" in meta.get("scenarios", "").split(",") else []),
        *([["open-loop fixed-rate load", f"edgeload {meta.get('edgeload_args', '')} at {meta.get('rates', '')} req/s"]]
          if "fixedrate-edgeload" in meta.get("scenarios", "").split(",") else []),
        ["peers / scenarios", f"{meta.get('peers', '')} / {meta.get('scenarios', '')}"],
        ["elapsed", meta.get("elapsed", "")],
    ]))
    md.append("")

    # ---------------------------------------------------------------- throughput
    tp = throughput_medians(results)
    key_rows: dict[str, dict] = {}
    sec = 1   # section number
    if tp:
        ng, best, best_name, ng_rps = reference_peers(tp)
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
            key_rows.setdefault(p, {}).update({
                "cpu": cpu, "cpu_ng": cpu / ng if cpu and ng else None,
                "cpu_best": cpu / best if cpu and best else None, "rps": r["rps"]})
            rows.append([
                NAMES[p], f(r["rps"], 0) + span(r, "rps", 0), f(r.get("p50_ms"), 2), f(r.get("p99_ms"), 2),
                f"**{f(cpu, 1)}**{span(r, 'cpu', 1)}" if cpu is not None else "—",
                f(r.get("proxy_cpu_pct"), 0),
                f(cpu / ng, 2) if cpu and ng else "—",
                f(cpu / best, 2) if cpu and best else "—",
                f(r["rps"] / ng_rps, 2) if ng_rps else "—",
                f(r.get("backend_cpu_us_per_req"), 1),
                f(r.get(f"cpu{load_core}_busy_pct"), 0), f(r.get(f"cpu{proxy_core}_busy_pct"), 0),
                steal_cell(r, (load_core, proxy_core)),
                f(errs, 0) if errs else "0",
            ])
        md.append(f"## {sec}. Throughput and proxy CPU per request\n")
        sec += 1
        nr = tp[0][1]["rounds"]
        md.append(f"`GET /` → nginx `return 200 \"ok\"`, wrk {meta.get('wrk_args', '')} on core {load_core} "
                  f"(with the backend); the proxy under test alone on core {proxy_core}, one worker. "
                  + (f"{nr} rounds, peers interleaved, a fresh proxy each time; every figure is the median "
                     "over the rounds, (min–max) in brackets." if nr > 1 else "One round.") + "\n")
        md.append(table([
            "peer", "req/s", "p50 ms", "p99 ms", "proxy CPU µs/req", "proxy CPU % core",
            "CPU/req ÷ nginx", f"CPU/req ÷ best({best_name or 'nginx/HAProxy'})", "req/s ÷ nginx",
            "backend CPU µs/req", f"core {load_core} busy %", f"core {proxy_core} busy %",
            f"steal % core {load_core} / {proxy_core}", "errors"], rows))
        md.append("")
        md.append("*proxy CPU µs/req* = Δ(utime+stime) of all the proxy's processes (all threads) over the "
                  "wrk run ÷ requests wrk completed. It is the figure that survives a saturated "
                  f"load core: when *proxy CPU % core* is well below 100, core {load_core} (wrk + backend) "
                  "limited req/s, not the proxy. For *backend direct* the backend's own cost is shown. "
                  "*steal %*: time the hypervisor ran something else while that core wanted to run "
                  "(from `/proc/stat`; counted in *busy*); runs with 5 % or more are listed under "
                  "*Warnings*.\n")

    # ---------------------------------------------------------------- scale (both cores, nothing pinned)
    scale = throughput_medians(results, "scale")
    if scale:
        ng, best, best_name, ng_rps = reference_peers(scale)
        cores = sorted({k[3:-10] for _, r in scale for k in r
                        if k.startswith("cpu") and k.endswith("_steal_pct") and k[3:-10].isdigit()}, key=int)
        rows = []
        for p, r in scale:
            cpu = r.get("proxy_cpu_us_per_req")
            errs = r.get("socket_errors", 0) + r.get("non2xx", 0)
            if errs:
                warnings.append(f"scale/{p}: {r.get('socket_errors', 0)} socket errors, "
                                f"{r.get('non2xx', 0)} non-2xx responses")
            busy = [r[f"cpu{c}_busy_pct"] for c in cores if f"cpu{c}_busy_pct" in r]
            key_rows.setdefault(p, {}).update({
                "sc_cpu_best": cpu / best if cpu and best else None,
                "sc_rps_ng": r["rps"] / ng_rps if ng_rps else None, "sc_rps": r["rps"]})
            rows.append([
                NAMES[p], f(r["rps"], 0) + span(r, "rps", 0), f(r.get("p50_ms"), 2), f(r.get("p99_ms"), 2),
                f"**{f(cpu, 1)}**{span(r, 'cpu', 1)}" if cpu is not None else "—",
                f(r.get("proxy_cpu_pct"), 0),
                f(cpu / best, 2) if cpu and best else "—",
                f(r["rps"] / ng_rps, 2) if ng_rps else "—",
                f(r.get("backend_cpu_us_per_req"), 1),
                f(sum(busy) / len(busy), 0) if busy else "—",
                steal_cell(r, cores),
                f(errs, 0) if errs else "0",
            ])
        nr = scale[0][1]["rounds"]
        md.append(f"## {sec}. Both cores: throughput and CPU per request with {meta.get('scale_workers', '2')} "
                  "workers (`scale`)\n")
        sec += 1
        md.append(f"`GET /` → nginx `return 200 \"ok\"` ({meta.get('scale_workers', '2')} workers), wrk "
                  f"{meta.get('scale_args', '')}; **nothing pinned**: the proxy, wrk and the backend share "
                  f"both cores, for every peer alike. edgeproxy `--workers {meta.get('scale_workers', '2')}`, "
                  f"nginx `worker_processes {meta.get('scale_workers', '2')}`, HAProxy "
                  f"`nbthread {meta.get('scale_workers', '2')}`, CHP unchanged (node runs one thread). "
                  + (f"{nr} rounds, peers interleaved, a fresh proxy each time; medians, (min–max) in "
                     "brackets." if nr > 1 else "One round.") + "\n")
        md.append(table([
            "peer", "req/s", "p50 ms", "p99 ms", "proxy CPU µs/req", "proxy CPU % of one core",
            f"CPU/req ÷ best({best_name or 'nginx/HAProxy'})", "req/s ÷ nginx", "backend CPU µs/req",
            "machine busy %", "steal % core " + " / ".join(cores), "errors"], rows))
        md.append("")
        md.append("*proxy CPU µs/req* as in the throughput table, over all the proxy's processes and threads "
                  "(nginx: master + workers). Here the proxy competes with wrk and the backend for the same "
                  "two cores, so req/s shows how well each peer turns two cores into throughput beside its "
                  "load, and CPU/req what each request costs when work spreads over threads and cores "
                  "(cross-core wake-ups, lock and cache traffic). *machine busy %*: both cores, mean; near "
                  "100 the machine, not the proxy alone, is the limit. *steal %*: time the hypervisor ran "
                  "something else while that core wanted to run (from `/proc/stat`, medians over the rounds); "
                  "runs with 5 % or more are listed under *Warnings*.\n")

    # ---------------------------------------------------------------- fixed rate
    fr = fixedrate_medians(results)
    if fr:
        nr = max(m["rounds"] for rows in fr.values() for _, m in rows)
        hc = meta.get("hey_conns", "50")
        md.append(f"## {sec}. Latency at fixed request rates (hey)\n")
        sec += 1
        md.append(f"`GET /` at a fixed offered rate: hey {meta.get('hey_args', '')} on core {load_core} "
                  f"(with the backend); the proxy alone on core {proxy_core}, one worker, a fresh proxy for "
                  "every run. "
                  + (f"{nr} rounds, at each rate the peers run one after another; every figure is the "
                     "median over the rounds, (min–max) in brackets. " if nr > 1 else "One round. ")
                  + "CHP runs at the lowest rate only (it saturates at about 3–4k req/s). Latencies are "
                  f"hey's, printed with 0.1 ms resolution. **hey is not open-loop**: each of its {hc} workers "
                  "waits for its response before its next tick, so requests that would have been sent "
                  "during a stall are never sent, and never measured (no coordinated-omission "
                  "correction). **Its workers' tickers start together**, so requests leave in bursts of "
                  f"up to {hc}, and the single-core client works through each burst serially: that "
                  "queueing is in every latency here, for every peer; *backend direct* shows how much "
                  "of it is the load side's. See the caveats.\n")
        for rate, rows in fr.items():
            d = dict(rows)
            ng_p99 = d.get("nginx", {}).get("p99_ms")
            ng_short = "nginx" in d and d["nginx"]["rps"] < SHORT * rate
            trows = []
            for p, r in rows:
                achieved = r["rps"] / rate
                mark = ""
                if achieved < SHORT:
                    mark = f" **⚠ {100 * achieved:.0f}% of target**"
                    busy = r.get(f"cpu{load_core}_busy_pct") or 0
                    warnings.append(f"fixedrate/{p} @{rate:,}/s: achieved {r['rps']:,.0f} req/s "
                                    f"({100 * achieved:.0f}% of the target, median): not sustained"
                                    + (f"; core {load_core} was {busy:.0f}% busy, so hey and the backend "
                                       "may be the limit rather than the peer" if busy >= 95 else ""))
                elif r["short_rounds"]:
                    mark = f" (⚠ {r['short_rounds']}/{r['rounds']} rounds < 95%)"
                    warnings.append(f"fixedrate/{p} @{rate:,}/s: {r['short_rounds']} of {r['rounds']} "
                                    "rounds fell more than 5% short of the target rate")
                if r.get("error_count"):
                    warnings.append(f"fixedrate/{p} @{rate:,}/s: {r['error_count']} errors: "
                                    + "; ".join(f"{k} ×{v}" for k, v in r["error_kinds"].items()))
                if r.get("truncated"):
                    warnings.append(f"fixedrate/{p} @{rate:,}/s: hey kept only the first 1,000,000 "
                                    "latencies (shorten --duration)")
                cpu = r.get("proxy_cpu_us_per_req")
                if cpu is not None:
                    cpu_cell = f"**{f(cpu, 1)}**{span(r, 'proxy_cpu_us_per_req', 1)}"
                elif r.get("backend_cpu_us_per_req") is not None:
                    cpu_cell = (f"*backend {f(r['backend_cpu_us_per_req'], 1)}*"
                                f"{span(r, 'backend_cpu_us_per_req', 1)}")
                else:
                    cpu_cell = "—"
                p99 = r.get("p99_ms")
                trows.append([
                    NAMES[p], f(r["rps"], 0) + span(r, "rps", 0) + mark,
                    f(r.get("p50_ms"), 2), f(r.get("p90_ms"), 2),
                    f"**{f(p99, 2)}**{span(r, 'p99_ms', 2)}",
                    f(p99 / ng_p99, 2) + (" ⚠" if ng_short else "") if p99 and ng_p99 else "—",
                    f(r.get("slowest_ms"), 1), cpu_cell, f(r.get("proxy_cpu_pct"), 0),
                    f(r.get(f"cpu{load_core}_busy_pct"), 0),
                    f(r.get("error_count", 0), 0) if r.get("error_count") else "0",
                ])
                if p99 and ng_p99:
                    key_rows.setdefault(p, {}).setdefault("fr_p99", {})[rate] = (
                        f(p99 / ng_p99, 2) + (" ⚠" if achieved < SHORT or ng_short else ""))
            md.append(f"### {rate:,} req/s\n")
            if "direct" in d and d["direct"]["rps"] < SHORT * rate:
                md.append(f"**hey and the backend alone (*backend direct*) did not reach {rate:,} req/s "
                          f"on core {load_core}: every row at this rate is limited by the load side, not "
                          "only by the peer.**\n")
            md.append(table(["peer", "achieved req/s", "p50 ms", "p90 ms", "p99 ms", "p99 ÷ nginx",
                             "max ms", "CPU µs/req", "proxy CPU % core", f"core {load_core} busy %",
                             "errors"], trows))
            md.append("")
        md.append(f"*achieved req/s* is hey's Requests/sec (finished requests ÷ run time; errors, if "
                  "any, count too and are flagged); "
                  f"**⚠** marks a peer that fell more than 5% short of the target rate: it could not "
                  "sustain it, and its latencies are those of an overloaded, closed-loop run. *max ms* is "
                  "hey's slowest request. *errors* = transport errors + non-200 responses, summed over the "
                  f"rounds. *CPU µs/req* as in the throughput table (for *backend direct*: the backend's). "
                  f"When *core {load_core} busy %* nears 100, the client side (hey + backend) adds latency "
                  "for every peer alike.\n")

    # ---------------------------------------------------------------- fixed rate, open loop
    el = fixedrate_medians(results, "fixedrate-edgeload")
    if el:
        nr = max(m["rounds"] for rows in el.values() for _, m in rows)
        md.append(f"## {sec}. Latency at fixed request rates, open loop (edgeload)\n")
        sec += 1
        md.append(f"`GET /` at a fixed arrival rate: edgeload {meta.get('edgeload_args', '')} on core "
                  f"{load_core} (with the backend); the proxy alone on core {proxy_core}, one worker, a fresh "
                  "proxy for every run. "
                  + (f"{nr} rounds, at each rate the peers run one after another; every figure is the "
                     "median over the rounds, (min–max) in brackets. " if nr > 1 else "One round. ")
                  + "edgeload is **open-loop**: requests follow a schedule of evenly spaced intended send "
                  "times whatever the server does, and *corrected* latency counts from the intended time "
                  "(coordinated omission corrected); *service* p99 counts from the actual send. Latencies "
                  "come from HdrHistograms (3 significant figures). *missed* = scheduled requests never "
                  "sent; *late* = sent more than 2 ms after their intended time.\n")
        for rate, rows in el.items():
            d = dict(rows)
            ng_p99 = d.get("nginx", {}).get("corrected_p99_ms")
            trows = []
            for p, r in rows:
                achieved = r["rps"] / rate
                mark = ""
                if achieved < SHORT:
                    mark = f" **⚠ {100 * achieved:.0f}% of target**"
                    warnings.append(f"fixedrate-edgeload/{p} @{rate:,}/s: achieved {r['rps']:,.0f} req/s "
                                    f"({100 * achieved:.0f}% of the target, median)")
                if r.get("error_count"):
                    warnings.append(f"fixedrate-edgeload/{p} @{rate:,}/s: {r['error_count']} errors")
                if r.get("missed"):
                    warnings.append(f"fixedrate-edgeload/{p} @{rate:,}/s: {r['missed']:,} scheduled "
                                    "requests never sent (summed over the rounds)")
                if (r.get("generator_busy_fraction") or 0) > 0.7:
                    warnings.append(f"fixedrate-edgeload/{p} @{rate:,}/s: edgeload used "
                                    f"{100 * r['generator_busy_fraction']:.0f}% of its core")
                p99 = r.get("corrected_p99_ms")
                cpu = r.get("proxy_cpu_us_per_req")
                trows.append([
                    NAMES[p], f(r["rps"], 0) + span(r, "rps", 0) + mark,
                    f(r.get("corrected_p50_ms"), 3), f(r.get("corrected_p90_ms"), 3),
                    f"**{f(p99, 3)}**{span(r, 'corrected_p99_ms', 3)}",
                    f(r.get("corrected_p99_9_ms"), 3),
                    f(p99 / ng_p99, 2) if p99 and ng_p99 else "—",
                    f(r.get("service_time_p99_ms"), 3),
                    f(r.get("missed", 0), 0), f(r.get("late", 0), 0),
                    f(cpu, 1) if cpu is not None else "—",
                    f(r.get(f"cpu{load_core}_busy_pct"), 0),
                    f(r.get("error_count", 0), 0),
                ])
                if p99 and ng_p99:
                    key_rows.setdefault(p, {}).setdefault("el_p99", {})[rate] = (
                        f(p99 / ng_p99, 2) + (" ⚠" if achieved < SHORT else ""))
            md.append(f"### {rate:,} req/s (open loop)\n")
            md.append(table(["peer", "achieved req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
                             "p99 ÷ nginx", "service p99 ms", "missed", "late", "CPU µs/req",
                             f"core {load_core} busy %", "errors"], trows))
            md.append("")
        md.append("*p50/p90/p99/p99.9* are edgeload's *corrected* latencies. *achieved req/s* is "
                  "responses ÷ measured window. *missed* and *late* are summed over the rounds. "
                  "*CPU µs/req* divides the proxy's CPU time over the edgeload process's life by every "
                  "request it sent, its warm-up included.\n")

    # ---------------------------------------------------------------- routes
    rs = by_peer(results, "routes")
    floor = next((r for r in results if r.get("scenario") == "floor"), None)
    if rs:
        n = rs[0][1]["routes"]
        nr = rs[0][1].get("rounds", 1)
        rows = []
        for p, r in rs:
            key_rows.setdefault(p, {}).update({
                "ratio": r["rps_ratio"], "add_p99": r["add_p99_ms"], "getall": r["getall_median_ms"],
                "rss_n": r["rss_kib_n_after_load"] / 1024})
            rr = r.get("rps_ratio_rounds") or []
            rows.append([
                NAMES[p],
                f(r["wrk1_rps"], 0) + rng_keys(r, "wrk1_rps", 0),
                f(r["wrkn_rps"], 0) + rng_keys(r, "wrkn_rps", 0),
                f"**{f(r['rps_ratio'], 2)}**" + (f" ({f(min(rr), 2)}–{f(max(rr), 2)})" if len(rr) > 1 else ""),
                f(r["wrk1_proxy_cpu_us_per_req"], 1) + rng_keys(r, "wrk1_proxy_cpu_us_per_req", 1),
                f(r["wrkn_proxy_cpu_us_per_req"], 1) + rng_keys(r, "wrkn_proxy_cpu_us_per_req", 1),
                f(r.get("cpu_ratio"), 2),
                f"{f(r['wrk1_p99_ms'], 2)} → {f(r['wrkn_p99_ms'], 2)}",
                f"{f(r['load_seconds'], 1)} ({f(r['load_routes_per_s'], 0)}/s)",
                f"**{f(r['add_p50_ms'], 3)}**", f"**{f(r['add_p99_ms'], 3)}**",
                f"**{f(r['getall_median_ms'], 1)}** ({f(r['getall_bytes'] / 1e6, 1)} MB, "
                f"{f(r['getall_routes'], 0)} routes)",
                f(r["rss_kib_1"] / 1024, 1), f"**{f(r['rss_kib_n_after_load'] / 1024, 1)}**",
                f(r["rss_kib_after_getall"] / 1024, 1),
            ])
            for tag, label in (("1", "1-route"), ("n", "N-route")):
                e = (r.get(f"wrk{tag}_socket_errors") or 0) + (r.get(f"wrk{tag}_non2xx") or 0)
                if e:
                    warnings.append(f"routes/{p}: {e} wrk errors in the {label} runs")
        md.append(f"## {sec}. Route scale ({n:,} routes)\n")
        sec += 1
        md.append(f"Routes `/user/u<i>` → backend, loaded through the REST API "
                  f"({rs[0][1]['load_concurrency']} parallel keep-alive connections). wrk hits "
                  f"`/user/u{n // 2}/x` on two instances of the proxy started the same way, both on core "
                  f"{proxy_core}: one keeps only its default route `/`, the other holds {n + 1:,} routes. "
                  + (f"{nr} rounds alternate between them (1, N / N, 1 / …), each run after its own "
                     "warm-up; req/s and CPU/req are medians, (min–max) in brackets, and *ratio* = median "
                     "req/s at N routes ÷ median req/s at 1 route, with the per-round ratios in brackets. "
                     if nr > 1 else "One round (one run each). ")
                  + f"Then {rs[0][1]['add_count']:,} sequential `POST /api/routes/user/add<i>` on one "
                  f"keep-alive connection, then `GET /api/routes` ×{rs[0][1]['getall_reps']} (median).\n")
        md.append(table([
            "peer", "req/s 1 route", f"req/s {n:,} routes", "ratio", "CPU µs/req 1 route",
            f"CPU µs/req {n:,} routes", "CPU/req ratio", "p99 ms 1 → N", "load s (routes/s)",
            "add p50 ms", "add p99 ms", "GET all ms (median)",
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
        md.append(f"## {sec}. Idle WebSocket tunnels: proxy memory\n")
        sec += 1
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
        rates = list(fr)
        rate_label = " / ".join(f"{x // 1000}k" if x % 1000 == 0 else f"{x:,}" for x in rates)
        # (header, cell) per column; only the columns of the scenarios that ran
        cols = [("peer", lambda p, k: NAMES[p])]
        if tp:
            cols += [("proxy CPU µs/req", lambda p, k: f(k.get("cpu"), 1)),
                     ("÷ best(nginx,HAProxy)", lambda p, k: f(k.get("cpu_best"), 2)),
                     ("req/s", lambda p, k: f(k.get("rps"), 0))]
        if scale:
            cols += [("2 cores: req/s", lambda p, k: f(k.get("sc_rps"), 0)),
                     ("2 cores: req/s ÷ nginx", lambda p, k: f(k.get("sc_rps_ng"), 2)),
                     ("2 cores: CPU/req ÷ best(nginx,HAProxy)", lambda p, k: f(k.get("sc_cpu_best"), 2))]
        if rates:
            cols += [(f"fixed-rate p99 ÷ nginx @ {rate_label} req/s",
                      lambda p, k: " / ".join(k.get("fr_p99", {}).get(x, "—") for x in rates))]
        el_rates = list(el)
        if el_rates:
            el_label = " / ".join(f"{x // 1000}k" if x % 1000 == 0 else f"{x:,}" for x in el_rates)
            cols += [(f"open-loop p99 ÷ nginx @ {el_label} req/s",
                      lambda p, k: " / ".join(k.get("el_p99", {}).get(x, "—") for x in el_rates))]
        if rs:
            cols += [(f"req/s ratio {n_routes:,} routes ÷ 1", lambda p, k: f(k.get("ratio"), 2)),
                     (f"add p99 ms @{n_routes:,}", lambda p, k: f(k.get("add_p99"), 3)),
                     (f"GET all ms @{n_routes:,}", lambda p, k: f(k.get("getall"), 1)),
                     (f"RSS MiB @{n_routes:,} routes", lambda p, k: f(k.get("rss_n"), 1))]
        if ws:
            cols += [("KiB / idle WS tunnel", lambda p, k: f(k.get("kib_tunnel"), 2))]
        rows = [[cell(p, key_rows[p]) for _, cell in cols] for p in ORDER if key_rows.get(p)]
        summary = ["## Key figures\n", table([h for h, _ in cols], rows), ""]
        at = md.index(next(x for x in md if x.startswith("## ")))
        md[at:at] = summary

    # hypervisor steal: time a vCPU wanted to run but the host ran something else
    steal_runs = []
    for r in results:
        sc = r.get("scenario")
        runs = []
        if sc in ("throughput", "scale", "fixedrate", "fixedrate-edgeload"):
            tag = f"{sc}/{r['peer']}" + (f" @{r['target_rps']:,}/s" if "target_rps" in r else "")
            runs = [(f"{tag} r{r.get('round', 1)}", r)]
        elif sc == "routes":
            for t, label in (("1", "1 route"), ("n", "N routes")):
                runs += [(f"routes/{r['peer']} {label} r{i + 1}", x)
                         for i, x in enumerate(r.get(f"wrk{t}_rounds") or [])]
        for name, x in runs:
            st = {k[3:-10]: v for k, v in x.items()
                  if k.startswith("cpu") and k.endswith("_steal_pct") and v is not None}
            worst = max(st.items(), key=lambda kv: kv[1], default=None)
            if worst and worst[1] >= 5:
                steal_runs.append(f"{name}: core {worst[0]} {worst[1]:.0f}%")
    if steal_runs:
        warnings.append(f"hypervisor steal ≥ 5% during {len(steal_runs)} measured run(s), whose figures "
                        "are less trustworthy: " + "; ".join(steal_runs))

    md.append("## Warnings\n")
    md.append("\n".join(f"- {w}" for w in warnings) if warnings else "- none")
    md.append("")
    md.append("## Caveats\n")
    ran = meta.get("scenarios", "").split(",")
    caveats = [
        "Loopback only, 2 cores, client and backend share one core: figures are for comparing "
        "the peers *with each other in this run*, not absolute capacity.",
        "wrk is closed-loop (each connection waits for its response), so p99 under saturation "
        "mostly reflects queueing.",
    ]
    if "fixedrate" in ran:
        caveats.append(
            "The hey fixed-rate runs are rate-limited but still closed-loop: each of its "
            "workers waits for its response, and of the ticks it misses meanwhile only one is sent "
            "(late), the rest are dropped. Requests an open-loop client would have sent into a stall "
            "are therefore never sent, and never measured: tail latency is not corrected for "
            "coordinated omission. The workers' tickers start together, so requests arrive in bursts "
            "(one per worker). Latencies are printed with 0.1 ms resolution. The fixedrate-edgeload "
            "scenario (open loop, HdrHistogram) is the one the targets are judged by.")
    if "fixedrate-edgeload" in ran:
        caveats.append(
            "The edgeload fixed-rate runs are open-loop: latency counts from each request's intended "
            "send time, so a stall is measured in full. edgeload and the backend share the load core, "
            "and tokio's timer is 1 ms grained, so a few slots are sent late on any peer.")
    if "scale" in ran:
        caveats.append(
            "In the scale scenario nothing is pinned: the scheduler places the proxy's workers, wrk's "
            "threads and the backend's workers on the two cores as it likes, so every peer shares its "
            "cores with its load. Its req/s is the most sensitive figure here to other load on the "
            "machine; compare CPU/req first.")
    caveats.append("Any other load on the machine shows up in the *core busy* columns and in the load "
                   "averages above.")
    md.append("\n".join(f"- {c}" for c in caveats))
    text = "\n".join(md) + "\n"
    with open(a.out, "w") as fh:
        fh.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
