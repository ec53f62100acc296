#!/usr/bin/env python3
"""A stock JupyterHub for loadtest/tests/journey.rs, on loopback ports chosen before it starts.

DummyAuthenticator (with a password, so that a wrong one is refused) and
SimpleLocalProcessSpawner; the proxy is the CHP-compatible binary given with
--proxy-command (edgeproxy), launched by JupyterHub exactly as it launches CHP.
The configuration and the process clean-up come from the proxy's compatibility
test (proxy/tests/jupyterhub/run_hub_test.py), imported rather than repeated.

Prints `ready <public URL> <admin token> <password>` once GET /hub/api answers
through the proxy, then waits until stdin closes (or SIGTERM), stops the hub
and kills whatever it left behind. Run it with the venv's python
(scripts/ensure-pyenv.sh).
"""

import argparse
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "proxy" / "tests" / "jupyterhub"))
import run_hub_test as compat  # noqa: E402

PASSWORD = "journey-password"


def write_config(config, workdir, public_port, api_port, hub_port, token, args):
    compat.write_config(
        config,
        workdir=workdir,
        public_port=public_port,
        api_port=api_port,
        hub_port=hub_port,
        proxy_cmd=compat.resolve_proxy_command(args.proxy_command),
        singleuser=str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser"),
        admin_token=token,
        debug=False,
    )
    with config.open("a") as f:
        f.write(
            f"\nc.DummyAuthenticator.password = {PASSWORD!r}\n"
            # the journey's users are made up: let the token create them
            "c.Authenticator.allow_all = True\n"
            f"c.JupyterHub.concurrent_spawn_limit = {args.concurrent_spawn_limit}\n"
            # as zero-to-jupyterhub does: the spawn request answers at once, progress tells the rest
            "c.JupyterHub.slow_spawn_timeout = 0\n"
            "c.JupyterHub.log_level = 'WARN'\n"
            # the compatibility test's default_url points at a file it writes; use the stock one
            "c.Spawner.default_url = ''\n"
        )
        if args.spawner_cmd:
            # The same server command edgehub runs, for a like-for-like comparison; JupyterHub
            # passes --ip and --port itself.
            f.write(f"c.Spawner.cmd = {args.spawner_cmd!r}\nc.Spawner.args = []\n")
        if args.ssl_cert:
            # The public port speaks TLS (JupyterHub hands the files to its proxy as --ssl-key and
            # --ssl-cert); bind_url is set again so that its scheme follows.
            f.write(
                f"c.JupyterHub.ssl_cert = {args.ssl_cert!r}\n"
                f"c.JupyterHub.ssl_key = {args.ssl_key!r}\n"
                f"c.JupyterHub.bind_url = 'https://{compat.LOOPBACK}:{public_port}'\n"
            )
        if args.extra_config:
            f.write("\n" + Path(args.extra_config).read_text() + "\n")


