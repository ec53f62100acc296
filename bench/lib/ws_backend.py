#!/usr/bin/env python3
"""Minimal RFC 6455 WebSocket backend for the idle-tunnel scenario (stdlib asyncio).

Answers every upgrade request with 101 and the computed Sec-WebSocket-Accept,
then keeps the connection open and idle. It echoes client data frames
(unmasked, as a server must) so that the client can check a sample of tunnels
end to end, answers ping with pong and close with close. A plain GET without
Upgrade gets `200 ok` (readiness checks).

  ws_backend.py --port P [--backlog 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
open_conns = 0


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return hdr + payload


async def read_frame(r: asyncio.StreamReader):
    b0, b1 = await r.readexactly(2)
    opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await r.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await r.readexactly(8))
    mask = await r.readexactly(4) if masked else b"\0\0\0\0"
    data = bytearray(await r.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i & 3]
    return opcode, bytes(data)


async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter):
    global open_conns
    open_conns += 1
    try:
        head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1")
        hdrs = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        key = hdrs.get("sec-websocket-key")
        if "websocket" not in hdrs.get("upgrade", "").lower() or not key:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                    b"Connection: close\r\n\r\nok")
            await w.drain()
            return
        w.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode())
        await w.drain()
        while True:  # idle until the client (through the proxy) sends something
            opcode, data = await read_frame(r)
            if opcode in (0x1, 0x2):
                w.write(frame(opcode, data))
            elif opcode == 0x9:
                w.write(frame(0xA, data))
            elif opcode == 0x8:
                w.write(frame(0x8, data[:2]))
                await w.drain()
                return
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        open_conns -= 1
        w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--backlog", type=int, default=4096)
    a = ap.parse_args()
    server = await asyncio.start_server(handle, a.host, a.port, backlog=a.backlog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
