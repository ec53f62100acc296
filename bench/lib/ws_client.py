#!/usr/bin/env python3
"""Idle WebSocket tunnel client: opens N tunnels through a proxy and measures
the proxy's memory (stdlib asyncio only).

  ws_client.py --port P --n 10000 --pids PID[,PID] --peer NAME [--out FILE]

Sequence: warm-up (open and close a few tunnels), read VmRSS/fds of the proxy,
open N tunnels (proper upgrade request, Sec-WebSocket-Accept checked, 101
read), keep them idle --idle seconds, read VmRSS/fds again, then check a
sample of tunnels end to end (masked text frame -> echo from the backend),
close everything, wait, and read VmRSS once more.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def log(msg: str):
    print(f"  [ws] {msg}", file=sys.stderr, flush=True)


async def open_tunnel(host: str, port: int, path: str, timeout: float):
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        w.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 "Origin: http://127.0.0.1\r\n\r\n").encode())
        head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)).decode("latin-1")
    except BaseException:
        w.close()
        raise
    lines = head.split("\r\n")
    status = lines[0].split(" ", 2)[1] if " " in lines[0] else lines[0]
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if status != "101":
        w.close()
        raise RuntimeError(f"status {status}")
    if hdrs.get("sec-websocket-accept") != want:
        w.close()
        raise RuntimeError("bad Sec-WebSocket-Accept")
    return r, w


async def echo_check(r: asyncio.StreamReader, w: asyncio.StreamWriter, payload: bytes, timeout: float):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    w.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    await w.drain()
    b0, b1 = await asyncio.wait_for(r.readexactly(2), timeout)
    n = b1 & 0x7F
    data = await asyncio.wait_for(r.readexactly(n), timeout)
    return (b0 & 0x0F) == 1 and not (b1 & 0x80) and data == payload


async def run(a) -> dict:
    pids = common.parse_pids(a.pids)
    res: dict = {"scenario": "ws", "peer": a.peer, "requested": a.n}
    sem = asyncio.Semaphore(a.concurrency)
    errors: dict[str, int] = {}

    async def one():
        async with sem:
            try:
                return await open_tunnel("127.0.0.1", a.port, a.path, a.timeout)
            except Exception as e:  # noqa: BLE001
                k = type(e).__name__ + (f": {e}" if str(e) else "")
                errors[k[:80]] = errors.get(k[:80], 0) + 1
                return None

    # warm-up: lets the proxy allocate whatever it allocates on first use
    warm = [t for t in await asyncio.gather(*(one() for _ in range(a.warmup))) if t]
    if a.warmup and not warm:
        raise SystemExit(f"warm-up: no tunnel could be opened through {a.peer}: {errors}")
    for _, w in warm:
        w.close()
    errors.clear()
    await asyncio.sleep(1.0)
    res["rss_before_kib"] = common.rss_kib(pids)
    res["fds_before"] = common.fd_count(pids)

    t0 = time.perf_counter()
    tunnels = [t for t in await asyncio.gather(*(one() for _ in range(a.n))) if t]
    res["open_seconds"] = time.perf_counter() - t0
    res["established"] = len(tunnels)
    res["errors"] = errors
    log(f"{a.peer}: {len(tunnels)}/{a.n} tunnels established in {res['open_seconds']:.1f} s"
        + (f", errors {errors}" if errors else ""))

    await asyncio.sleep(a.idle)
    res["rss_after_kib"] = common.rss_kib(pids)
    res["hwm_kib"] = common.hwm_kib(pids)
    res["fds_after"] = common.fd_count(pids)
    est = max(len(tunnels), 1)
    res["kib_per_tunnel"] = (res["rss_after_kib"] - res["rss_before_kib"]) / est
    res["fds_per_tunnel"] = (res["fds_after"] - res["fds_before"]) / est

    sample = random.Random(1).sample(tunnels, min(a.sample, len(tunnels)))
    ok = 0
    for i, (r, w) in enumerate(sample):
        try:
            ok += await echo_check(r, w, f"ping-{i}".encode(), 10)
        except Exception:  # noqa: BLE001
            pass
    res["echo_sample"], res["echo_ok"] = len(sample), ok

    for _, w in tunnels:
        w.close()
    await asyncio.sleep(a.settle)
    res["rss_closed_kib"] = common.rss_kib(pids)
    res["fds_closed"] = common.fd_count(pids)
    log(f"{a.peer}: RSS {res['rss_before_kib'] / 1024:.1f} -> {res['rss_after_kib'] / 1024:.1f} MiB"
        f" ({res['kib_per_tunnel']:.2f} KiB/tunnel, {res['fds_per_tunnel']:.2f} fds/tunnel),"
        f" after close {res['rss_closed_kib'] / 1024:.1f} MiB; echo {ok}/{len(sample)}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/ws/idle")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--idle", type=float, default=2.0)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    res = asyncio.run(run(a))
    common.emit(res, a.out)
    if res["established"] == 0:
        sys.exit(f"no tunnel established through {a.peer}")


if __name__ == "__main__":
    main()
