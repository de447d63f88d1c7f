"""`ptjaas demo`, the README's main job: a person logs in, starts a server, saves a file, and
finds it again after the demo itself restarts on the same state dir."""

import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from ptjaas_sandbox.cluster.server import free_port

from waiting import Fatal, wait_for

pytestmark = pytest.mark.hub


class Demo:
    def __init__(self, state_dir, port, extra_args=()):
        self.state_dir, self.port = str(state_dir), port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(self.state_dir, "demo.log")
        os.makedirs(self.state_dir, exist_ok=True)
        self.extra_args = list(extra_args)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ptjaas_spawner.cli", "demo", "--state-dir", self.state_dir,
                                      "--port", str(self.port), *self.extra_args],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._up, timeout=90, interval=0.2, message=f"the demo hub\n{self.output()[-3000:]}")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise Fatal(f"ptjaas demo exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
        try:
            return requests.get(f"{self.url}/hub/login", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(60)
        self.log.close()

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def login(self, username, password="ptjaas"):
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=30)
        r = s.post(f"{self.url}/hub/login", timeout=60,
                   data={"username": username, "password": password, "_xsrf": s.cookies.get("_xsrf")})
        assert r.status_code == 200 and "/hub/spawn" in r.url, (r.status_code, r.url)
        return s


def _xsrf(session):
    return next(c.value for c in session.cookies if c.name == "_xsrf" and c.path == "/hub/")


def _server_answers(session, url, user):
    """Like a browser: open the user's JupyterLab (going through the hub's OAuth on the way)."""
    r = session.get(f"{url}/user/{user}/lab", timeout=30)
    return r.status_code == 200 and "JupyterLab" in r.text and f"/user/{user}/lab" in r.url


def test_demo_prints_how_to_log_in_and_keeps_files_across_its_own_restart(tmp_path):
    demo = Demo(tmp_path / "state", free_port()).start()
    try:
        out = demo.output()
        assert f"http://127.0.0.1:{demo.port}/hub/login" in out
        assert "password:" in out and "kubeconfig:" in out
        kubeconfig = re.search(r"kubeconfig:\s+(\S+)", out).group(1)
        assert os.path.isfile(kubeconfig)

        s = demo.login("alice")
        form = s.get(f"{demo.url}/hub/spawn", timeout=30).text
        assert 'name="image"' in form and 'name="size"' in form
        r = s.post(f"{demo.url}/hub/spawn", timeout=90,
                   data={"image": "scipy", "version--scipy": "2025.11", "size": "cpu-small", "_xsrf": _xsrf(s)})
        assert r.status_code == 200
        wait_for(lambda: _server_answers(s, demo.url, "alice"), timeout=120, interval=0.3, message="alice's JupyterLab")
        lab = s.get(f"{demo.url}/user/alice/lab", timeout=30)
        assert lab.status_code == 200 and "JupyterLab" in lab.text
        xsrf = next(c.value for c in s.cookies if c.name == "_xsrf" and c.path.startswith("/user/alice"))
        put = s.put(f"{demo.url}/user/alice/api/contents/results.txt", timeout=30, headers={"X-XSRFToken": xsrf},
                    json={"type": "file", "format": "text", "content": "42"})
        assert put.status_code == 201, put.text
    finally:
        demo.stop()

    demo = Demo(tmp_path / "state", demo.port).start()
    try:
        s = demo.login("alice")
        # the hub kept the server; the embedded cluster restarted its pod on the same home volume
        wait_for(lambda: _server_answers(s, demo.url, "alice"), timeout=120, interval=0.3,
                 message="alice's server after the demo restarted")
        got = s.get(f"{demo.url}/user/alice/api/contents/results.txt", timeout=30)
        assert got.status_code == 200 and got.json()["content"] == "42"
        # home snapshots are on in the demo (the embedded cluster has a snapshot class)
        page = s.get(f"{demo.url}/hub/ptjaas/snapshots", timeout=30)
        assert page.status_code == 200 and "Snapshot my home now" in page.text, page.text[-2000:]
    finally:
        demo.stop()


def test_demo_refuses_a_missing_extra_config_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ptjaas_spawner.cli", "demo", "--state-dir", str(tmp_path),
                           "--config", str(tmp_path / "nope.py")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--config" in proc.stderr and "nope.py" in proc.stderr


def test_demo_with_oidc_logs_in_through_a_real_provider_and_refuses_outsiders(tmp_path):
    from urllib.parse import urljoin

    demo = Demo(tmp_path / "state", free_port(), ["--oidc"]).start()
    try:
        issuer = re.search(r"OpenID Connect provider at (\S+?):?\n", demo.output()).group(1).rstrip(":")
        assert issuer.startswith("http://127.0.0.1:")

        def provider_login(username):
            s = requests.Session()
            r = s.get(f"{demo.url}/hub/oauth_login", params={"next": "/hub/home"}, timeout=30)
            assert r.url.startswith(issuer), r.url
            form = re.search(r'<form method="post" action="([^"]+)"', r.text).group(1)
            r = s.post(urljoin(r.url, form), data={"login": username, "password": "ptjaas"}, timeout=30)
            if "/interaction/" in r.url:
                form = re.search(r'<form method="post" action="([^"]+)"', r.text).group(1)
                r = s.post(urljoin(r.url, form), timeout=30)
            return s, r

        s, r = provider_login("alice")
        assert r.status_code == 200 and r.url.startswith(f"{demo.url}/hub/"), r.url
        assert "alice" in s.get(f"{demo.url}/hub/home", timeout=30).text

        _, r = provider_login("carol")
        assert r.status_code == 403
        assert "carol is not a member of any group allowed to use this hub" in r.text
    finally:
        demo.stop()
