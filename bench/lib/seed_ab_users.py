#!/usr/bin/env python3
"""The users of bench/seed-ab.sh, through a hub's public front door (Python 3 stdlib only).

`setup`: for each of N users, credentials and a running server:
  - login `form` (edgehub up's dev login): GET /hub/login for the `_xsrf` cookie, POST the form
    with it; the cookies the hub sets (edgehub's session cookie) go into every request of the
    user. Login `none` (the monolith): the admin token makes the user (POST /hub/api/users/NAME).
  - a user API token (POST /hub/api/users/NAME/tokens with the admin token), sent by every
    request as `Authorization: token …`: what jupyterhub-singleuser checks itself, on both hubs;
  - the server started with the admin token (POST /hub/api/users/NAME/server), at most
    --parallel pending at a time (100 Python servers starting at once on 2 cores would run into
    the spawn time-outs), and waited for until GET /hub/api/users/NAME says it is ready.
  Then every user's own URL is fetched once with its credentials and must answer 200, and user 0's
  URL with user 1's credentials must be refused (printed; the edge refuses it on edgehub, the
  server on the monolith). The URL list goes to --out in edgeload's --urls-file format, a line per
  user: `URL<TAB>Authorization: token …[<TAB>Cookie: …]`.

`stop`: DELETE every server of the users and wait until none is active.

Progress and the sanity lines go to stderr; a failure exits 1 with a message naming the user.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import sys
import time
import urllib.parse
from http.cookies import SimpleCookie

PATH = "/user/{name}/api/status"


def log(msg: str) -> None:
    print(f"seed-ab users: {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


class Hub:
    def __init__(self, url: str, admin_token: str, timeout: float):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.base = f"http://{self.host}:{self.port}"
        self.admin = admin_token
        self.timeout = timeout

    def request(self, method, path, *, headers=None, body=None):
        """One request on a fresh connection: (status, headers list, body bytes)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            h = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            c.close()

    def api(self, method, path, body=None):
        status, _, data = self.request(method, "/hub/api" + path,
                                       headers={"Authorization": f"token {self.admin}"}, body=body)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, parsed


def set_cookies(headers) -> dict[str, str]:
    jar = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            c = SimpleCookie()
            c.load(value)
            for k, m in c.items():
                jar[k] = m.value
    return jar


