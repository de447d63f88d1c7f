"""Notebook servers cannot reach each other's data or the service's: through a real hub, real
jupyterhub-singleuser servers (ptjaas spawner, uid 1000 as in z2jh), code run in alice's notebook
cannot read bob's home, the hub database, the cluster's state or kubeconfig, nor see bob's
processes; bob's server cannot see the 0600 files alice left in /tmp, /dev/shm and /run (each
pod has its own), and finds the machine's files read-only outside its home and those. Each pod has
its own network: bob's server cannot connect to alice's, and sees only its own sockets in
/proc/net/tcp (none of the proxy's, the cluster's or alice's), while the hub and proxy reach both
and both reach the hub's API. The cluster and the hub live in a world-traversable directory here (as the demo's
``.ptjaas`` in a checkout does), so what protects them is ptjaas itself, not the test's tmp dir."""

import asyncio
import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


from tests.hubutil import Hub
from ptjaas_sandbox.cluster import EmbeddedCluster  # noqa: E402
from ptjaas_sandbox.cluster.podexec import namespaces_work
from ptjaas_sandbox.cluster.podnetwork import network_namespaces_work

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240),
              pytest.mark.skipif(os.geteuid() != 0, reason="notebooks run as their own user only when the node agent is root"),
              pytest.mark.skipif(os.geteuid() == 0 and not namespaces_work(),
                                 reason="no mount namespaces here (unshare refused): pods are not isolated")]

CONFIG = """
c.PtjaasSpawner.images = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/python:1", "default": True}}}}
c.PtjaasSpawner.sizes = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "256Mi", "mem_limit": "1Gi"}}
"""

PROBE = """
import json, os
out = {}
for p in %s:
    try:
        with open(p, 'rb') as f:
            f.read(1)
        out[p] = 'read'
    except OSError as e:
        out[p] = type(e).__name__
users = set()
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        env = open('/proc/%%s/environ' %% pid, 'rb').read().split(b'\\0')
        users |= {e.split(b'=', 1)[1].decode() for e in env if e.startswith(b'JUPYTERHUB_USER=')}
    except OSError:
        pass
print(json.dumps({'files': out, 'users': sorted(users), 'uid': os.getuid(), 'cwd': os.getcwd()}))
"""


# run in alice's notebook: a 0600 file of hers in each directory a pod has of its own
DROP = """
import json, os, tempfile
paths = []
for d in ('/tmp', '/dev/shm', '/run'):
    fd, path = tempfile.mkstemp(prefix='alice-', dir=d)
    os.write(fd, b'alice only'); os.close(fd)
    paths.append(path)
print(json.dumps(paths))
"""
# run in bob's: look for them, and try writing where a container cannot
FIND = """
import json, os
wanted = %s
seen = [os.path.join(d, n) for d in ('/tmp', '/dev/shm', '/run') for n in os.listdir(d) if n.startswith('alice-')]
read = {}
for p in wanted:
    try:
        read[p] = open(p).read()
    except OSError as e:
        read[p] = type(e).__name__
wrote = {}
for d in ('/etc', '/usr', %r, '/home/jovyan', '/tmp'):
    try:
        with open(os.path.join(d, 'bob-was-here'), 'w'):
            pass
        wrote[d] = 'ok'
    except OSError:
        wrote[d] = 'OSError'
print(json.dumps({'seen': seen, 'read': read, 'wrote': wrote}))
"""
# run in bob's: connect to alice's server (its address and port), list the sockets this pod sees
REACH = """
import json, os, socket
try:
    socket.create_connection((%r, %d), timeout=5).close()
    reached = 'connected'
except OSError as e:
    reached = type(e).__name__
local = set()
for line in open('/proc/net/tcp').read().splitlines()[1:]:
    addr, port = line.split()[1].split(':')
    local.add((socket.inet_ntoa(bytes.fromhex(addr)[::-1]), int(port, 16)))
print(json.dumps({'reached': reached, 'ip': os.environ['PTJAAS_POD_IP'], 'local': sorted(local)}))
"""


