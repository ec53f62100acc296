#!/usr/bin/env python3
"""JupyterHub compatibility test for a configurable-http-proxy (CHP) compatible proxy.

Runs a stock JupyterHub (DummyAuthenticator + SimpleLocalProcessSpawner) that
launches and drives the proxy given with --proxy-command exactly as it would
launch CHP, then exercises the whole user path through the proxy's public port:

  hub up -> browser login -> spawn -> single-user API (OAuth cookie flow)
  -> kernel start + WebSocket execute -> proxy REST API routes
  -> stop server (route removed) -> hub shutdown, no processes left.

With --replica (edgeproxy's shared route store), proxies the hub never spoke
to must serve the user's server as well, and drop the route when it stops.

Run it with the venv's python (see scripts/ensure-pyenv.sh):

    PYENV=$(bash scripts/ensure-pyenv.sh | tail -n1)
    "$PYENV/bin/python" proxy/tests/jupyterhub/run_hub_test.py \
        --proxy-command /path/to/edgeproxy [--workdir DIR] [--timeout 120]

Prints one `ok: <step>` line per passed step and exits 0 only if all passed.
On failure it prints `FAIL: <step>: <reason>`, the last lines of the hub log
(which includes the proxy's output) and exits 1.
Only loopback addresses are used.
"""

import argparse
import asyncio
import ctypes
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlparse

try:
    import requests
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(
        f"FAIL: setup: {e}. Run this script with the python of the venv made by "
        "scripts/ensure-pyenv.sh"
    )

LOOPBACK = "127.0.0.1"
USER = "alice"
SERVICE_NAME = "edgehub-compat-test"
LOG_TAIL_LINES = 80
REQ_TIMEOUT = 10  # seconds, per HTTP request
HELLO_FILE = "edgehub-hello.txt"
HELLO_TEXT = "hello from edgehub compat test\n"


class StepFailed(Exception):
    pass


class Deadline:
    """Overall time budget; every wait is bounded by it."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()

    def limit(self, seconds):
        """Seconds to wait for a sub-step: min(seconds, what is left)."""
        rem = self.remaining()
        if rem <= 0:
            raise StepFailed("overall --timeout exhausted")
        return min(seconds, rem)


# --------------------------------------------------------------------------- processes


def set_child_subreaper():
    """Become a subreaper so that orphaned descendants (the proxy, single-user
    servers and kernels all run in their own sessions) are re-parented to us and
    can be found and killed at the end. Linux only; best effort."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