def form_login(hub: Hub, name: str) -> str:
    """edgehub's dev login, as a browser does it; returns the Cookie header of the session."""
    status, headers, _ = hub.request("GET", "/hub/login")
    xsrf = set_cookies(headers).get("_xsrf")
    if status != 200 or not xsrf:
        raise Failed(f"{name}: GET /hub/login answered {status} without an _xsrf cookie")
    form = urllib.parse.urlencode({"username": name, "password": "seed-ab", "_xsrf": xsrf})
    status, headers, _ = hub.request("POST", "/hub/login", body=form.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={xsrf}"})
    session = {k: v for k, v in set_cookies(headers).items() if k != "_xsrf" and v}
    if status not in (302, 303) or not session:
        raise Failed(f"{name}: POST /hub/login answered {status}, session cookies {sorted(session)}")
    return "; ".join(f"{k}={v}" for k, v in session.items())


def prepare_user(hub: Hub, name: str, login: str) -> dict:
    cookie = None
    if login == "form":
        cookie = form_login(hub, name)
    else:
        status, _ = hub.api("POST", f"/users/{name}")
        if status not in (201, 409):
            raise Failed(f"{name}: POST /hub/api/users/{name} answered {status}")
    status, body = hub.api("POST", f"/users/{name}/tokens", {"note": "seed-ab"})
    if status not in (200, 201) or not (body or {}).get("token"):
        raise Failed(f"{name}: POST /hub/api/users/{name}/tokens answered {status}")
    headers = {"Authorization": f"token {body['token']}"}
    if cookie:
        headers["Cookie"] = cookie
    return {"name": name, "headers": headers}


def start_server(hub: Hub, name: str, deadline: float) -> float:
    """Starts NAME's server and waits until it is ready; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        status, _ = hub.api("POST", f"/users/{name}/server")
        if status in (201, 202):
            break
        if status == 429 and time.monotonic() < deadline:
            time.sleep(1)
            continue
        raise Failed(f"{name}: POST /hub/api/users/{name}/server answered {status}")
    while time.monotonic() < deadline:
        status, user = hub.api("GET", f"/users/{name}")
        server = ((user or {}).get("servers") or {}).get("")
        if status == 200 and server and server.get("ready"):
            return time.monotonic() - t0
        if status == 200 and not server:
            raise Failed(f"{name}: the server stopped while starting (see the hub's log)")
        time.sleep(0.5)
    raise Failed(f"{name}: the server was not ready within the deadline")


def setup(a) -> None:
    hub = Hub(a.hub, a.admin_token, 30)
    names = [f"{a.prefix}{i}" for i in range(a.users)]
    deadline = time.monotonic() + a.timeout
    users = [prepare_user(hub, n, a.login) for n in names]
    log(f"{len(users)} users signed in, each with a token; starting their servers, {a.parallel} at a time")
    took = []
    with concurrent.futures.ThreadPoolExecutor(a.parallel) as pool:
        for i, t in enumerate(pool.map(lambda n: start_server(hub, n, deadline), names), 1):
            took.append(t)
            if i % 10 == 0 or i == len(names):
                log(f"{i}/{len(names)} servers ready")
    took.sort()
    log(f"start to ready: median {took[len(took) // 2]:.1f} s, longest {took[-1]:.1f} s")
    # Every user reaches their own server through the front door with their own credentials.
    for u in users:
        status, _, body = hub.request("GET", PATH.format(name=u["name"]), headers=u["headers"])
        if status != 200 or b"started" not in body:
            raise Failed(f"{u['name']}: GET {PATH.format(name=u['name'])} with its own credentials "
                         f"answered {status}: {body[:200]!r}")
    log("every user's GET /user/NAME/api/status with their own credentials: 200")
    if len(users) > 1:
        path = PATH.format(name=users[0]["name"])
        status, _, _ = hub.request("GET", path, headers=users[1]["headers"])
        log(f"{users[0]['name']}'s server with {users[1]['name']}'s credentials: {status}"
            + ("" if status in (401, 403) else "  <- NOT REFUSED"))
        if status not in (401, 403):
            raise Failed(f"{path} with another user's credentials answered {status}, not 401/403")
    with open(a.out, "w") as f:
        for u in users:
            fields = [a.hub.rstrip("/") + PATH.format(name=u["name"])]
            fields += [f"{k}: {v}" for k, v in u["headers"].items()]
            f.write("\t".join(fields) + "\n")


def stop(a) -> None:
    hub = Hub(a.hub, a.admin_token, 30)
    names = [f"{a.prefix}{i}" for i in range(a.users)]
    # JupyterHub answers a DELETE once the server has stopped (up to its slow_stop_timeout, 10 s):
    # one after the other, 100 servers take minutes.
    with concurrent.futures.ThreadPoolExecutor(a.parallel) as pool:
        list(pool.map(lambda n: hub.api("DELETE", f"/users/{n}/server"), names))
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        status, active = hub.api("GET", "/users?state=active")
        if status == 200 and not [u for u in active or [] if u.get("name") in names]:
            log("every server stopped")
            return
        time.sleep(0.5)
    raise Failed("servers still active after the deadline")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["setup", "stop"])
    p.add_argument("--hub", required=True, help="the front door, e.g. http://127.0.0.1:8000")
    p.add_argument("--admin-token", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--prefix", default="seed-")
    p.add_argument("--login", choices=["form", "none"], default="none")
    p.add_argument("--parallel", type=int, default=10, help="servers starting at once")
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole action")
    p.add_argument("--out", help="setup: the URL list for edgeload --urls-file")
    a = p.parse_args()
    try:
        if a.action == "setup":
            if not a.out:
                p.error("setup needs --out")
            setup(a)
        else:
            stop(a)
    except (Failed, OSError) as e:
        print(f"seed-ab users: FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
