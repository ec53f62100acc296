#!/usr/bin/env python3
"""Send exactly N keep-alive GET requests over C connections, and measure what they cost a server
(stdlib only; used by bench/callgrind.sh).

  nrequests.py --url http://127.0.0.1:P/ --requests N --connections C --warmup W
               [--before CMD] [--after CMD]            # shell hooks around the measured pass
               [--header 'NAME: VALUE']...             # extra request headers
               [--cpu-pid PID]                         # Δutime/Δstime of PID and its descendants
               [--syscalls perf|strace|auto]           # a second pass of N, system calls counted
               [--json FILE]

wrk and hey run for a time; this client sends an exact count, so that a total (callgrind's
instruction count, a number of system calls) divides by a known number of proxied requests. It
opens the C connections, sends W warm-up requests over them, then runs the measured pass: the
--before hook, N requests (each connection sends its next request when its response is complete,
one request in flight per connection, no pipelining), the --after hook. Every response must be
`200` with the body `ok`; anything else (another status, a closed connection, a timeout) stops
the run with exit status 1 and says which request failed. The connections stay open from the
warm-up to the end, so no pass includes connection set-up.

With --cpu-pid, the measured pass also records utime and stime of that process and all its
descendants (all threads) from /proc/<pid>/stat (clock ticks), and their on-CPU time from
/proc/<pid>/task/*/schedstat (ns, user and kernel together). With --syscalls, a second pass of N requests
follows on the same connections with a tracer attached to those processes (all their threads):
`perf stat -e raw_syscalls:sys_enter` (enabled and disabled around the pass through perf's
control FIFO, so only the pass counts), or `strace -f -c` (attached before, detached after).
`auto` takes perf when it can count a process here, else strace. The tracer gets its own pass
because strace slows the traced process down many times over: its CPU times are not those of
the untraced server.

The hypervisor's steal over each pass is read from /proc/stat (all CPUs and per CPU).

Result: one JSON object on stdout (and in --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CL_RE = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
CHUNKED_RE = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.I)
CLOSE_RE = re.compile(rb"\r\nconnection:[^\r\n]*close", re.I)


class Failed(Exception):
    pass


class Client:
    """C non-blocking keep-alive connections driven by one epoll loop, one request in flight on
    each. Parses Content-Length and chunked responses; checks status 200 and body `ok`."""

    def __init__(self, host: str, port: int, path: str, conns: int, timeout: float,
                 headers: list[str] = ()):
        extra = "".join(f"{h}\r\n" for h in headers)
        self.req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: nrequests\r\n"
                    f"Accept: */*\r\n{extra}\r\n").encode()
        self.timeout = timeout
        self.sel = selectors.DefaultSelector()
        self.socks = []
        for i in range(conns):
            s = socket.create_connection((host, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.socks.append(s)
            self.sel.register(s, selectors.EVENT_READ, [i, bytearray()])
        self.total = 0   # responses over the client's life, for error messages

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass

    def _send(self, s):
        try:
            n = s.send(self.req)
        except BlockingIOError:
            n = 0
        if n != len(self.req):   # a 90-byte request into an idle socket's empty send buffer
            raise Failed(f"short send ({n} of {len(self.req)} bytes)")

    @staticmethod
    def _parse(buf: bytearray):
        """One complete response at the start of buf: (status, body, length), or None."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end + 2])
        try:
            status = int(head[9:12])
        except ValueError:
            raise Failed(f"not an HTTP response: {head[:200]!r}") from None
        if CLOSE_RE.search(head):
            raise Failed(f"the server closes the connection (keep-alive required): {head[:300]!r}")
        start = end + 4
        m = CL_RE.search(head)
        if m:
            n = int(m.group(1))
            if len(buf) < start + n:
                return None
            return status, bytes(buf[start:start + n]), start + n
        if CHUNKED_RE.search(head):
            pos, body = start, b""
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                if size == 0:
                    # no trailers expected: the last chunk is followed by an empty line
                    if len(buf) < eol + 4:
                        return None
                    return status, body, eol + 4
                if len(buf) < eol + 2 + size + 2:
                    return None
                body += bytes(buf[eol + 2:eol + 2 + size])
                pos = eol + 2 + size + 2
        raise Failed(f"response without Content-Length or chunked encoding: {head[:300]!r}")

    def run(self, n: int) -> float:
        """Send exactly n requests, spread over the connections; return the wall time."""
        issued = done = 0
        t0 = time.monotonic()
        for s in self.socks:
            if issued == n:
                break
            self._send(s)
            issued += 1
        last = time.monotonic()
        while done < n:
            events = self.sel.select(timeout=1.0)
            now = time.monotonic()
            if not events:
                if now - last > self.timeout:
                    raise Failed(f"no response for {self.timeout:.0f} s ({done} of {n} requests of "
                                 "this pass done)")
                continue
            last = now
            for key, _ in events:
                s = key.fileobj
                state = key.data
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    raise Failed(f"connection {state[0]}: {e}") from None
                if not data:
                    raise Failed(f"connection {state[0]} closed by the server ({done} of {n} requests "
                                 "of this pass done)")
                buf = state[1]
                buf += data
                res = self._parse(buf)
                if res is None:
                    continue
                status, body, used = res
                if used != len(buf):
                    raise Failed(f"connection {state[0]}: {len(buf) - used} bytes after the response")
                buf.clear()
                done += 1
                self.total += 1
                if status != 200 or body != b"ok":
                    raise Failed(f"request {self.total}: status {status}, body {body[:100]!r} "
                                 "(expected 200 ok)")
                if issued < n:
                    self._send(s)
                    issued += 1
        return time.monotonic() - t0


