#!/usr/bin/env python3
"""Results and report of bench/callgrind.sh (stdlib only).

  callgrind_report.py result --peer P --dump FILE --requests N --callgrind-json F --cpu-json F --out RESULTS
      one JSON line per peer appended to RESULTS (instructions from the callgrind dump of the
      measured interval, CPU and system calls from nrequests.py's JSON); a summary on stderr
  callgrind_report.py annotate --dump FILE --requests N --top 40 --out TXT
      the top functions by inclusive and by self cost (callgrind_annotate)
  callgrind_report.py render --meta meta.tsv --results RESULTS --out REPORT.md
      the Markdown report, also on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ORDER = ["nginx", "haproxy", "edgeproxy"]
NAMES = {"nginx": "nginx", "haproxy": "HAProxy", "edgeproxy": "edgeproxy"}


def dump_ir(path: str) -> tuple[int, dict]:
    """Ir of one callgrind dump (its `summary:` line) and its header fields."""
    head: dict[str, str] = {}
    ir = None
    with open(path, errors="replace") as f:
        for line in f:
            k, sep, v = line.partition(":")
            if not sep:
                continue
            k, v = k.strip(), v.strip()
            if k in ("cmd", "part", "events", "pid") or (k == "desc" and v.startswith("Trigger")):
                head[k if k != "desc" else "trigger"] = v
            if k == "summary":
                ir = int(v.split()[0])
            elif k == "totals" and ir is None:
                ir = int(v.split()[0])
    if ir is None:
        raise SystemExit(f"{path}: no summary/totals line (not a callgrind dump?)")
    if not head.get("events", "").startswith("Ir"):
        raise SystemExit(f"{path}: first event is {head.get('events')!r}, expected Ir")
    return ir, head


# The allocators' entry points: glibc's (nginx, HAProxy) and mimalloc's (edgeproxy). A call to
# one of them from outside the allocator is one allocation.
ALLOC_ENTRIES = {
    "malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc",
    "__libc_malloc", "__libc_calloc", "__libc_realloc", "__libc_memalign",
    "mi_malloc", "mi_zalloc", "mi_calloc", "mi_realloc", "mi_malloc_aligned", "mi_zalloc_aligned",
    "mi_realloc_aligned", "mi_malloc_aligned_at", "mi_zalloc_aligned_at", "mi_realloc_aligned_at",
}
FN_RE = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def dump_allocations(path: str) -> int:
    """Calls into an allocator entry point (ALLOC_ENTRIES) from outside the allocator, in one
    callgrind dump (its `cfn=` / `calls=` lines)."""
    names: dict[str, str] = {}
    caller = callee = None
    n = 0
    with open(path, errors="replace") as fh:
        for line in fh:
            m = FN_RE.match(line.rstrip("\n"))
            if m:
                kind, ident, name = m.groups()
                if name:
                    names[ident] = name
                name = names.get(ident, ident)
                if kind == "fn":
                    caller = name
                else:
                    callee = name
                continue
            if callee is not None and line.startswith("calls="):
                inside = caller in ALLOC_ENTRIES or caller.startswith(("mi_", "_mi_", "_int_"))
                if callee in ALLOC_ENTRIES and not inside:
                    n += int(line[6:].split()[0])
                callee = None
    return n


def cmd_result(a):
    ir, head = dump_ir(a.dump)
    allocations = dump_allocations(a.dump)
    cg = json.load(open(a.callgrind_json))
    cpu = json.load(open(a.cpu_json))
    for what, d in (("callgrind", cg), ("CPU", cpu)):
        if d.get("ok") != a.requests:
            raise SystemExit(f"{a.peer}: the {what} run answered {d.get('ok')} of {a.requests} requests")
    res = {
        "peer": a.peer, "requests": a.requests, "ir": ir, "ir_per_req": ir / a.requests,
        "allocations_per_req": allocations / a.requests,
        "dump_trigger": head.get("trigger"), "dump_cmd": head.get("cmd"),
        "callgrind": cg, "cpu": cpu,
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(res, sort_keys=True) + "\n")
    print(f"  {a.peer:<10} {res['ir_per_req']:>10,.0f} instr/req (callgrind: {cg['rps']:,.0f} req/s)  "
          f"{res['allocations_per_req']:.2f} allocations/req  "
          f"{cpu.get('syscalls_per_req', float('nan')):.2f} syscalls/req ({cpu.get('syscall_tool')})  "
          f"user {cpu['user_us_per_req']:.1f} µs/req  kernel {cpu['kernel_us_per_req']:.1f} µs/req  "
          f"(on-CPU {cpu['sched_us_per_req']:.1f})  "
          f"({cpu['rps']:,.0f} req/s)  steal {cg['steal_pct']:.1f}% / {cpu['steal_pct']:.1f}%",
          file=sys.stderr)


FUNC_RE = re.compile(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$")


def annotatable(dump: str, tmpdir: str) -> str:
    """A copy of the dump that callgrind_annotate 3.19 reads right.

    A call that was still running when the counters were zeroed (main → the runtime's block_on →
    the accept loop …, all on the stack for the whole interval) is written as `calls=0` followed by
    its inclusive cost. callgrind_annotate takes a cost line as a call's only when the count is
    above 0, so it adds the inclusive cost of those calls to the caller's *self* cost: main would
    show 100 % self. The copy says `calls=1` there (call counts are not shown here)."""
    out = os.path.join(tmpdir, "annotatable.callgrind")
    with open(dump, errors="surrogateescape") as src, open(out, "w", errors="surrogateescape") as dst:
        for line in src:
            if line.startswith("calls=0 "):
                line = "calls=1 " + line[8:]
            dst.write(line)
    return out


def top_functions(dump: str, inclusive: bool, top: int) -> tuple[list[tuple[int, float, str]], int]:
    """(rows, program total) from callgrind_annotate: [(Ir, %, 'file:function [object]')]."""
    cmd = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
           "--auto=no", "--tree=none", dump]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr}")
    rows, total = [], None
    for line in p.stdout.splitlines():
        m = FUNC_RE.match(line)
        if not m:
            continue
        ir, pct, name = int(m.group(1).replace(",", "")), float(m.group(2)), m.group(3)
        if name.startswith("PROGRAM TOTALS"):
            total = ir
            continue
        rows.append((ir, pct, name))
    if total is None:
        raise SystemExit(f"no PROGRAM TOTALS in the output of {' '.join(cmd)}")
    rows.sort(key=lambda r: -r[0])
    return rows[:top], total


def cmd_annotate(a):
    out = [f"edgeproxy under callgrind: the {a.requests:,} measured requests (counters zeroed after "
           "the warm-up, dumped after the last response).",
           f"Dump: {a.dump} (open it with callgrind_annotate or kcachegrind).",
           "Columns: Ir of the interval, share of the interval's total, Ir per proxied request, "
           "function [object]. Inclusive = the function and everything it calls; self = its own "
           "instructions only. Functions on the stack for the whole interval (main, the runtime's "
           "loop) are 100 % inclusive.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        fixed = annotatable(a.dump, tmp)
        tops = [(inclusive, *top_functions(fixed, inclusive, a.top)) for inclusive in (True, False)]
    for inclusive, rows, total in tops:
        kind = "inclusive" if inclusive else "self"
        out.append(f"== top {a.top} functions by {kind} cost (total {total:,} Ir = "
                   f"{total / a.requests:,.0f} per request)")
        out.append(f"{'Ir':>15} {'%':>6} {'Ir/req':>9}  function")
        for ir, pct, name in rows:
            out.append(f"{ir:>15,} {pct:>6.2f} {ir / a.requests:>9,.0f}  {name}")
        out.append("")
    text = "\n".join(out)
    with open(a.out, "w") as f:
        f.write(text)


def f(x, nd=1):
    if x is None:
        return "—"
    return f"{x:,.{nd}f}"


def cmd_render(a):
    meta = {}
    with open(a.meta) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    results = {r["peer"]: r for r in (json.loads(x) for x in open(a.results) if x.strip())}
    n = int(meta.get("requests", 0))
    md = [f"# edgeproxy vs nginx vs HAProxy: instructions per request — {meta.get('date', '')}\n",
          f"**CPU model: {meta.get('host_cpu', '')}** · {meta.get('host_kernel', '')} · "
          f"hypervisor steal over the whole run {meta.get('steal_all', '—')} % · load average at "
          f"start / end {meta.get('loadavg_start', '')} / {meta.get('loadavg_end', '')} · "
          f"took {meta.get('elapsed', '')}\n",
          f"`{meta.get('command', '')}` · git {meta.get('git', '')} · {meta.get('v_valgrind', '')} · "
          + " · ".join(meta[k] for k in ("v_nginx", "v_haproxy", "v_edgeproxy") if k in meta) + "\n",
          f"Each measurement: exactly {n:,} `GET {meta.get('request_path', '/')}` over {meta.get('connections')} keep-alive "
          f"connections (one request in flight on each), after {int(meta.get('warmup', 0)):,} "
          "warm-up requests on the same connections, through the proxy to nginx `return 200 \"ok\"`. "
          "The proxies as in `bench/proxy-bench.sh`: one worker / one thread. "
          f"{meta.get('cores', '')}.\n"]
    if "edge_auth" in meta:
        md.append(f"**Edge auth on** (`--edge-auth`): {meta['edge_auth']}.\n")
    ng = results.get("nginx", {}).get("ir_per_req")
    rows = []
    for p in ORDER:
        r = results.get(p)
        if not r:
            continue
        cg, cpu = r["callgrind"], r["cpu"]
        rows.append([
            NAMES[p], f"**{f(r['ir_per_req'], 0)}**", f(r["ir_per_req"] / ng, 2) if ng else "—",
            f(r.get("allocations_per_req"), 2),
            f(cpu.get("syscalls_per_req"), 2), f(cpu.get("user_us_per_req"), 2),
            f(cpu.get("kernel_us_per_req"), 2), f(cpu.get("sched_us_per_req"), 2),
            f"{f(cg.get('steal_pct'), 1)} / {f(cpu.get('steal_pct'), 1)} / "
            f"{f(cpu.get('syscall_pass_steal_pct'), 1)}",
            f"{f(cg.get('rps'), 0)} / {f(cpu.get('rps'), 0)}",
        ])
    head = ["peer", "user instr/req", "÷ nginx", "allocations/req", "syscalls/req", "user µs/req", "kernel µs/req",
            "on-CPU µs/req (schedstat)", "steal % (callgrind / CPU / syscall pass)", "req/s (callgrind / CPU pass)"]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "|".join(" --- " for _ in head) + "|")
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md.append("")
    tools = sorted({r["cpu"].get("syscall_tool") for r in results.values() if r["cpu"].get("syscall_tool")})
    md.append(
        "- *user instr/req*: instructions callgrind counted in the proxy's process (all its threads, "
        "user space only: libraries included, the kernel not) between the zeroing after the warm-up and "
        f"the dump after the last of the {n:,} responses, ÷ {n:,}. Deterministic up to timers and "
        "scheduling: it does not move with the machine's load. For nginx, the process is the worker "
        "alone (`master_process off`), which is all nginx runs per request.\n"
        "- *÷ nginx*: the peer's instructions per request relative to nginx's.\n"
        "- *allocations/req*: calls into the allocator (`malloc`, `calloc`, `realloc`, the aligned "
        "forms, mimalloc's `mi_*alloc*`) from outside it in the same interval, ÷ requests. nginx "
        "counts the pools it takes per request and connection from `malloc`, not what it carves "
        "out of them.\n"
        f"- *syscalls/req*: system calls of all the proxy's processes and threads over another {n:,} "
        f"requests, counted with {' / '.join(tools) or '—'} (perf: `raw_syscalls:sys_enter`; strace: "
        "`-f -c`), ÷ requests. It depends on batching: the more requests are ready per `epoll_wait`, "
        "the fewer calls per request, so compare peers within one run.\n"
        "- *user µs/req*, *kernel µs/req*: Δutime and Δstime of the proxy's processes (nginx: master + "
        f"worker) from `/proc/<pid>/stat` over {n:,} requests without valgrind, proxy alone on its "
        f"core, ÷ requests. Clock ticks are {1000 // int(meta.get('clk_tck', '100') or 100)} ms, so "
        "a short run resolves them only to a few percent; the kernel figure includes loopback TCP "
        "(softirq work charged to the proxy).\n"
        "- *on-CPU µs/req (schedstat)*: the same processes' on-CPU time over the same requests from "
        "`/proc/<pid>/task/*/schedstat`, user and kernel together, at nanosecond resolution: a check "
        "on the tick-based sum *user* + *kernel*.\n"
        "- *steal %*: CPU time the hypervisor took from this VM (all CPUs, from `/proc/stat`) during "
        "the callgrind interval, the CPU pass and the system-call pass. It slows runs down but does not "
        "change instruction counts; with high steal, trust the CPU times less.\n")
    if "top_file" in meta:
        md.append(f"edgeproxy's top functions by inclusive and by self cost: `{meta['top_file']}`.\n")
    text = "\n".join(md)
    with open(a.out, "w") as fh:
        fh.write(text)
    print(text, end="")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("result")
    p.add_argument("--peer", required=True); p.add_argument("--dump", required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--callgrind-json", required=True); p.add_argument("--cpu-json", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_result)
    p = sub.add_parser("annotate")
    p.add_argument("--dump", required=True); p.add_argument("--requests", type=int, required=True)
    p.add_argument("--top", type=int, default=40); p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_annotate)
    p = sub.add_parser("render")
    p.add_argument("--meta", required=True); p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(f=cmd_render)
    a = ap.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