def _proc_table():
    """{pid: (ppid, state, cmdline)} for every visible process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            # comm may contain spaces/parens: split after the last ')'
            rest = stat[stat.rindex(")") + 2 :].split()
            state, ppid = rest[0], int(rest[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        table[pid] = (ppid, state, cmd)
    return table


def descendants(root=None, include_zombies=False):
    """Live descendants of `root` (default: this process) as {pid: cmdline}."""
    root = os.getpid() if root is None else root
    table = _proc_table()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        ppid, state, cmd = table[pid]
        if include_zombies or state != "Z":
            out[pid] = cmd
        stack.extend(children.get(pid, []))
    return out


def reap_zombies():
    """Reap any exited children (re-parented orphans) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def kill_tree(pids, grace=3.0):
    """SIGTERM the given pids and their process groups, then SIGKILL leftovers."""
    pids = set(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(pids):
            for fn, target in ((os.killpg, pid), (os.kill, pid)):
                try:
                    if fn is os.killpg:
                        pgid = os.getpgid(target)
                        if pgid == os.getpgid(0):
                            continue  # never signal our own group
                        fn(pgid, sig)
                    else:
                        fn(target, sig)
                except (ProcessLookupError, PermissionError, OSError):
                    pass
        t_end = time.monotonic() + (grace if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < t_end:
            reap_zombies()
            pids = {p for p in pids if pid_alive(p)}
            if not pids:
                return set()
            time.sleep(0.1)
    reap_zombies()
    return {p for p in pids if pid_alive(p)}


# --------------------------------------------------------------------------- helpers


# JupyterHub must be told its ports before it starts: it passes --port and --api-port to the
# proxy and binds the hub's port itself, none of which can be port 0 and read back. So they are
# picked here by binding and releasing, and another process may take one before JupyterHub or
# the proxy binds it. A start that fails that way is made again on new ports (lost_port_race),
# START_ATTEMPTS times at most.
START_ATTEMPTS = 3


def free_ports(n):
    """n distinct TCP ports on loopback, free a moment ago (sockets held open until all chosen)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def lost_port_race(log_path):
    """Whether the hub's log says a port chosen by free_ports was taken before it was bound: the
    proxy's `cannot bind the public listener on ...: Address already in use`, or the hub's own
    `OSError: [Errno 98] Address already in use`."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return False
    return "Address already in use" in text


def tail(path, n=LOG_TAIL_LINES):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def short(text, n=300):
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= n else text[:n] + "..."


def resolve_proxy_command(value):
    """--proxy-command: an executable path, or a shell-quoted command line."""
    if os.path.exists(value):
        argv = [value]
    else:
        argv = shlex.split(value)
        if not argv:
            raise SystemExit("FAIL: setup: empty --proxy-command")
    exe = argv[0]
    if os.sep in exe:
        exe = os.path.abspath(exe)
    else:
        found = shutil.which(exe)
        if found:
            exe = found
    argv[0] = exe
    return argv


def write_config(path, *, workdir, public_port, api_port, hub_port, proxy_cmd,
                 singleuser, admin_token, debug):
    cfg = f"""# Generated by run_hub_test.py -- edgehub proxy compatibility test.
c = get_config()  # noqa

c.JupyterHub.bind_url = {f'http://{LOOPBACK}:{public_port}'!r}
c.JupyterHub.hub_ip = {LOOPBACK!r}
c.JupyterHub.hub_port = {hub_port!r}

c.ConfigurableHTTPProxy.command = {proxy_cmd!r}
c.ConfigurableHTTPProxy.api_url = {f'http://{LOOPBACK}:{api_port}'!r}
c.ConfigurableHTTPProxy.pid_file = {str(workdir / 'jupyterhub-proxy.pid')!r}
c.ConfigurableHTTPProxy.debug = {debug!r}

c.JupyterHub.authenticator_class = 'dummy'
c.Authenticator.allow_all = True

c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = {str(workdir / 'home' / '{username}')!r}
c.Spawner.cmd = [{singleuser!r}]
# the test may run as root (CI); jupyter_server refuses root without this.
# Kernels talk to their server over IPC sockets, not TCP: jupyter_client picks TCP ports by
# binding port 0 and letting go, and a test running beside this one can take such a port in
# between (a kernel died with "Address already in use" in a CI run). A socket's path must fit
# in 107 bytes, so the runtime directory is the short one below, not under the home directory.
c.Spawner.args = ['--allow-root', '--KernelManager.transport=ipc']
c.Spawner.environment = {{'JUPYTER_RUNTIME_DIR': {str(workdir / 'rt')!r}}}
c.Spawner.ip = {LOOPBACK!r}
c.Spawner.start_timeout = 45
c.Spawner.http_timeout = 45
# '/user/alice/' redirects here; an authenticated non-API page, so a browser
# without a server cookie is sent through the hub's OAuth flow.
c.Spawner.default_url = '/files/{HELLO_FILE}'

c.JupyterHub.db_url = {'sqlite:///' + str(workdir / 'jupyterhub.sqlite')!r}
c.JupyterHub.cookie_secret_file = {str(workdir / 'jupyterhub_cookie_secret')!r}
c.JupyterHub.pid_file = {str(workdir / 'jupyterhub.pid')!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.log_level = {'DEBUG' if debug else 'INFO'!r}

# Admin API token for the test driver.
c.JupyterHub.services = [{{'name': {SERVICE_NAME!r}, 'api_token': {admin_token!r}}}]
c.JupyterHub.load_roles = [
    {{
        'name': 'edgehub-compat-test-admin',
        'scopes': ['admin:users', 'admin:servers', 'tokens', 'read:users', 'access:servers'],
        'services': [{SERVICE_NAME!r}],
    }}
]
"""
    path.write_text(cfg)


# --------------------------------------------------------------------------- the test


class HubTest:
    def __init__(self, args):
        self.args = args
        self.deadline = Deadline(args.timeout)
        self.venv_bin = Path(sys.prefix) / "bin"
        self.proc = None
        self.log_file = None
        self.steps_ok = []
        self.proxy_pid = None

    # ----------------------------------------------------------- utilities

    def ok(self, step, detail=""):
        self.steps_ok.append(step)
        print(f"ok: {step}" + (f" ({detail})" if detail else ""), flush=True)

    def hub_exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def check_hub_alive(self):
        if self.hub_exited():
            raise StepFailed(f"jupyterhub exited with code {self.proc.returncode}")

    def poll(self, what, fn, timeout, interval=0.25):
        """Call fn() until it returns a truthy value; fail on timeout or hub exit."""
        timeout = self.deadline.limit(timeout)
        t_end = time.monotonic() + timeout
        last = None
        while True:
            self.check_hub_alive()
            try:
                result = fn()
                if result:
                    return result
            except StepFailed:
                raise
            except Exception as e:  # connection refused etc: keep polling
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= t_end:
                raise StepFailed(
                    f"timed out after {timeout:.1f}s waiting for {what}"
                    + (f"; last error: {short(last)}" if last else "")
                )
            time.sleep(interval)

    def hub_api(self, method, path, expect=None, **kw):
        url = f"{self.public_url}/hub/api{path}"
        r = self.admin.request(method, url, timeout=REQ_TIMEOUT, allow_redirects=False, **kw)
        if expect is not None and r.status_code not in expect:
            raise StepFailed(
                f"{method} {url} -> {r.status_code} (expected {expect}): {short(r.text)}"
            )
        return r

    def proxy_routes(self, token=None):
        headers = {"Authorization": f"token {self.proxy_token if token is None else token}"}
        return self.plain.get(
            f"{self.api_url}/api/routes", headers=headers, timeout=REQ_TIMEOUT
        )

    def get_user_model(self):
        r = self.hub_api("GET", f"/users/{USER}", expect=(200,))
        return r.json()

    # ----------------------------------------------------------- steps

    def setup(self):
        args = self.args
        self.proxy_cmd = resolve_proxy_command(args.proxy_command)
        if not (os.path.isfile(self.proxy_cmd[0]) and os.access(self.proxy_cmd[0], os.X_OK)):
            raise StepFailed(f"proxy command {self.proxy_cmd[0]!r} is not an executable file")
        if args.workdir:
            self.workdir = Path(args.workdir).resolve()
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="edgehub-hubtest-"))
        for exe in ("jupyterhub", "jupyterhub-singleuser"):
            if not (self.venv_bin / exe).exists():
                raise StepFailed(
                    f"{self.venv_bin / exe} not found: run this script with the venv's python "
                    "(scripts/ensure-pyenv.sh)"
                )

        home = self.workdir / "home" / USER
        home.mkdir(parents=True, exist_ok=True)
        (home / HELLO_FILE).write_text(HELLO_TEXT)
        self.admin_token = secrets.token_hex(24)
        self.proxy_token = secrets.token_hex(24)
        self.config_path = self.workdir / "jupyterhub_config.py"
        self.log_path = self.workdir / "jupyterhub.log"

        # Sessions. trust_env=False: never route loopback traffic via *_proxy env vars.
        self.plain = requests.Session()
        self.plain.trust_env = False
        self.admin = requests.Session()
        self.admin.trust_env = False
        self.admin.headers["Authorization"] = f"token {self.admin_token}"
        self.browser = requests.Session()
        self.browser.trust_env = False
        self.browser.headers["User-Agent"] = "Mozilla/5.0 (edgehub-compat-test)"


    def configure(self):
        """Fresh state and new ports for one start of JupyterHub."""
        # A reused --workdir (or a failed start) must not carry state over: a stale proxy pid
        # file would make JupyterHub signal whatever process now has that pid.
        for stale in ("jupyterhub.sqlite", "jupyterhub-proxy.pid", "jupyterhub.pid"):
            (self.workdir / stale).unlink(missing_ok=True)
        self.public_port, self.api_port, self.hub_port = free_ports(3)
        self.public_url = f"http://{LOOPBACK}:{self.public_port}"
        self.api_url = f"http://{LOOPBACK}:{self.api_port}"
        write_config(
            self.config_path,
            workdir=self.workdir,
            public_port=self.public_port,
            api_port=self.api_port,
            hub_port=self.hub_port,
            proxy_cmd=self.proxy_cmd,
            singleuser=str(self.venv_bin / "jupyterhub-singleuser"),
            admin_token=self.admin_token,
            debug=self.args.debug,
        )
        print(
            f"workdir {self.workdir}; public {self.public_url}; proxy api {self.api_url}; "
            f"hub {LOOPBACK}:{self.hub_port}; proxy {shlex.join(self.proxy_cmd)}",
            flush=True,
        )

    def start_until_up(self):
        """Starts JupyterHub and waits until it answers through the proxy; on new ports again
        when a chosen port was taken meanwhile (see START_ATTEMPTS)."""
        for attempt in range(1, START_ATTEMPTS + 1):
            self.configure()
            self.start_hub()
            try:
                self.step_hub_up()
                return
            except StepFailed:
                if attempt == START_ATTEMPTS or not lost_port_race(self.log_path):
                    raise
            leftovers = self.cleanup()
            if leftovers:
                raise StepFailed(f"could not kill pids {sorted(leftovers)} of the failed start")
            kept = self.log_path.with_name(f"jupyterhub-attempt{attempt}.log")
            self.log_path.replace(kept)
            print(
                f"a chosen port was taken before it was bound (log: {kept}); "
                f"starting again on new ports ({attempt + 1}/{START_ATTEMPTS})",
                flush=True,
            )

    def start_hub(self):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTERHUB_", "JUPYTER_", "JPY_", "CONFIGPROXY_"))
            and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        env["PATH"] = str(self.venv_bin) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env["CONFIGPROXY_AUTH_TOKEN"] = self.proxy_token
        env["VIRTUAL_ENV"] = sys.prefix
        env["PYTHONUNBUFFERED"] = "1"
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.venv_bin / "jupyterhub"), "-f", str(self.config_path)],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def step_hub_up(self):
        def ready():
            r = self.plain.get(f"{self.public_url}/hub/api", timeout=REQ_TIMEOUT)
            if r.status_code != 200:
                return False
            return r.json()

        info = self.poll("the hub to answer GET /hub/api through the proxy", ready, 60)
        if "version" not in info:
            raise StepFailed(f"/hub/api returned unexpected JSON: {short(info)}")
        pid_file = self.workdir / "jupyterhub-proxy.pid"
        try:
            self.proxy_pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            self.proxy_pid = None
        self.ok("hub up", f"jupyterhub {info['version']} via proxy pid {self.proxy_pid}")

    def step_login(self):
        b = self.browser
        r = b.get(f"{self.public_url}/hub/login", timeout=REQ_TIMEOUT)
        if r.status_code != 200:
            raise StepFailed(f"GET /hub/login -> {r.status_code}: {short(r.text)}")
        m = re.search(r'name="_xsrf"\s+value="([^"]+)"', r.text) or re.search(
            r'value="([^"]+)"\s+name="_xsrf"', r.text
        )
        if not m:
            raise StepFailed("no _xsrf field in the login form")
        xsrf = m.group(1)
        form_action = re.search(r'<form[^>]*action="([^"]*)"', r.text)
        action = form_action.group(1).replace("&amp;", "&") if form_action else "/hub/login"
        r = b.post(
            urljoin(r.url, action),
            data={"username": USER, "password": "not-checked", "_xsrf": xsrf},
            allow_redirects=False,
            timeout=REQ_TIMEOUT,
        )
        if r.status_code != 302:
            raise StepFailed(f"POST login -> {r.status_code} (expected 302): {short(r.text)}")
        if "jupyterhub-hub-login" not in b.cookies.keys():
            raise StepFailed(f"no jupyterhub-hub-login cookie after login; got {list(b.cookies.keys())}")
        r = b.get(f"{self.public_url}/hub/api/user", timeout=REQ_TIMEOUT,
                  headers={"X-XSRFToken": b.cookies.get("_xsrf", "")})
        if r.status_code != 200 or r.json().get("name") != USER:
            raise StepFailed(f"GET /hub/api/user with login cookie -> {r.status_code}: {short(r.text)}")
        self.ok("login", f"cookie session for {USER}")

    def step_spawn(self):
        # Browser flow: GET /hub/spawn starts the default server (no options form).
        r = self.browser.get(
            f"{self.public_url}/hub/spawn", allow_redirects=False, timeout=REQ_TIMEOUT
        )
        if r.status_code not in (200, 302, 303):
            raise StepFailed(f"GET /hub/spawn -> {r.status_code}: {short(r.text)}")
        loc = r.headers.get("Location", "")

        def spawned():
            model = self.get_user_model()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if not server and not model.get("pending") and r.status_code == 200:
                # the spawn form was shown instead of starting: start via REST API
                self.hub_api("POST", f"/users/{USER}/server", expect=(201, 202, 400))
            return False

        server = self.poll(f"{USER}'s server to be ready", spawned, 60, interval=0.5)
        self.ok("spawn", f"server ready at {server.get('url')} (spawn redirect: {loc or r.status_code})")

    def step_route(self):
        r = self.proxy_routes()
        if r.status_code != 200:
            raise StepFailed(f"GET {self.api_url}/api/routes -> {r.status_code}: {short(r.text)}")
        routes = r.json()
        route = routes.get(f"/user/{USER}")
        if not route:
            raise StepFailed(f"no /user/{USER} route in proxy table: {short(json.dumps(routes), 600)}")
        if route.get("user") != USER:
            raise StepFailed(f"route /user/{USER} has user={route.get('user')!r}: {route}")
        if not route.get("jupyterhub") or not str(route.get("target", "")).startswith("http://"):
            raise StepFailed(f"route /user/{USER} lacks jupyterhub/target: {route}")
        if not routes.get("/", {}).get("hub"):
            raise StepFailed(f"no hub route '/' with hub=true: {short(json.dumps(routes), 600)}")
        bad = self.proxy_routes(token="wrong-" + self.proxy_token)
        if bad.status_code != 403:
            raise StepFailed(f"GET /api/routes with a wrong token -> {bad.status_code} (expected 403)")
        self.ok("proxy route", f"/user/{USER} -> {route['target']}")

    def step_singleuser(self):
        # Browser flow through the proxy: /user/alice/ -> hub OAuth -> callback -> cookie.
        b = self.browser
        url = f"{self.public_url}/user/{USER}/"
        chain = []
        for _ in range(12):
            r = b.get(url, allow_redirects=False, timeout=REQ_TIMEOUT)
            chain.append(f"{r.status_code} {urlparse(url).path}")
            if r.status_code in (301, 302, 303, 307, 308):
                url = urljoin(url, r.headers["Location"])
                if urlparse(url).netloc != f"{LOOPBACK}:{self.public_port}":
                    raise StepFailed(f"redirected away from the proxy to {url}; chain {chain}")
                continue
            break
        else:
            raise StepFailed(f"too many redirects: {chain}")
        if r.status_code != 200:
            raise StepFailed(f"OAuth/browser flow ended with {r.status_code}: chain {chain}: {short(r.text)}")
        if r.text != HELLO_TEXT:
            raise StepFailed(f"{url} returned {short(r.text)!r}, expected the content of {HELLO_FILE}")
        if not any(c.startswith(f"jupyterhub-user-{USER}") for c in b.cookies.keys()):
            raise StepFailed(f"no jupyterhub-user-{USER} cookie after OAuth; chain {chain}")
        r = b.get(f"{self.public_url}/user/{USER}/api/status", timeout=REQ_TIMEOUT)
        if r.status_code != 200:
            raise StepFailed(f"GET /user/{USER}/api/status with cookie -> {r.status_code}: {short(r.text)}")
        status = r.json()
        for key in ("started", "last_activity", "kernels", "connections"):
            if key not in status:
                raise StepFailed(f"/user/{USER}/api/status JSON lacks {key!r}: {status}")
        r = b.get(f"{self.public_url}/user/{USER}/api", timeout=REQ_TIMEOUT)
        if r.status_code != 200 or "version" not in r.json():
            raise StepFailed(f"GET /user/{USER}/api -> {r.status_code}: {short(r.text)}")
        self.ok("single-user via proxy", f"api/status 200, jupyter_server {r.json()['version']}; "
                f"redirects: {' -> '.join(chain)}")

    def replica_routes(self, api_url, token):
        r = self.plain.get(f"{api_url}/api/routes", headers={"Authorization": f"token {token}"},
                           timeout=REQ_TIMEOUT)
        if r.status_code != 200:
            raise StepFailed(f"GET {api_url}/api/routes -> {r.status_code}: {short(r.text)}")
        return r.json()

    def step_replicas(self):
        # Proxies JupyterHub never spoke to, sharing the route store with the one it launched:
        # the user's route and server are there too, through each one's own public port.
        for public_url, api_url, token in self.args.replica:
            def has_route():
                return f"/user/{USER}" in self.replica_routes(api_url, token)

            self.poll(f"route /user/{USER} on the replica at {api_url}", has_route, 5, interval=0.05)
            r = self.browser.get(f"{public_url}/user/{USER}/api/status", timeout=REQ_TIMEOUT)
            if r.status_code != 200 or "kernels" not in r.json():
                raise StepFailed(f"GET {public_url}/user/{USER}/api/status -> {r.status_code}: {short(r.text)}")
        self.ok("replicas", f"{len(self.args.replica)} more replicas serve /user/{USER}")

    def step_kernel(self):
        r = self.hub_api(
            "POST",
            f"/users/{USER}/tokens",
            expect=(200, 201),
            json={"note": "edgehub compat test", "expires_in": 600},
        )
        self.user_token = r.json()["token"]
        headers = {"Authorization": f"token {self.user_token}"}
        r = self.plain.post(
            f"{self.public_url}/user/{USER}/api/kernels",
            json={"name": "python3"},
            headers=headers,
            timeout=REQ_TIMEOUT * 3,
        )
        if r.status_code != 201:
            raise StepFailed(f"POST /user/{USER}/api/kernels -> {r.status_code}: {short(r.text)}")
        self.kernel_id = r.json()["id"]
        self.ok("kernel started", f"id {self.kernel_id}")

        # 1) API-client style: token in the Authorization header.
        self._run_ws("kernel websocket (token)", {"Authorization": f"token {self.user_token}"})
        # 2) Browser style: the single-user cookie from the OAuth flow plus an
        #    Origin header. jupyter_server then checks Origin against the Host
        #    header it receives, so this fails if the proxy rewrites Host.
        ws_http_url = f"{self.public_url}/user/{USER}/api/kernels/{self.kernel_id}/channels"
        cookie = requests.cookies.get_cookie_header(
            self.browser.cookies, requests.Request("GET", ws_http_url).prepare()
        )
        if not cookie:
            raise StepFailed("browser session has no cookie for the kernel websocket path")
        self._run_ws(
            "kernel websocket (browser cookie)",
            {"Cookie": cookie, "Origin": self.public_url, "User-Agent": self.browser.headers["User-Agent"]},
        )

        r = self.plain.delete(
            f"{self.public_url}/user/{USER}/api/kernels/{self.kernel_id}",
            headers=headers,
            timeout=REQ_TIMEOUT,
        )
        if r.status_code != 204:
            raise StepFailed(f"DELETE kernel -> {r.status_code}: {short(r.text)}")

    def _run_ws(self, label, headers):
        timeout = self.deadline.limit(30)
        try:
            outcome = asyncio.run(
                asyncio.wait_for(self._ws_execute("print(6*7)", headers), timeout)
            )
        except asyncio.TimeoutError:
            raise StepFailed(
                f"{label}: no stream '42' + execute_reply ok within {timeout:.0f}s over the websocket"
            )
        except StepFailed as e:
            raise StepFailed(f"{label}: {e}")
        self.ok(label, outcome)

    async def _ws_execute(self, code, headers):
        ws_url = (
            f"ws://{LOOPBACK}:{self.public_port}/user/{USER}/api/kernels/"
            f"{self.kernel_id}/channels?session_id={uuid.uuid4().hex}"
        )
        req = HTTPRequest(
            ws_url,
            headers=headers,
            connect_timeout=REQ_TIMEOUT,
            request_timeout=REQ_TIMEOUT,
        )
        try:
            conn = await websocket_connect(req)
        except Exception as e:
            raise StepFailed(f"websocket connect to {ws_url} failed: {type(e).__name__}: {e}")
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": USER,
                "session": uuid.uuid4().hex,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "buffers": [],
            "channel": "shell",
        }
        try:
            await conn.write_message(json.dumps(msg))
            stream_text, reply_status = None, None
            seen = []
            while stream_text is None or reply_status is None:
                raw = await conn.read_message()
                if raw is None:
                    raise StepFailed(
                        f"websocket closed by peer (code {conn.close_code}); messages seen: {seen}"
                    )
                if isinstance(raw, bytes):
                    continue  # binary protocol frames are not expected without subprotocol
                m = json.loads(raw)
                mtype = m.get("header", {}).get("msg_type") or m.get("msg_type")
                parent = m.get("parent_header", {}).get("msg_id")
                seen.append(f"{m.get('channel')}/{mtype}")
                if parent != msg_id:
                    continue
                if mtype == "stream" and m["content"].get("name") == "stdout":
                    stream_text = (stream_text or "") + m["content"]["text"]
                    if stream_text.strip() != "42":
                        raise StepFailed(f"unexpected stdout {stream_text!r}")
                elif mtype == "error":
                    raise StepFailed(f"kernel error: {m['content'].get('ename')}: {m['content'].get('evalue')}")
                elif mtype == "execute_reply":
                    reply_status = m["content"].get("status")
                    if reply_status != "ok":
                        raise StepFailed(f"execute_reply status {reply_status!r}: {m['content']}")
            return f"stream {stream_text.strip()!r}, execute_reply {reply_status}"
        finally:
            conn.close()

    def step_stop(self):
        r = self.hub_api("DELETE", f"/users/{USER}/server", expect=(202, 204))

        def stopped():
            model = self.get_user_model()
            return not model.get("servers") and not model.get("pending")

        self.poll(f"{USER}'s server to stop", stopped, 30, interval=0.5)

        def route_gone():
            rr = self.proxy_routes()
            if rr.status_code != 200:
                raise StepFailed(f"GET /api/routes -> {rr.status_code}: {short(rr.text)}")
            return f"/user/{USER}" not in rr.json()

        self.poll(f"route /user/{USER} to disappear", route_gone, 15)
        for _, api_url, token in self.args.replica:
            self.poll(f"route /user/{USER} to disappear from {api_url}",
                      lambda: f"/user/{USER}" not in self.replica_routes(api_url, token), 5, interval=0.05)
        self.ok("server stopped", f"DELETE -> {r.status_code}; route /user/{USER} removed")

    def step_shutdown(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.deadline.limit(20))
        except subprocess.TimeoutExpired:
            raise StepFailed("jupyterhub did not exit within 20s of SIGTERM")
        # JupyterHub SIGTERMs the proxy but does not wait for it: give it a moment.
        t_end = time.monotonic() + 10
        left = descendants()
        while left and time.monotonic() < t_end:
            time.sleep(0.1)
            reap_zombies()
            left = descendants()
        if left:
            hint = ""
            if self.proxy_pid in left:
                hint = (" -- the proxy (pid %d) did not exit on the SIGTERM JupyterHub sent it"
                        % self.proxy_pid)
            raise StepFailed(
                "processes still running 10s after jupyterhub exited: "
                + "; ".join(f"{p} {short(c, 120)}" for p, c in left.items())
                + hint
            )
        self.ok("hub shutdown", f"jupyterhub exit code {self.proc.returncode}; no processes left")

    # ----------------------------------------------------------- driver

    def cleanup(self):
        leftovers = set()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        # Anything left (proxy, single-user server, kernels live in their own sessions;
        # as subreaper they are re-parented to us).
        extra = set(descendants())
        if self.proxy_pid and pid_alive(self.proxy_pid):
            extra.add(self.proxy_pid)
        if extra:
            leftovers = kill_tree(extra)
        reap_zombies()
        if self.log_file:
            self.log_file.close()
        return leftovers

    def run(self):
        step = "setup"
        failed = None
        try:
            self.setup()
            step = "hub up"
            self.start_until_up()
            for step, fn in (
                ("login", self.step_login),
                ("spawn", self.step_spawn),
                ("proxy route", self.step_route),
                ("single-user via proxy", self.step_singleuser),
                *((("replicas", self.step_replicas),) if self.args.replica else ()),
                ("kernel", self.step_kernel),
                ("server stopped", self.step_stop),
                ("hub shutdown", self.step_shutdown),
            ):
                fn()
        except StepFailed as e:
            failed = f"{step}: {e}"
        except KeyboardInterrupt:
            failed = f"{step}: interrupted"
        except Exception as e:
            failed = f"{step}: unexpected {type(e).__name__}: {e}"
        finally:
            leftovers = self.cleanup()
        if leftovers and not failed:
            failed = f"cleanup: could not kill pids {sorted(leftovers)}"
        if failed:
            print(f"FAIL: {failed}", flush=True)
            if getattr(self, "log_path", None):
                print(f"----- last {LOG_TAIL_LINES} lines of {self.log_path} -----", flush=True)
                print(tail(self.log_path), flush=True)
                print("----- end of hub log -----", flush=True)
                print(f"(workdir kept: {self.workdir})", flush=True)
            return 1
        print(f"PASS: {len(self.steps_ok)} steps ok", flush=True)
        if not self.args.workdir and not self.args.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxy-command", required=True,
                   help="CHP-compatible proxy executable (or a shell-quoted command line)")
    p.add_argument("--workdir", help="directory for config, db, logs, homes (default: a new temp dir, "
                   "removed after a passing run)")
    p.add_argument("--timeout", type=float, default=120, help="overall time budget in seconds (default 120)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temp workdir after a pass")
    p.add_argument("--debug", action="store_true", help="DEBUG logging for the hub and the proxy")
    p.add_argument("--replica", nargs=3, action="append", default=[],
                   metavar=("PUBLIC_URL", "API_URL", "TOKEN"),
                   help="another proxy sharing the launched one's route store: it must serve the "
                        "user's server too, and drop its route when it stops (repeatable)")
    args = p.parse_args()

    set_child_subreaper()
    # turn SIGTERM into a clean failure so cleanup still runs
    def on_sigterm(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.monotonic()
    rc = HubTest(args).run()
    print(f"elapsed {time.monotonic() - t0:.1f}s", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