def stop_hub(hub):
    """SIGTERM, then whatever it left behind (the proxy, servers) is killed."""
    if hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    leftovers = set(compat.descendants())
    if hub.poll() is None:
        leftovers.add(hub.pid)
    if leftovers:
        compat.kill_tree(leftovers)
    compat.reap_zombies()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proxy-command", required=True)
    p.add_argument("--timeout", type=float, default=60, help="seconds for the hub to come up")
    p.add_argument("--spawner-cmd", nargs="+", metavar="ARG",
                   help="each server's command instead of jupyterhub-singleuser (bench/hub-storm.sh)")
    p.add_argument("--concurrent-spawn-limit", type=int, default=20)
    p.add_argument("--extra-config", metavar="FILE",
                   help="jupyterhub_config.py lines appended last, e.g. another spawner "
                        "(bench/k8s-storm.sh: KubeSpawner against the simulator)")
    p.add_argument("--ssl-cert", metavar="FILE", help="serve the public port over TLS with this certificate")
    p.add_argument("--ssl-key", metavar="FILE", help="the certificate's key (with --ssl-cert)")
    p.add_argument("--ssl-ca", metavar="FILE", help="the CA that signed it, for the readiness check")
    p.add_argument("--edge-auth", metavar="TEMPLATE",
                   help="run the proxy with edge auth: this TOML, '{hub_api}' replaced by the hub's "
                        "API URL (given to the proxy as EDGEPROXY_AUTH_CONFIG)")
    p.add_argument("--log", metavar="FILE",
                   help="where to copy JupyterHub's log when it stops (it is deleted with the work dir)")
    args = p.parse_args()
    if bool(args.ssl_cert) != bool(args.ssl_key):
        p.error("--ssl-cert and --ssl-key go together")
    tls_context = ssl.create_default_context(cafile=args.ssl_ca) if args.ssl_cert else None

    compat.set_child_subreaper()
    stop = {"now": False}

    def on_term(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)

    workdir = Path(tempfile.mkdtemp(prefix="edgeload-journey-"))
    token = secrets.token_hex(16)
    venv_bin = Path(sys.prefix) / "bin"
    config = workdir / "jupyterhub_config.py"
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(16)
    log_path = workdir / "jupyterhub.log"
    deadline = time.monotonic() + args.timeout
    # JupyterHub is told its ports before it starts; one may be taken meanwhile: then it starts
    # again on new ones (see compat.START_ATTEMPTS).
    for attempt in range(1, compat.START_ATTEMPTS + 1):
        public_port, api_port, hub_port = compat.free_ports(3)
        write_config(config, workdir, public_port, api_port, hub_port, token, args)
        if args.edge_auth:
            # JupyterHub starts its proxy with its own environment.
            edge_auth = workdir / "edge-auth.toml"
            hub_api = f"http://{compat.LOOPBACK}:{hub_port}/hub/api"
            edge_auth.write_text(Path(args.edge_auth).read_text().replace("{hub_api}", hub_api))
            env["EDGEPROXY_AUTH_CONFIG"] = str(edge_auth)
        log = open(log_path, "wb")
        hub = subprocess.Popen(
            [str(venv_bin / "jupyterhub"), "-f", str(config)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"{'https' if args.ssl_cert else 'http'}://{compat.LOOPBACK}:{public_port}"
        up = False
        while time.monotonic() < deadline and hub.poll() is None and not stop["now"]:
            try:
                with urllib.request.urlopen(f"{url}/hub/api", timeout=2, context=tls_context) as r:
                    up = r.status == 200
            except Exception:
                pass
            if up:
                break
            time.sleep(0.2)
        if up or attempt == compat.START_ATTEMPTS or stop["now"] or not compat.lost_port_race(log_path):
            break
        stop_hub(hub)
        log.close()
        kept = log_path.with_name(f"jupyterhub-attempt{attempt}.log")
        log_path.replace(kept)
        print(f"a chosen port was taken before it was bound (log: {kept}); starting again on new ports",
              file=sys.stderr, flush=True)
        # A new start must not find the failed one's state (a stale proxy pid file).
        for stale in ("jupyterhub.sqlite", "jupyterhub-proxy.pid", "jupyterhub.pid"):
            (workdir / stale).unlink(missing_ok=True)
    rc = 0
    if up:
        print(f"ready {url} {token} {PASSWORD}", flush=True)
        # Block until the test closes our stdin (or dies: then stdin closes too).
        while not stop["now"]:
            if not sys.stdin.buffer.read(1):
                break
    else:
        why = (f"exited with code {hub.returncode}" if hub.poll() is not None
               else f"did not answer GET /hub/api within {args.timeout}s")
        print(f"FAIL: the hub {why}", flush=True)
        print(compat.tail(log_path), flush=True)
        rc = 1

    stop_hub(hub)
    log.close()
    if args.log:
        shutil.copyfile(log_path, args.log)
    if rc == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"(workdir kept: {workdir})", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
