"""Shared helpers for the edgehub proxy benchmark (Python 3.11 stdlib only).

/proc readers (CPU ticks, RSS, fds, per-core busy time), a tiny blocking
HTTP/1.1 client that keeps one connection alive, and wrk and hey runners that
measure the CPU time of the processes under test around one load run.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import socket
import subprocess
import sys
import time

CLK_TCK = int(os.environ.get("BENCH_CLK_TCK") or os.sysconf("SC_CLK_TCK"))


# --------------------------------------------------------------------------- /proc


def _ppid_map() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        out[int(name)] = int(rest[1])
    return out


def descendants(root: int) -> list[int]:
    """root and all of its descendants (processes only; threads are folded in)."""
    ppids = _ppid_map()
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in ppids or pid == root:
            result.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(set(result))


def cpu_ticks(pids) -> int:
    """utime+stime of the given processes (all their threads), in clock ticks.

    Raises if a process vanished: a measurement window with a dead process is
    not valid.
    """
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rfind(b")") + 2:].split()
        # rest[0] is field 3 (state); utime is field 14, stime field 15.
        total += int(rest[11]) + int(rest[12])
    return total


def cpu_ticks_split(pids) -> tuple[int, int]:
    """(utime, stime) of the given processes (all their threads), in clock ticks: user and kernel
    CPU apart. Raises if a process vanished, like cpu_ticks."""
    ut = st = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rfind(b")") + 2:].split()
        ut += int(rest[11])
        st += int(rest[12])
    return ut, st


def sched_ns(pids) -> int:
    """On-CPU time of every thread of the given processes, in ns (/proc/<pid>/task/*/schedstat,
    first field): user + kernel together, at the scheduler's resolution rather than clock ticks.
    A thread that exits takes its time with it."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pids) -> int:
    return sum(_status_kib(p, "VmRSS") for p in pids)


def hwm_kib(pids) -> int:
    return sum(_status_kib(p, "VmHWM") for p in pids)


def fd_count(pids) -> int:
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return n


def core_ticks() -> dict[str, tuple[int, int, int]]:
    """{'cpu0': (busy, total, steal), ...} from /proc/stat (busy = total - idle - iowait, which
    includes steal: time the hypervisor gave to someone else while this vCPU wanted to run)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            parts = line.split()
            vals = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
            total = sum(vals)
            out[parts[0]] = (total - vals[3] - vals[4], total, vals[7])
    return out


def parse_pids(text: str | None) -> list[int]:
    if not text:
        return []
    return [int(x) for x in text.replace(",", " ").split()]


# --------------------------------------------------------------------------- stats


def percentile(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


# --------------------------------------------------------------------------- HTTP


class HTTPError(Exception):
    pass


class Conn:
    """Minimal blocking HTTP/1.1 client on one keep-alive connection.

    Cheaper per request than http.client, so that the client's own cost
    distorts API latency figures as little as possible.
    """

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.hosthdr = f"{host}:{port}"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise HTTPError("connection closed by peer")
        self.buf += chunk

    def _read_until(self, sep: bytes) -> bytes:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(sep)]
                return out
            start = max(0, len(self.buf) - len(sep) + 1)
            self._fill()

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    @staticmethod
    def build(method: str, path: str, hosthdr: str, headers: dict | None, body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {hosthdr}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes = b""):
        self.sock.sendall(self.build(method, path, self.hosthdr, headers, body))
        return self.read_response(method)

    def read_response(self, method: str = "GET"):
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    # trailers until empty line
                    while self._read_until(b"\r\n"):
                        pass
                    break
                parts.append(self._read_exact(size))
                self._read_until(b"\r\n")
            body = b"".join(parts)
        elif "content-length" in hdrs:
            body = self._read_exact(int(hdrs["content-length"]))
        else:  # read until close
            try:
                while True:
                    self._fill()
            except HTTPError:
                pass
            body = bytes(self.buf)
            self.buf.clear()
        return status, hdrs, body


# --------------------------------------------------------------------------- wrk

_DUR = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk duration {text!r}")
    return float(m.group(1)) * _DUR[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {}
    m = re.search(r"(\d+) requests in ([\d.]+\w+),", out)
    if not m:
        raise ValueError("wrk output has no 'requests in' line:\n" + out)
    res["requests"] = int(m.group(1))
    res["wrk_seconds"] = _ms(m.group(2)) / 1000.0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else res["requests"] / res["wrk_seconds"]
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    return res


def _measured(cmd: list[str], *, timeout: float, proxy_pids=(), backend_pids=()):
    """Run one load-generator command, accounting the CPU time of the processes under test.

    Returns (CompletedProcess, accounting dict); the caller divides by its own request count.
    """
    c0 = core_ticks()
    p0 = cpu_ticks(proxy_pids)
    b0 = cpu_ticks(backend_pids)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    t1 = time.monotonic()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p1 = cpu_ticks(proxy_pids)
    b1 = cpu_ticks(backend_pids)
    c1 = core_ticks()
    acc = {
        "wall_seconds": t1 - t0,
        "proxy_cpu_s": (p1 - p0) / CLK_TCK,
        "backend_cpu_s": (b1 - b0) / CLK_TCK,
        "client_cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
    }
    for name, (busy1, tot1, steal1) in c1.items():
        if name == "cpu":
            continue
        busy0, tot0, steal0 = c0.get(name, (busy1, tot1, steal1))
        acc[f"{name}_busy_pct"] = 100.0 * (busy1 - busy0) / max(tot1 - tot0, 1)
        acc[f"{name}_steal_pct"] = 100.0 * (steal1 - steal0) / max(tot1 - tot0, 1)
    return proc, acc


def _per_request(res: dict, acc: dict, n: int, proxy_pids, backend_pids):
    """Fill the per-request CPU figures of one measured run into res."""
    wall = acc["wall_seconds"]
    n = max(n, 1)
    res.update({
        "wall_seconds": wall,
        "proxy_cpu_s": acc["proxy_cpu_s"],
        "proxy_cpu_us_per_req": acc["proxy_cpu_s"] * 1e6 / n if proxy_pids else None,
        "proxy_cpu_pct": 100.0 * acc["proxy_cpu_s"] / wall if proxy_pids else None,
        "backend_cpu_s": acc["backend_cpu_s"],
        "backend_cpu_us_per_req": acc["backend_cpu_s"] * 1e6 / n if backend_pids else None,
        "proxy_pids": list(proxy_pids),
        "clk_tck": CLK_TCK,
    })
    res.update({k: v for k, v in acc.items() if k.endswith(("_busy_pct", "_steal_pct"))})


def run_wrk(url: str, *, duration: float, connections: int, threads: int, core: str,
            proxy_pids=(), backend_pids=(), extra_timeout: float = 30.0) -> dict:
    """Run one wrk (pinned to core unless core is ""), measuring CPU of proxy/backend/wrk and
    per-core busy and steal time."""
    pin = ["taskset", "-c", core] if core else []   # core "" = not pinned (scale scenario)
    cmd = pin + ["wrk", "-t", str(threads), "-c", str(connections),
                 "-d", f"{int(duration)}s", "--latency", "--timeout", "5s", url]
    proc, acc = _measured(cmd, timeout=duration + extra_timeout, proxy_pids=proxy_pids,
                          backend_pids=backend_pids)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    res = parse_wrk(proc.stdout)
    res["url"] = url
    _per_request(res, acc, res["requests"], proxy_pids, backend_pids)
    res["wrk_cpu_pct"] = 100.0 * acc["client_cpu_s"] / acc["wall_seconds"]
    res["wrk_output"] = proc.stdout
    return res


# --------------------------------------------------------------------------- hey

HEY_PCTS = (10, 25, 50, 75, 90, 95, 99)


def parse_hey(out: str) -> dict:
    """Parse hey's text summary.

    hey prints every latency in seconds with 4 decimals (0.1 ms resolution). In hey 0.1.4 (Debian
    12) Requests/sec counts every finished request, errors included, over the whole run; the
    latencies cover the successful ones (any HTTP status), the first 1,000,000 only, silently.
    With no success the percentiles are absent and Average is NaN.
    """
    res: dict = {}

    def secs(label):
        m = re.search(rf"^\s+{label}:\s+([\d.]+) secs", out, re.M)
        return float(m.group(1)) * 1e3 if m else None

    res["hey_total_s"] = (secs("Total") or 0.0) / 1e3
    res["slowest_ms"] = secs("Slowest")
    res["fastest_ms"] = secs("Fastest")
    res["mean_ms"] = secs("Average")
    m = re.search(r"^\s+Requests/sec:\s+([\d.]+)", out, re.M)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in HEY_PCTS:
        m = re.search(rf"^\s+{pct}% in ([\d.]+) secs", out, re.M)
        res[f"p{pct}_ms"] = float(m.group(1)) * 1e3 if m else None
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    section = None
    for line in out.splitlines():
        if line.startswith("Status code distribution:"):
            section = statuses
        elif line.startswith("Error distribution:"):
            section = errors
        elif line.strip() and not line[0].isspace():
            section = None
        elif section is statuses and (m := re.match(r"\s+\[(\d+)\]\s+(\d+) responses", line)):
            statuses[m.group(1)] = statuses.get(m.group(1), 0) + int(m.group(2))
        elif section is errors and (m := re.match(r"\s+\[(\d+)\]\s+(.*)$", line)):
            msg = m.group(2).strip()
            errors[msg] = errors.get(msg, 0) + int(m.group(1))
    res["statuses"] = statuses
    res["errors"] = errors
    res["responses"] = sum(statuses.values())
    res["non200"] = sum(v for k, v in statuses.items() if k != "200")
    res["transport_errors"] = sum(errors.values())
    res["error_count"] = res["non200"] + res["transport_errors"]
    res["requests"] = res["responses"] + res["transport_errors"]
    res["truncated"] = res["responses"] > 1_000_000 or "Distributions are for first" in out
    return res


def hey_cmd(url: str, *, duration: float, connections: int, qps_per_worker: float, core: str,
            timeout_s: int = 5) -> list[str]:
    return ["taskset", "-c", core, "hey", "-z", f"{int(duration)}s", "-c", str(connections),
            "-q", f"{qps_per_worker:g}", "-t", str(timeout_s), "-cpus", "1",
            "-disable-compression", url]


def run_hey(url: str, *, duration: float, connections: int, qps_per_worker: float, core: str,
            proxy_pids=(), backend_pids=(), extra_timeout: float = 30.0) -> dict:
    """Run one pinned, rate-limited hey, with the same CPU accounting as run_wrk."""
    cmd = hey_cmd(url, duration=duration, connections=connections,
                  qps_per_worker=qps_per_worker, core=core)
    proc, acc = _measured(cmd, timeout=duration + extra_timeout, proxy_pids=proxy_pids,
                          backend_pids=backend_pids)
    if proc.returncode != 0:
        raise RuntimeError(f"hey failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    res = parse_hey(proc.stdout)
    res["url"] = url
    res["hey_args"] = " ".join(cmd[3:-1])
    _per_request(res, acc, res["requests"], proxy_pids, backend_pids)
    res["hey_cpu_pct"] = 100.0 * acc["client_cpu_s"] / acc["wall_seconds"]
    res["hey_output"] = proc.stdout
    return res


def emit(obj: dict, path: str | None = None):
    line = json.dumps(obj, sort_keys=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    print(line)
    sys.stdout.flush()


# --------------------------------------------------------------------------- edgeload


def edgeload_cmd(edgeload: str, url: str, *, rate: float, duration: float, warmup: float,
                 max_connections: int, core: str, json_path: str, timeout_s: int = 5) -> list[str]:
    return ["taskset", "-c", core, edgeload, "http", url, "--rate", f"{rate:g}",
            "-d", f"{duration:g}s", "-w", f"{warmup:g}s", "-t", "1",
            "--max-connections", str(max_connections), "--timeout", f"{timeout_s}s",
            "--quiet", "--json", json_path]


def run_edgeload(edgeload: str, url: str, *, rate: float, duration: float, warmup: float,
                 max_connections: int, core: str, json_path: str, proxy_pids=(), backend_pids=(),
                 extra_timeout: float = 30.0) -> dict:
    """Run one pinned open-loop edgeload (`edgeload http --rate`), with the same CPU accounting as
    run_wrk. Latencies come from its JSON report (schema edgeload-report/1, docs/edgeload.md):
    `corrected` counts from each request's intended send time, `service_time` from the actual one.

    CPU per request divides by every request sent during the process's life, its own warm-up
    included (the per-second `intervals`), because the CPU window spans the whole process."""
    cmd = edgeload_cmd(edgeload, url, rate=rate, duration=duration, warmup=warmup,
                       max_connections=max_connections, core=core, json_path=json_path)
    proc, acc = _measured(cmd, timeout=warmup + duration + extra_timeout, proxy_pids=proxy_pids,
                          backend_pids=backend_pids)
    if proc.returncode != 0:
        raise RuntimeError(f"edgeload failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    with open(json_path) as f:
        rep = json.load(f)
    lat = rep["latency"]
    res: dict = {"url": url, "edgeload_args": " ".join(cmd[3:-1])}
    for series in ("corrected", "service_time"):
        for k in ("p50", "p90", "p99", "p99_9"):
            res[f"{series}_{k}_ms"] = lat[series][f"{k}_us"] / 1e3
        res[f"{series}_max_ms"] = lat[series]["max_us"] / 1e3
        res[f"{series}_count"] = lat[series]["count"]
    res["rps"] = rep["throughput_rps"]
    res["sent_rps"] = rep["sent_rps"]
    for k in ("sent", "late", "missed"):
        res[k] = rep["counters"][k]
    res["error_count"] = rep["errors"]["total"]
    res["errors"] = rep["errors"]["by_kind"]
    res["generator_busy_fraction"] = rep["generator"]["busy_fraction"]
    res["generator_warning"] = rep["generator"]["warning"]
    res["warnings"] = rep["warnings"]
    all_sent = sum(i["counters"].get("sent", 0) for i in rep["intervals"])
    _per_request(res, acc, all_sent, proxy_pids, backend_pids)
    res["requests_all"] = all_sent
    res["edgeload_cpu_pct"] = 100.0 * acc["client_cpu_s"] / acc["wall_seconds"]
    return res
