"""The culler's life is bound to its hub's: it stops at once on SIGTERM/SIGINT, exits when the
hub API stops answering for a bounded time, and a hub killed with SIGKILL does not leave its
culler service behind polling a dead address."""

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from ptjaas_sandbox.cluster.server import free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


def _gone(pid):
    """True once ``pid`` has exited (a zombie whose parent is gone counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _culler(*args, env=None):
    env = dict(os.environ, JUPYTERHUB_API_TOKEN="not-a-real-token", **(env or {}))
    env.pop("JUPYTERHUB_SERVICE_NAME", None)
    return subprocess.Popen([sys.executable, "-m", "ptjaas_spawner.culler", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_culler_exits_when_the_hub_api_has_not_answered_for_the_timeout():
    dead = f"http://127.0.0.1:{free_port()}/hub/api"
    proc = _culler(f"--url={dead}", "--timeout=600", "--cull-every=3600", "--hub-gone-timeout=2")
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 3, out
    assert f"the hub API at {dead} has not answered for 2s" in out
    # measured by the culler's own clock (from its start-up line), whatever the machine's load
    stamps = [datetime.strptime(m, "%Y-%m-%d %H:%M:%S.%f") for m in
              re.findall(r"^\[[IE] (\S+ \S+) PtjaasCuller\] (?:ptjaas culler: global|ptjaas culler exiting)", out, re.M)]
    assert len(stamps) == 2, out
    took = (stamps[1] - stamps[0]).total_seconds()
    assert 2 <= took < 8, f"the culler gave up after {took:.1f}s"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_culler_stops_promptly_on_a_signal(sig):
    dead = f"http://127.0.0.1:{free_port()}/hub/api"
    proc = _culler(f"--url={dead}", "--timeout=600", "--cull-every=3600", "--hub-gone-timeout=0")
    # running: its first pass is over (the hub API is not there) and it waits for the next one
    wait_for(lambda: proc.poll() is not None or "culling pass failed, hub API unavailable" in _peek(proc),
             timeout=30, message="the culler's first pass")
    started = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert time.monotonic() - started < 3, out
    assert f"stopping on {sig.name}" in out


_seen = {}


def _peek(proc):
    """What the culler has printed so far (non-blocking)."""
    import fcntl

    fd = proc.stdout.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        chunk = proc.stdout.read()
    except (BlockingIOError, TypeError):
        chunk = None
    _seen[proc.pid] = _seen.get(proc.pid, "") + (chunk or "")
    return _seen[proc.pid]


@pytest.mark.hub
def test_culler_service_exits_when_its_hub_is_killed(hub_factory):
    hub = hub_factory("""
from ptjaas_spawner.culler import install_culler
c.JupyterHub.services.append({"name": "another-service"})     # appended before the culler: lazy
install_culler(c, timeout=3600, cull_every=3600, hub_gone_timeout=30)
""")

    def culler_pid():
        return (hub.api("GET", "/services").json().get("ptjaas-culler") or {}).get("pid")

    pid = wait_for(culler_pid, timeout=60, interval=0.2, message="the culler service to run")
    assert "another-service" in hub.api("GET", "/services").json()
    # up and running (its log goes to the hub's)
    wait_for(lambda: "ptjaas culler: global timeout 3600s" in hub.logs(), timeout=60, interval=0.2,
             message="the culler to be up")
    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait(10)
    try:
        started = time.monotonic()
        wait_for(lambda: _gone(pid), timeout=20, interval=0.1, message=f"the culler (pid {pid}) to exit\n{hub.logs()[-3000:]}")
        assert time.monotonic() - started < 5   # it noticed its hub is gone, not a timeout
    finally:
        try:
            os.killpg(hub.proc.pid, signal.SIGTERM)   # the hub's proxy, orphaned by the SIGKILL
        except ProcessLookupError:
            pass
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_install_culler_accepts_lazily_appended_services_roles_and_sizes():
    import json

    from traitlets.config import Config

    from ptjaas_spawner.culler import install_culler

    c = Config()
    c.JupyterHub.services.append({"name": "earlier-service"})
    c.JupyterHub.load_roles.append({"name": "earlier-role", "services": ["earlier-service"]})
    c.PtjaasSpawner.sizes.update({"gpu": {"gpu": 1, "cull_idle_timeout": 60}})
    install_culler(c, timeout=3600)
    assert [s["name"] for s in c.JupyterHub.services] == ["earlier-service", "ptjaas-culler"]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["earlier-role", "ptjaas-culler"]
    policy = json.loads(c.JupyterHub.services[1]["environment"]["PTJAAS_CULL_POLICY"])
    assert policy["sizes"] == {"gpu": {"cull_idle_timeout": 60, "gpu": 1}}
