"""Issues 10 and 19: an API server outage long enough for KubeSpawner's pod and event watches
to give up (about 50 s of failed retries) stops no running server, in any namespace.

On the embedded cluster the API server's port goes away (connections refused, watches cut)
while its node agent and pods run on, as a control-plane outage leaves a kubelet; on the real
backend the kube-apiserver of a control plane of this module's own is killed and started again
(the session's, shared by the other real-backend tests, is never disturbed), and the node agent
is checked to recover as a kubelet does. Through the outage every running server, in the hub's
namespace and in a team's, stays reachable through the proxy and none is marked stopped; a
start fails at once with a readable message. Once the API is back every namespace's watch is
restarted, a pod deleted during the outage is noticed, the quota usage equals the pods that
exist, and a start works without restarting the hub.
"""

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml

from ptjaas_spawner.teammanifests import Site, team_objects

from tests.hubutil import server, usage
from tests.waiting import wait_for

from tests.backend_support import Backend, started_real_cluster
from tests.test_start_failures import add_user, hub_config, start_outcome

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
GAVE_UP = "Watching resources never recovered, giving up"


# how long the outage lasts at least (the watches give up after about 50 s and are retried
# every second or more after that); longer runs by hand: PTJAAS_OUTAGE_SECONDS=300
OUTAGE_SECONDS = float(os.environ.get("PTJAAS_OUTAGE_SECONDS", "0"))
# the node lifecycle controller's 50 s grace period, the node agent's 10 s Lease renewal, 5 s more
OUTAGE_PAST_NODE_GRACE = 65
TEAMS = {"vision": "outage-team-{group}"}
TEAM_NS = "outage-team-vision"
GROUPS = {"vision": {"users": ["carol"]}}


def team_values():
    from tests.test_start_failures import SIZES

    return {"hub": {"config": {"PtjaasSpawner": {"team_namespaces": TEAMS, "sizes": SIZES}}}}


class EmbeddedOutage:
    """The embedded API server's port gone (connections refused, watches cut) while its node
    agent and pods run on, then back on the same port with every object kept."""

    def __init__(self, state_dir):
        from ptjaas_sandbox.cluster import EmbeddedCluster

        self.current = EmbeddedCluster(state_dir=state_dir).start_in_thread()
        self.backend = Backend("embedded", self.current, "default", self.current.kubeconfig_path,
                               embedded=self.current)

    def make_team_namespace(self):
        """What ``ptjaas team-manifests`` prints for team vision, applied."""
        import kubernetes

        for _, _, objects in team_objects(team_values(), Site(hub_namespace=self.backend.namespace)):
            for obj in objects:
                kubernetes.utils.create_from_dict(self.backend.api_client, obj)

    def stop_api(self):
        self.current.stop_api()

    def start_api(self):
        self.current.start_api()

    def delete_pod_during_outage(self, namespace, name):
        self.current.remove_pod(namespace, name)

    def close(self):
        self.backend.close()
        self.current.stop_thread()


