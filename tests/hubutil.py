"""A real JupyterHub (with its real configurable-http-proxy) in a subprocess, for tests."""

import json
import os
import re
import secrets
import signal
import subprocess
import sys

import requests

from ptjaas_sandbox.cluster.server import free_port
from ptjaas_sandbox.localhub import local_hub_config

from tests.waiting import Fatal, wait_for


class Hub:
    def __init__(self, workdir, config_text="", cluster=None, env=None, start_timeout=60):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.cluster = cluster
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.proc = None
        self.log_path = os.path.join(self.workdir, "jupyterhub.log")
        self.set_config(config_text)

    def set_config(self, config_text):
        """Replace the test's part of the config (takes effect at the next start/restart)."""
        base = local_hub_config(port=self.port, hub_port=self.hub_port, proxy_api_port=self.proxy_api_port,
                                data_dir=self.workdir, api_tokens={"test-admin": self.token},
                                namespace=getattr(self.cluster, "namespace", "default"))
        with open(os.path.join(self.workdir, "jupyterhub_config.py"), "w") as f:
            f.write(base + "\nc.JupyterHub.log_level = 'DEBUG'\n# --- test config ---\n" + config_text
                    + "\n# --- ptjaas start-up check, last (as fragment 99 is in jupyterhub_config.d) ---\n"
                    "from ptjaas_spawner.fragmentcheck import check_startup\ncheck_startup(c)\n")

    def start(self, wait=True):
        env = dict(os.environ)
        bin_dir = os.path.dirname(sys.executable)
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
        if self.cluster is not None:
            env["KUBECONFIG"] = getattr(self.cluster, "hub_kubeconfig_path", self.cluster.kubeconfig_path)
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
                                     cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if wait:
            wait_for(self._up, timeout=self.start_timeout, interval=0.1, message=f"JupyterHub at {self.url}\n{self.logs()[-3000:]}")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise Fatal(f"JupyterHub exited with {self.proc.returncode}:\n{self.logs()[-5000:]}")
        try:
            return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def wait_exit(self, timeout=60):
        """For a hub expected to refuse to start: its exit code."""
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:  # a hub that died or was killed leaves its proxy (same process group) running
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._stop_orphaned_proxy()
        if not self._log.closed:
            self._log.close()

    def _stop_orphaned_proxy(self):
        """JupyterHub 6 starts configurable-http-proxy in a session of its own: a hub killed with
        SIGKILL leaves it running, outside the hub's process group. Its pid file names it; a hub
        killed before it wrote the file leaves one found by the ports this hub gave it."""
        pids = set()
        try:
            with open(os.path.join(self.workdir, "proxy.pid")) as f:  # local_hub_config's pid_file
                pids.add(int(f.read().strip()))
        except (OSError, ValueError):
            pass
        ours = (f"--port {self.port} ".encode(), f"--api-port {self.proxy_api_port} ".encode())
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        cmdline = f.read().replace(b"\0", b" ") + b" "
                except OSError:
                    continue
                if b"configurable-http-proxy" in cmdline and all(part in cmdline for part in ours):
                    pids.add(int(entry))
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"configurable-http-proxy" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def restart(self, config_text=None):
        self.stop()
        if config_text is not None:
            self.set_config(config_text)
        return self.start()

    def logs(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # --- HTTP --------------------------------------------------------------------------
    def api(self, method, path, token=None, **kwargs):
        headers = kwargs.pop("headers", {})
        headers["Authorization"] = f"token {token or self.token}"
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, **kwargs)

    def session(self, username, password=""):
        """A requests session logged in through the real login form."""
        s = requests.Session()
        r = s.get(f"{self.url}/hub/login", timeout=30)
        xsrf = s.cookies.get("_xsrf") or _xsrf_from(r.text)
        r = s.post(f"{self.url}/hub/login", data={"username": username, "password": password, "_xsrf": xsrf},
                   allow_redirects=False, timeout=60)
        if r.status_code not in (302, 303):
            raise AssertionError(f"login as {username} failed: {r.status_code}\n{r.text[:2000]}")
        s.headers["X-XSRFToken"] = s.cookies.get("_xsrf", xsrf)
        return s

    def wait_ready(self, username, server_name="", timeout=90):
        """Wait until the user's server is ready (through the REST API); return the server model."""
        def ready():
            r = self.api("GET", f"/users/{username}")
            server = (r.json().get("servers") or {}).get(server_name)
            if server and server.get("ready"):
                return server
            return None
        return wait_for(ready, timeout=timeout, interval=0.2, message=f"{username}'s server {server_name!r} to be ready")

    def wait_stopped(self, username, server_name="", timeout=90):
        def stopped():
            r = self.api("GET", f"/users/{username}")
            return server_name not in (r.json().get("servers") or {})
        return wait_for(stopped, timeout=timeout, interval=0.2, message=f"{username}'s server to stop")


def _xsrf_from(html):
    m = re.search(r'name="_xsrf"\s+value="([^"]+)"', html)
    return m.group(1) if m else ""


def spawner_owner(username="someone", groups=()):
    """``user=`` and ``hub=`` for a spawner made outside a hub (a test of its own methods): a
    user and a hub with the attributes a spawner reads of JupyterHub's own objects."""
    from types import SimpleNamespace

    user = SimpleNamespace(name=username, id=1, url=f"/user/{username}/", admin=False,
                           groups=[SimpleNamespace(name=g) for g in groups])
    hub = SimpleNamespace(public_host="", url="http://127.0.0.1:8081/hub/", base_url="/hub/",
                          api_url="http://127.0.0.1:8081/hub/api")
    return {"user": user, "hub": hub}


# ---- a user's servers through the hub's REST API (shared by the hub tests) ------------------

def server_path(user, name=""):
    return f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"


def server(hub, user, name=""):
    """The hub's model of the user's server ``name``, or None."""
    r = hub.api("GET", f"/users/{user}")
    r.raise_for_status()
    return r.json()["servers"].get(name)


def start(hub, user, options, name=""):
    """POST the start with ``options`` as the body (JupyterHub 5 and 6; 6 also accepts
    ``{"user_options": ...}``); the response."""
    return hub.api("POST", server_path(user, name), json=options)


def wait_ready(hub, user, name="", timeout=120):
    try:
        wait_for(lambda: (server(hub, user, name) or {}).get("ready"), timeout=timeout, interval=0.2,
                 message=f"{user}/{name} ready")
    except Exception:
        print(hub.logs()[-6000:])
        raise


def start_ready(hub, user, options, name=""):
    r = start(hub, user, options, name)
    assert r.status_code in (201, 202), r.text
    wait_ready(hub, user, name)


def stop(hub, user, name=""):
    r = hub.api("DELETE", server_path(user, name))
    assert r.status_code in (202, 204, 404), r.text
    wait_for(lambda: server(hub, user, name) is None, timeout=60, interval=0.2, message=f"{user}/{name} stopped")


def failure_message(hub, user, name="", timeout=60):
    """The refusal text the user sees (the spawn progress event of a failed start)."""
    def failed():
        r = hub.api("GET", server_path(user, name) + "/progress", stream=True, timeout=30)
        if r.status_code != 200:
            return None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("failed"):
                    return event["message"]
        return None
    return wait_for(failed, timeout=timeout, interval=0.2, message=f"{user}/{name} start to fail")


def usage(hub):
    """The admin usage report (``GET /hub/api/ptjaas/usage``)."""
    r = hub.api("GET", "/ptjaas/usage")
    assert r.status_code == 200, r.text
    return r.json()