# --------------------------------------------------------------------------- /proc


def stat_cpus() -> dict[str, tuple[int, int]]:
    """{'cpu': (total, steal), 'cpu0': ...} ticks from /proc/stat."""
    return {k: (tot, steal) for k, (_, tot, steal) in common.core_ticks().items()}


def steal_fields(a: dict, b: dict) -> dict:
    out = {}
    for k, (t1, s1) in b.items():
        t0, s0 = a.get(k, (t1, s1))
        name = "steal_pct" if k == "cpu" else f"{k}_steal_pct"
        out[name] = 100.0 * (s1 - s0) / max(t1 - t0, 1)
    return out


def all_tids(pids) -> list[int]:
    tids = []
    for p in pids:
        try:
            tids += [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            pass
    return tids


# --------------------------------------------------------------------------- tracers


class PerfCounter:
    """perf stat -e raw_syscalls:sys_enter on the processes, started disabled, enabled and disabled
    through its control FIFO (each acknowledged), so that exactly the pass is counted."""

    def __init__(self, pids, workdir):
        self.ctl = os.path.join(workdir, "perf.ctl")
        self.ack = os.path.join(workdir, "perf.ack")
        self.out = os.path.join(workdir, "perf.out")
        for f in (self.ctl, self.ack):
            os.mkfifo(f)
        self.proc = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", self.out, "-e", "raw_syscalls:sys_enter", "--delay=-1",
             "--control", f"fifo:{self.ctl},{self.ack}", "-p", ",".join(map(str, pids))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # O_RDWR: opening never blocks, even if perf failed to start
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR)

    def _command(self, cmd: str):
        os.write(self.ctl_fd, cmd.encode() + b"\n")
        deadline = time.monotonic() + 10
        got = b""
        while b"ack" not in got:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise Failed(f"perf did not acknowledge '{cmd}': {self._stderr()}")
            r, _, _ = select.select([self.ack_fd], [], [], min(left, 0.5))
            if r:
                got += os.read(self.ack_fd, 64)

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(perf still running)"
        return self.proc.stderr.read().decode(errors="replace").strip()

    def start(self):
        self._command("enable")

    def stop(self) -> int:
        self._command("disable")
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failed("perf did not exit after SIGINT") from None
        text = open(self.out).read()
        for line in text.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2] == "raw_syscalls:sys_enter":
                if not f[0].strip().isdigit():
                    raise Failed(f"perf counted nothing: {line}")
                return int(f[0])
        raise Failed(f"no raw_syscalls:sys_enter line in perf's output:\n{text}")

    def close(self):
        for fd in (self.ctl_fd, self.ack_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class StraceCounter:
    """strace -f -c attached to the processes (all their threads) for the pass."""

    def __init__(self, pids, workdir):
        self.out = os.path.join(workdir, "strace.out")
        self.err = open(os.path.join(workdir, "strace.err"), "w+")
        self.ntids = len(all_tids(pids))
        cmd = ["strace", "-f", "-c", "-o", self.out]
        for p in pids:
            cmd += ["-p", str(p)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err)

    def start(self):
        # strace prints "Process N attached" for every thread it attached to
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.err.seek(0)
            if self.err.read().count(" attached") >= self.ntids:
                time.sleep(0.05)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.err.seek(0)
        raise Failed(f"strace did not attach to all {self.ntids} threads: {self.err.read()[-500:]}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failed("strace did not exit after SIGINT") from None
        text = open(self.out).read()
        for line in text.splitlines():
            f = line.split()
            if f and f[-1] == "total":
                return int(f[3])   # % time, seconds, usecs/call, calls, [errors,] total
        raise Failed(f"no total line in strace -c's output:\n{text}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def perf_works(workdir: str) -> bool:
    """Can perf count the system calls of another process here (a VM may not allow it)?"""
    if not shutil.which("perf"):
        return False
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nfor _ in range(4000): time.sleep(0.0005)"])
    d = tempfile.mkdtemp(dir=workdir)
    try:
        time.sleep(0.1)
        pc = PerfCounter([child.pid], d)
        try:
            pc.start()
            time.sleep(0.3)
            return pc.stop() > 50
        finally:
            pc.close()
    except (Failed, OSError):
        return False
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2000, help="warm-up requests (default 2000)")
    ap.add_argument("--before", help="shell command run right before the measured pass")
    ap.add_argument("--after", help="shell command run right after the measured pass")
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds of quiet before each hook, so the server finishes its last requests")
    ap.add_argument("--cpu-pid", type=int, help="measure utime/stime of this process + descendants")
    ap.add_argument("--syscalls", choices=("perf", "strace", "auto"),
                    help="second pass of N requests with system calls counted (needs --cpu-pid)")
    ap.add_argument("--timeout", type=float, default=60, help="longest wait for any response (s)")
    ap.add_argument("--workdir", default=None, help="for the tracer's files (default: a temp dir)")
    ap.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                    help="an extra request header (repeatable)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.requests < 1 or a.connections < 1 or a.warmup < 0:
        sys.exit("nrequests: --requests and --connections must be >= 1, --warmup >= 0")
    if a.syscalls and not a.cpu_pid:
        sys.exit("nrequests: --syscalls needs --cpu-pid")
    u = urlsplit(a.url)
    workdir = tempfile.mkdtemp(prefix="nrequests-", dir=a.workdir)

    def hook(cmd, what):
        time.sleep(a.settle)
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        if p.returncode != 0:
            raise Failed(f"{what} hook failed ({p.returncode}): {cmd}\n{p.stdout}{p.stderr}")
        return (p.stdout + p.stderr).strip()

    res = {"url": a.url, "requests": a.requests, "connections": a.connections, "warmup": a.warmup,
           "clk_tck": common.CLK_TCK}
    client = None
    tracer = None
    try:
        client = Client(u.hostname, u.port, u.path or "/", a.connections, a.timeout, a.header)
        if a.warmup:
            res["warmup_seconds"] = client.run(a.warmup)
        pids = common.descendants(a.cpu_pid) if a.cpu_pid else []
        res["pids"] = pids
        if a.before:
            res["before_output"] = hook(a.before, "--before")
        c0 = stat_cpus()
        t0 = common.cpu_ticks_split(pids)
        n0 = common.sched_ns(pids)
        wall = client.run(a.requests)
        n1 = common.sched_ns(pids)
        t1 = common.cpu_ticks_split(pids)
        c1 = stat_cpus()
        if a.after:
            res["after_output"] = hook(a.after, "--after")
        res.update(wall_seconds=wall, rps=a.requests / wall, ok=a.requests, **steal_fields(c0, c1))
        if pids:
            ut, st = (t1[0] - t0[0]) / common.CLK_TCK, (t1[1] - t0[1]) / common.CLK_TCK
            res.update(utime_s=ut, stime_s=st, user_us_per_req=ut * 1e6 / a.requests,
                       kernel_us_per_req=st * 1e6 / a.requests,
                       cpu_us_per_req=(ut + st) * 1e6 / a.requests, cpu_pct=100 * (ut + st) / wall,
                       sched_s=(n1 - n0) / 1e9, sched_us_per_req=(n1 - n0) / 1e3 / a.requests)
        if a.syscalls:
            tool = a.syscalls
            if tool == "auto":
                tool = "perf" if perf_works(workdir) else "strace"
            if tool == "strace" and not shutil.which("strace"):
                raise Failed("strace is not installed (apt-get install strace)")
            threads = len(all_tids(pids))
            tracer = (PerfCounter if tool == "perf" else StraceCounter)(pids, workdir)
            time.sleep(a.settle)
            c0 = stat_cpus()
            tracer.start()
            swall = client.run(a.requests)
            n = tracer.stop()
            c1 = stat_cpus()
            res.update(syscall_tool=tool, syscalls=n, syscalls_per_req=n / a.requests,
                       syscall_threads=threads, syscall_pass_seconds=swall,
                       syscall_pass_steal_pct=steal_fields(c0, c1)["steal_pct"])
    except (Failed, OSError) as e:
        done = client.total if client else 0
        sys.exit(f"nrequests: FAILED against {a.url} after {done} responses: {e}")
    finally:
        if tracer:
            tracer.close()
        if client:
            client.close()
        shutil.rmtree(workdir, ignore_errors=True)
    line = json.dumps(res, sort_keys=True)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