class RealOutage:
    """The kube-apiserver of the module's own real control plane killed and started again (etcd
    keeps the state), the hub in a fresh namespace of it with exactly z2jh's rights."""

    def __init__(self, cluster, shared_dir):
        from ptjaas_sandbox.hubrights import HubBackend

        self.plane = cluster.plane
        hub_backend = HubBackend(cluster, f"hub-{uuid.uuid4().hex[:8]}", shared_dir / "charts" / "jupyterhub",
                                 helm=str(ROOT / "node_modules" / ".bin" / "helm"))
        self.backend = Backend("real", hub_backend, hub_backend.namespace, hub_backend.admin_kubeconfig_path,
                               real_cluster=cluster)

    def make_team_namespace(self):
        """What an admin runs: ``ptjaas team-manifests -f values.yaml | kubectl apply -f -``."""
        values = Path(self.backend.target.cluster.state_dir) / f"teams-{self.backend.namespace}.yaml"
        values.write_text(yaml.safe_dump(team_values()))
        manifests = subprocess.run(
            [sys.executable, "-m", "ptjaas_spawner.cli", "team-manifests", "-f", str(values),
             "--hub-namespace", self.backend.namespace, "--release", "hub", "--service-account", "hub"],
            check=True, capture_output=True, text=True, timeout=60).stdout
        applied = subprocess.run(["kubectl", "--kubeconfig", str(self.backend.target.admin_kubeconfig_path), "apply",
                                  "-f", "-"], input=manifests, capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stderr
        wait_for(lambda: self.backend.core.list_namespaced_service_account(TEAM_NS).items,
                 message="the team namespace's default ServiceAccount")

    def stop_api(self):
        self.plane.stop_apiserver()

    def delete_pod_during_outage(self, namespace, name):
        """Remove the pod's object from etcd (which keeps running) while kube-apiserver is down."""
        key = base64.b64encode(f"/registry/pods/{namespace}/{name}".encode()).decode()
        r = requests.post(f"{self.plane.etcd_url}/v3/kv/deleterange", json={"key": key}, timeout=30)
        r.raise_for_status()
        assert r.json().get("deleted") == "1", r.text

    def start_api(self):
        if "kube-apiserver" not in self.plane.procs:
            self.plane.start_apiserver()
        # the node lifecycle controller may have marked the node unreachable while its heartbeats
        # failed: the node agent reports in again (test_node_agent_recovers_after_an_api_server_restart)
        wait_for(lambda: node_ready(self.backend.core), timeout=120, interval=0.5,
                 message="the node to be Ready and untainted")

    def close(self):
        if "kube-apiserver" not in self.plane.procs:  # the test failed during the outage
            self.plane.start_apiserver()
        self.backend.close()


def node_ready(core):
    """Every node Ready, without the node lifecycle controller's taints."""
    return all({c.type: c.status for c in n.status.conditions or []}.get("Ready") == "True"
               and not any(t.key.startswith("node.kubernetes.io/") for t in n.spec.taints or [])
               for n in core.list_node().items)


@pytest.fixture(scope="module")
def own_real_cluster(tmp_path_factory):
    """A real control plane of this module's own: its kube-apiserver is killed and started again,
    which the session's (``real_cluster``, shared by all other real-backend tests) must never see."""
    with started_real_cluster(tmp_path_factory.mktemp("realkube-outage")) as c:
        yield c


@pytest.fixture(params=["embedded", "real"])
def outage(request, tmp_path):
    if request.param == "embedded":
        o = EmbeddedOutage(tmp_path / "k8s")
    else:
        o = RealOutage(request.getfixturevalue("own_real_cluster"), request.getfixturevalue("shared_dir"))
    yield o
    o.close()


def _api_outage(plane, seconds):
    """The kube-apiserver gone for ``seconds`` (the scenario's length, not a wait for anything),
    then started again; returns when it answers /readyz."""
    plane.stop_apiserver()
    threading.Event().wait(seconds)
    plane.start_apiserver()


def test_node_agent_recovers_after_an_api_server_restart(own_real_cluster):
    """Issue 10: after the kube-apiserver was gone for 65 s (past the node's 40 s Lease and the
    node lifecycle controller's grace period: --node-monitor-grace-period, 50 s by default since
    Kubernetes 1.32) and came back, our node agent renews its Lease and reports its status
    again, as a kubelet does: the Node is Ready and untainted again,
    a new pod runs, and the pod that ran through the outage is Ready (the controller marks the pods
    of a node it lost NotReady)."""
    import kubernetes

    cluster = own_real_cluster
    api = kubernetes.config.new_client_from_config(config_file=cluster.kubeconfig_path)
    core = kubernetes.client.CoreV1Api(api)
    coordination = kubernetes.client.CoordinationV1Api(api)
    ns = "node-recovery"
    try:
        core.create_namespace({"metadata": {"name": ns}})
        wait_for(lambda: core.list_namespaced_service_account(ns).items, message="the default ServiceAccount")
        long_lived = {"name": "main", "image": "python:3.12",
                      "command": ["python", "-c", "import time\nwhile True: time.sleep(60)"]}
        core.create_namespaced_pod(ns, {"metadata": {"name": "through"}, "spec": {
            "terminationGracePeriodSeconds": 0, "containers": [long_lived]}})
        wait_for(lambda: pod_ready(core.read_namespaced_pod("through", ns)), timeout=60, message="a pod running")
        node = core.list_node().items[0].metadata.name

        _api_outage(cluster.plane, OUTAGE_PAST_NODE_GRACE)
        back = time.monotonic()
        restarted = datetime.now(timezone.utc)

        def lease_renewed():
            renewed = coordination.read_namespaced_lease(node, "kube-node-lease").spec.renew_time
            return renewed is not None and renewed > restarted
        wait_for(lambda: lease_renewed() and node_ready(core), timeout=120, interval=0.2,
                 message="the node agent's Lease renewed and the node Ready and untainted")
        node_seconds = time.monotonic() - back
        # a new pod is placed on the node and runs
        core.create_namespaced_pod(ns, {"metadata": {"name": "after"}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "python:3.12", "command": ["python", "-c", "print('ran')"]}]}})
        wait_for(lambda: core.read_namespaced_pod("after", ns).status.phase == "Succeeded", timeout=120,
                 interval=0.2, message="a pod made after the outage to run")
        pod_seconds = time.monotonic() - back
        # the cluster settled: the node stays Ready, the pod that ran through the outage is Ready
        wait_for(lambda: pod_ready(core.read_namespaced_pod("through", ns)), timeout=60, interval=0.2,
                 message="the pod that ran through the outage Ready again")
        assert node_ready(core)
        print(f"\nnode agent after a {OUTAGE_PAST_NODE_GRACE} s API server outage: "
              f"Node Ready and untainted {node_seconds:.1f} s, "
              f"a new pod done {pod_seconds:.1f} s after the API server was back")
    finally:
        core.delete_namespace(ns)
        api.close()