async def run_in_notebook(hub, user, token, code, timeout=60):
    """Start a kernel in ``user``'s server, run ``code`` and return what it printed."""
    headers = {"Authorization": f"token {token}"}
    base = f"{hub.url}/user/{user}"
    kernel = requests.post(f"{base}/api/kernels", headers=headers, json={}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    url = base.replace("http://", "ws://") + f"/api/kernels/{kernel.json()['id']}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers=headers))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user, "session": uuid.uuid4().hex,
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out = []

    async def read():
        while True:
            msg = json.loads(await ws.read_message())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    try:
        return await asyncio.wait_for(read(), timeout)
    finally:
        ws.close()


@pytest.fixture
def open_base():
    base = tempfile.mkdtemp(prefix="ptjaas-isolation-")
    os.chmod(base, 0o755)   # anyone may traverse it, as a checkout's .ptjaas
    yield Path(base)
    shutil.rmtree(base, ignore_errors=True)


async def test_a_notebook_cannot_read_another_users_home_the_hub_db_or_the_cluster(open_base):
    cluster = EmbeddedCluster(state_dir=open_base / "cluster")
    cluster.start_in_thread()
    hub = Hub(open_base / "hub", CONFIG, cluster=cluster)
    try:
        hub.start()
        tokens = {}
        for user in ("alice", "bob"):
            assert hub.api("POST", "/users", json={"usernames": [user]}).status_code == 201
            assert hub.api("POST", f"/users/{user}/server").status_code in (201, 202)
            tokens[user] = hub.api("POST", f"/users/{user}/tokens", json={"note": "t"}).json()["token"]
        for user in ("alice", "bob"):
            hub.wait_ready(user)
        put = requests.put(f"{hub.url}/user/bob/api/contents/diary.txt", headers={"Authorization": f"token {tokens['bob']}"},
                           json={"type": "file", "format": "text", "content": "bob's secret"}, timeout=30)
        assert put.status_code in (200, 201), put.text
        bob_home = [p for p in (open_base / "cluster" / "volumes").glob("*/diary.txt")] if os.access(
            open_base / "cluster" / "volumes", os.R_OK) else []
        assert len(bob_home) == 1, bob_home
        targets = [str(bob_home[0]), str(open_base / "hub" / "jupyterhub.sqlite"),
                   str(open_base / "hub" / "jupyterhub_cookie_secret"),
                   str(open_base / "cluster" / "objects.json"), cluster.kubeconfig_path]
        assert all(os.path.exists(t) for t in targets), targets
        seen = json.loads((await run_in_notebook(hub, "alice", tokens["alice"], PROBE % json.dumps(targets))).strip())
        assert seen["uid"] == 1000 and seen["cwd"] == "/home/jovyan"
        assert set(seen["files"].values()) <= {"PermissionError", "FileNotFoundError"}, seen["files"]
        assert "bob" not in seen["users"], seen["users"]
        # alice's own home is hers: the notebook's working directory, written through the contents API
        mine = await run_in_notebook(hub, "alice", tokens["alice"],
                                     "open('/home/jovyan/mine.txt', 'w').write('ok'); print(sorted(__import__('os').listdir('.')))")
        assert "mine.txt" in mine and "diary.txt" not in mine
        # alice's 0600 files in /tmp, /dev/shm and /run are hers alone: bob's server does not see them
        dropped = json.loads((await run_in_notebook(hub, "alice", tokens["alice"], DROP)).strip())
        assert len(dropped) == 3 and all(os.path.basename(p).startswith("alice-") for p in dropped), dropped
        found = json.loads((await run_in_notebook(hub, "bob", tokens["bob"],
                                                  FIND % (json.dumps(dropped), str(open_base)))).strip())
        assert found["seen"] == [] and found["read"] == {p: "FileNotFoundError" for p in dropped}, found
        # and the machine's files are read-only to a notebook, its home and private directories excepted
        assert found["wrote"] == {"/etc": "OSError", "/usr": "OSError", str(open_base): "OSError",
                                  "/home/jovyan": "ok", "/tmp": "ok"}, found["wrote"]
        # each pod has a network of its own (where the machine makes network namespaces): bob's
        # server cannot connect to alice's (which this machine, as the hub and the proxy, reaches),
        # and sees none of this machine's sockets
        if not network_namespaces_work():
            return
        service = await run_in_notebook(hub, "alice", tokens["alice"], "import os; print(os.environ['JUPYTERHUB_SERVICE_URL'])")
        alice = urlsplit(service.strip())
        socket.create_connection((alice.hostname, alice.port), timeout=5).close()
        net = json.loads((await run_in_notebook(hub, "bob", tokens["bob"], REACH % (alice.hostname, alice.port))).strip())
        assert net["reached"] == "ConnectionRefusedError", net
        assert {ip for ip, _ in net["local"]} <= {"0.0.0.0", "127.0.0.1", net["ip"]}, net["local"]
        assert alice.hostname != net["ip"] and not {hub.port, hub.proxy_api_port, cluster.port} & {
            port for _, port in net["local"]}, net["local"]
    finally:
        hub.stop()
        cluster.stop_thread()
