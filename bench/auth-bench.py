#!/usr/bin/env python3
"""Edge auth cost: the same edgeproxy with auth off and on, one route, one user, interleaved.

    bench/auth-bench.py                  # 3 rounds of 10 s; about 2 minutes
    bench/auth-bench.py --rounds 5 --duration 5

Every request carries a valid HS384 bearer token for alice and goes to /user/alice/, a route
whose data names alice as its owner. `auth-on` checks the token, the Redis session (key
auth_token_key:alice) through the in-process cache, and ownership. `auth-cold` sets the cache TTLs
to 0, so every request asks Redis: the cold-cache rate. Redis commands per request come from
`INFO commandstats` before and after each measurement.

Pinning as in proxy-bench.sh: the proxy alone on core 1; wrk, the nginx backend and redis on
core 0. Needs wrk, nginx, redis-server, redis-cli, taskset and target/release/edgeproxy
(`cargo build --release -p proxy`). Loopback only; every process is stopped on exit.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-secret-for-hs384-forty-eight-bytes-long-0123456"
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, core, **kw):
    p = subprocess.Popen(["taskset", "-c", str(core)] + cmd, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=5)
    except Exception:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except Exception:
            pass


def wait_port(port, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"[auth-bench] {what} did not start on port {port}")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub):
    header = b64(json.dumps({"alg": "HS384", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 86400}).encode())
    sig = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha384).digest()
    return f"{header}.{claims}.{b64(sig)}"


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_calls(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True).stdout
    return sum(int(m) for m in re.findall(r"calls=(\d+)", out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    binary = os.environ.get("EDGEPROXY_BIN", os.path.join(REPO, "target/release/edgeproxy"))
    for tool in ["wrk", "nginx", "redis-server", "redis-cli", "taskset"]:
        if subprocess.run(["which", tool], capture_output=True).returncode:
            sys.exit(f"[auth-bench] {tool} is not installed (apt-get install wrk nginx-light redis-server)")
    if not os.access(binary, os.X_OK):
        sys.exit(f"[auth-bench] no edgeproxy at {binary}: run cargo build --release -p proxy")

    work = tempfile.mkdtemp(prefix="auth-bench-")
    redis_port, backend_port = free_port(), free_port()
    start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--notify-keyspace-events", "Egx", "--dir", work], 0)
    wait_port(redis_port, "redis-server")
    subprocess.run(["redis-cli", "-p", str(redis_port), "SET", "auth_token_key:alice", "1"], capture_output=True)
    with open(f"{work}/backend.conf", "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend_port}; location / {{ return 200 "ok"; }} }} }}
""")
    start(["nginx", "-c", f"{work}/backend.conf"], 0)
    wait_port(backend_port, "nginx backend")

    base = f"""
[[issuers]]
algorithms = ["HS384"]
secret = "{SECRET}"
[session]
redis_url = "redis://127.0.0.1:{redis_port}/0"
key = "auth_token_key:{{sub}}"
"""
    configs = {
        "auth-off": None,
        "auth-on": base,
        "auth-cold": base + "cache_ttl_ms = 0\nnegative_cache_ttl_ms = 0\n",
    }
    bearer = f"Authorization: Bearer {token('alice')}"
    results = {name: [] for name in configs}
    try:
        for rnd in range(args.rounds):
            for name, config in configs.items():
                port, api = free_port(), free_port()
                cmd = [binary, "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
                       "--api-port", str(api), "--workers", "1", "--log-level", "warn",
                       "--default-target", f"http://127.0.0.1:{backend_port}"]
                if config:
                    path = f"{work}/{name}.toml"
                    open(path, "w").write(config)
                    cmd += ["--auth-config", path]
                p = start(cmd, 1)
                wait_port(port, name)
                wait_port(api, name)
                route = json.dumps({"target": f"http://127.0.0.1:{backend_port}", "user": "alice"})
                subprocess.run(["curl", "-sf", "-X", "POST", "--data", route,
                                f"http://127.0.0.1:{api}/api/routes/user/alice"], check=True, capture_output=True)
                url = f"http://127.0.0.1:{port}/user/alice/"
                check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", bearer, url],
                                       capture_output=True, text=True).stdout
                if check != "200":
                    sys.exit(f"[auth-bench] {name}: a valid token got {check}")
                wrk = ["taskset", "-c", "0", "wrk", "-t1", f"-c{args.connections}", "-H", bearer]
                subprocess.run(wrk + ["-d2s", url], capture_output=True)  # warm-up: pool, cache
                calls0, cpu0 = redis_calls(redis_port), cpu_seconds(p.pid)
                out = subprocess.run(wrk + [f"-d{args.duration}s", url], capture_output=True, text=True).stdout
                cpu1, calls1 = cpu_seconds(p.pid), redis_calls(redis_port)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                if non2xx:
                    sys.exit(f"[auth-bench] {name}: {non2xx.group(1)} refused requests\n{out}")
                row = {"rps": n / args.duration, "cpu_us": (cpu1 - cpu0) / n * 1e6,
                       "redis_per_req": (calls1 - calls0 - 1) / n}  # -1: the INFO itself
                results[name].append(row)
                print(f"round {rnd + 1} {name:9s} {row['rps']:8.0f} req/s  {row['cpu_us']:5.1f} us/req  "
                      f"{row['redis_per_req']:.4f} Redis commands/req", file=sys.stderr, flush=True)
                stop(p)
    finally:
        for p in procs:
            stop(p)

    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in results.items()}
    off = med["auth-off"]["rps"]
    print(f"\n| variant | req/s (median of {args.rounds}) | ÷ auth off | proxy CPU µs/req | Redis commands/req |")
    print("| --- | --- | --- | --- | --- |")
    for name, m in med.items():
        print(f"| {name} | {m['rps']:,.0f} | {m['rps'] / off:.3f} | {m['cpu_us']:.1f} | {m['redis_per_req']:.4f} |")


if __name__ == "__main__":
    main()