def pod_ready(pod):
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def reachable(hub, user, token):
    """The user's server answers through the proxy (its route is there, the hub sends it on)."""
    r = requests.get(f"{hub.url}/user/{user}/api/status", headers={"Authorization": f"token {token}"},
                     allow_redirects=False, timeout=30)
    return r.status_code == 200


def restart_failures(hub, namespace):
    return hub.logs().count(f"Reflector with key ('pods', '{namespace}') failed to start")


def test_an_outage_stops_no_running_server_in_any_namespace(outage, hub_factory):
    """Issue 19: alice (the hub's namespace) and carol (team vision's namespace) run through an
    outage longer than the watches' give-up, the hub polling every second and its watchdog
    retrying every namespace's watches; erin's pod is deleted during the outage."""
    backend = outage.backend
    outage.make_team_namespace()
    hub_ns = backend.namespace
    # the real kube-scheduler's own watches take a minute or two to recover after the outage
    extra = f"""
        c.JupyterHub.load_groups = {json.dumps(GROUPS)}
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.PtjaasSpawner.team_namespaces = {json.dumps(TEAMS)}
        c.PtjaasSpawner.quota_default = {{"servers": 2}}
        c.PtjaasSpawner.reflector_check_interval = 1
        c.Spawner.poll_interval = 1
        """ + ("c.PtjaasSpawner.start_timeout = 300\n" if backend.real else "")
    hub = hub_factory(hub_config(textwrap.dedent(extra), backend), cluster=backend.target)
    try:
        users = ("alice", "carol", "erin", "bob")
        for user in users:
            add_user(hub, user)
        # the four starts run at once, as four users' would (the scenario begins once all run)
        with ThreadPoolExecutor(len(users)) as pool:
            outcomes = dict(zip(users, pool.map(
                lambda user: start_outcome(hub, user, {"size": "small"}, timeout=180), users)))
        for user, (ready, message, _, _, _) in outcomes.items():
            assert ready, (user, message)
        tokens = {user: hub.api("POST", f"/users/{user}/tokens", json={"note": "outage"}).json()["token"]
                  for user in users}
        assert backend.core.read_namespaced_pod("jupyter-carol", TEAM_NS).status.phase == "Running"
        # bob's home exists before the outage: after a kube-apiserver restart the real
        # kube-scheduler v1.36 did not place a pod with a *new* volume within 5 minutes (its
        # volume cache kept answering 'persistentvolume "pvc-..." not found'), a cluster-side lag
        # this test is not about
        assert hub.api("DELETE", "/users/bob/server").status_code in (202, 204)
        wait_for(lambda: "jupyter-bob" not in backend.pods(), timeout=60, message="bob stopped")

        outage.stop_api()  # the API server is gone
        went = time.monotonic()
        # KubeSpawner's pod and event watches of both namespaces give up (it never restarts them)
        wait_for(lambda: hub.logs().count(GAVE_UP) >= 4, timeout=150, interval=0.5,
                 message="the pod and event watches of both namespaces to give up")
        outage.delete_pod_during_outage(hub_ns, "jupyter-erin")
        # the watchdog tries to restart the watches of both namespaces and fails, again and again,
        # while the hub polls every server every second: what used to mark them all stopped
        for ns in (hub_ns, TEAM_NS):
            wait_for(lambda: restart_failures(hub, ns) >= 3, timeout=120, interval=0.5,
                     message=f"three failed restarts of the pods watch of namespace {ns}")

        # a start while the API is unreachable fails at once, in words a user understands
        ready, message, _, seconds, status = start_outcome(hub, "bob", {"size": "small"}, timeout=30)
        assert not ready
        assert "API server cannot be reached" in message and "try again" in message, message
        assert seconds < 20, seconds
        # a longer outage (PTJAAS_OUTAGE_SECONDS=300: five minutes) is the same scenario held
        # longer, the hub polling every second throughout: the scenario's length, not a wait
        threading.Event().wait(max(0.0, OUTAGE_SECONDS - (time.monotonic() - went)))

        # no running server was marked stopped; alice's and carol's answer through the proxy
        for user in ("alice", "carol", "erin"):
            assert (server(hub, user) or {}).get("ready"), f"{user}'s server was marked stopped during the outage"
        for user in ("alice", "carol"):
            assert reachable(hub, user, tokens[user]), f"{user}'s server is not reachable during the outage"
        assert "server stopped" not in hub.logs()

        outage.start_api()
        # every namespace's watch is restarted; the pod deleted during the outage is noticed
        for ns in (hub_ns, TEAM_NS):
            wait_for(lambda: f"Restarted the pods watch of namespace {ns}" in hub.logs(), timeout=120, interval=0.5,
                     message=f"the pods watch of namespace {ns} restarted")
        wait_for(lambda: server(hub, "erin") is None, timeout=60, interval=0.5,
                 message="erin's server, whose pod was deleted during the outage, seen stopped")
        for user in ("alice", "carol"):
            assert (server(hub, user) or {}).get("ready"), f"{user}'s server was marked stopped after the outage"
            assert reachable(hub, user, tokens[user]), f"{user}'s server is not reachable after the outage"

        # the same hub, without a restart: a new start works
        ready, message, progress, seconds, _ = start_outcome(hub, "bob", {"size": "small"}, timeout=300)
        assert ready, (message, progress)
        wait_for(lambda: backend.pods() == ["jupyter-alice", "jupyter-bob"], timeout=60,
                 message="only the running servers' pods")
        # the quota usage is the pods that exist, in each namespace
        namespaces = usage(hub)["namespaces"]
        assert {ns: (row["servers"], tuple(row["users"])) for ns, row in namespaces.items()} == {
            hub_ns: (2, ("alice", "bob")), TEAM_NS: (1, ("carol",))}
    finally:
        hub.stop()


