"""pytest plugin (`-p edgehub_reap`) for proxy/tests/jupyterhub6_test_proxy.rs: when the session
ends, it ends every process the suite started and left running.

JupyterHub starts its single-user servers and its proxy in sessions of their own
(`start_new_session=True`), so they are out of reach of the process group the Rust test kills,
and `test_external_proxy` never stops the server it spawns for "river" (its finalizer only stops
the hub's HTTP server): without this, each run left a `python -m jupyterhub.tests.mocksu`
behind. They are still children of pytest when the session ends; the hook ends them, each with
its own session's process group. It also runs after a Ctrl-C (SIGINT), which is how the Rust
test stops a run that outlived its timeout.
"""

import os
import signal
import sys
import time


def _children():
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # The fields after the command name (which may hold spaces or parentheses).
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[1]) == me:
            found.append((int(entry), int(fields[2]), cmdline))
    return found


def _signal(pid, pgid, sig):
    # A child that leads its own group (a new session) is ended with whatever it started.
    try:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pytest_unconfigure(config):
    left = _children()
    if not left:
        return
    for pid, pgid, cmdline in left:
        print(f"edgehub_reap: ending pid {pid} the suite left running: {cmdline}", file=sys.stderr)
        _signal(pid, pgid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        pid in (p for p, _, _ in _children()) for pid, _, _ in left
    ):
        time.sleep(0.1)
    still = {p for p, _, _ in _children()}
    for pid, pgid, _ in left:
        if pid in still:
            _signal(pid, pgid, signal.SIGKILL)
    for pid, _, _ in left:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