async def test_a_failed_watch_restart_keeps_the_last_good_pod_list(cluster, monkeypatch):
    """Issue 19: while the API server is down, a watch restart (the watchdog's) and a poll that
    waits for it both fail; the pod list the hub then reads is still the last good one, so the
    running server is not taken for stopped. (On the real kube-apiserver the same race came
    from its first answers after a restart, 403s until its RBAC caches were filled: a poll that
    had waited for the failed restart put the failed, empty reflector back.)"""
    import asyncio

    from tests.test_spawner_claims import make_spawner

    kube = Backend("embedded", cluster, "default", cluster.kubeconfig_path, embedded=cluster)
    try:
        kube.core.create_namespaced_pod("default", {
            "metadata": {"name": "jupyter-rita", "labels": {"component": "singleuser-server"}},
            "spec": {"containers": [{"name": "notebook", "image": "python:3.12",
                                     "command": ["python", "-c", "import time; time.sleep(600)"]}]}})
        wait_for(lambda: kube.core.read_namespaced_pod("jupyter-rita", "default").status.phase == "Running",
                 timeout=60, message="rita's pod running")
    finally:
        kube.close()
    spawner = make_spawner(cluster, monkeypatch, "rita")
    await spawner._start_watching_pods()
    last_good = spawner.pod_reflector
    assert "default/jupyter-rita" in last_good.pods
    last_good.watch_task.cancel()  # it gave up, as after a minute of outage

    cluster.stop_api()
    try:
        # the restart runs first, registers its new reflector and lists; the poll's call then
        # waits for that reflector (it fails only if it did: the old one would be returned)
        results = await asyncio.gather(spawner._start_watching_pods(replace=True), spawner._start_watching_pods(),
                                       return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results), results
        assert spawner.pod_reflector is last_good
        assert await spawner.poll() is None
    finally:
        cluster.start_api()
    await spawner._start_watching_pods(replace=True)  # the API is back: a new list replaces it
    assert spawner.pod_reflector is not last_good and "default/jupyter-rita" in spawner.pod_reflector.pods
    await type(spawner)._stop_all_reflectors()
