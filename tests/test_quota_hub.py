"""Quotas through a real JupyterHub on the embedded cluster: the start race, named servers,
freeing on stop and on failure, rebuild after a hub restart, the ResourceQuota 403 path,
the admin usage endpoint and the Prometheus metrics."""

import json
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests


from tests import hubutil
from tests.hubutil import failure_message, server, stop, usage
from tests.pageparse import element, metric, table_rows
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]
# on the embedded cluster and on a real kube-apiserver with z2jh's hub rights (tests/conftest.py)
BACKENDS = ("embedded", "real")

IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 0.1, "cpu_limit": 1,
            "mem_guarantee": "64Mi", "mem_limit": "1Gi", "gpu": 1},
}
RACERS = [f"r{i}" for i in range(20)]
GROUPS = {
    "vision": {"users": RACERS},
    "flaky": {"users": ["f1", "f2"]},
    "duo": {"users": ["s1", "s2", "s3"]},
    "rq": {"users": ["q1", "q2"]},
    "people": {"users": ["nina"]},
}
QUOTA_GROUPS = {"vision": {"gpus": 4}, "flaky": {"gpus": 1}, "duo": {"gpus": 2}, "rq": {"gpus": 3}}

SPAWNER_SETUP = 'c.JupyterHub.spawner_class = "ptjaas"\n'


@pytest.fixture(scope="module")
def kube(module_cluster):
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield kubernetes.client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory):
    config = SPAWNER_SETUP + textwrap.dedent(
        f"""
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.load_groups = {json.dumps(GROUPS)}
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.JupyterHub.authenticate_prometheus = False
        c.Authenticator.admin_users = {{"boss"}}
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        c.PtjaasSpawner.quota_groups = {json.dumps(QUOTA_GROUPS)}
        c.PtjaasSpawner.quota_users = {{"nina": {{"servers": 2}}}}
        """
    )
    return module_hub_factory(config, cluster=module_cluster)


def start(hub, user, size, name=""):
    return hubutil.start(hub, user, {"image": "python", "size": size}, name)


def start_ready(hub, user, size, name=""):
    hubutil.start_ready(hub, user, {"image": "python", "size": size}, name)


def gpu_pods(kube):
    """Live pods holding a GPU (raw JSON: the typed client rejects numeric quantities)."""
    raw = json.loads(kube.list_namespaced_pod("default", _preload_content=False).data)
    return [p for p in raw["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any("nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {}) for c in p["spec"]["containers"])]


def test_twenty_starts_for_four_gpus_exactly_four_succeed(hub, kube):
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda u: start(hub, u, "gpu"), RACERS))
    try:
        def settled():
            states = {u: server(hub, u) for u in RACERS}
            if any(s and not s["ready"] and s["pending"] for s in states.values()):
                return None
            return states
        states = wait_for(settled, timeout=180, interval=0.3, message="all 20 starts to settle")
        running = sorted(u for u, s in states.items() if s and s["ready"])
        assert len(running) == 4, (running, [r.status_code for r in responses])
        assert len(gpu_pods(kube)) == 4
        refused = [u for u in RACERS if u not in running]
        msg = failure_message(hub, refused[0])
        assert "team GPUs budget is full" in msg or "0 of 4 vision GPUs free" in msg, msg
        # users see counts in the form; admins see who holds what
        report = usage(hub)
        assert report["groups"]["vision"]["used"]["gpus"] == 4
        assert report["groups"]["vision"]["holders"] == running
        assert report["sizes"]["gpu"]["gpus"] == 4
        metrics = requests.get(f"{hub.url}/hub/metrics", timeout=30).text
        assert metric(metrics, "ptjaas_gpus_in_use", group="vision", size="gpu") == 4
        assert metric(metrics, "ptjaas_quota_refusals_total", reason="pool") == 16
        page = hub.session("boss").get(f"{hub.url}/hub/ptjaas/usage", timeout=30)
        assert page.status_code == 200
        assert {row[0] for row in table_rows(page.text, "ptjaas-users")[1:]} >= set(running)
        vision = [row for row in table_rows(page.text, "ptjaas-groups") if row[0] == "vision"]
        assert vision and vision[0][1] == "4 of 4"
        assert hub.session(refused[2]).get(f"{hub.url}/hub/ptjaas/usage", timeout=30).status_code == 403
        form = hub.session(refused[1]).get(f"{hub.url}/hub/spawn", timeout=30).text
        assert "0 of 4 vision GPUs free" in form
        gpu = element(form, "input", value="gpu")
        assert gpu is not None and "disabled" in gpu
    finally:
        for u in RACERS:
            if server(hub, u):
                stop(hub, u)
    assert usage(hub)["groups"]["vision"]["used"]["gpus"] == 0
    # the usage report reads the quota settings alone: no warning about the hub's other settings
    assert "not recognized by" not in hub.logs()


@pytest.mark.backends("embedded")  # the ledger's count; the pod creates and deletes it makes are checked on the real API server by test_twenty_starts_for_four_gpus_exactly_four_succeed
def test_named_servers_count_and_stop_frees(hub):
    try:
        start_ready(hub, "nina", "small")
        start_ready(hub, "nina", "small", "second")
        r = start(hub, "nina", "small", "third")
        msg = r.text if r.status_code >= 400 else failure_message(hub, "nina", "third")
        assert "2 of 2" in msg and "Stop one of your servers (nina/(default), nina/second)" in msg, msg
        assert server(hub, "nina", "third") is None
        stop(hub, "nina", "second")
        start_ready(hub, "nina", "small", "third")
    finally:
        for name in ("", "second", "third"):
            if server(hub, "nina", name):
                stop(hub, "nina", name)


@pytest.mark.backends("embedded")  # fault injection is the embedded cluster's (it skipped on the real one)
def test_failed_start_frees_its_share(hub, module_cluster):
    module_cluster.inject_fault(verb="create", resource="pods", status=500, times=1)
    try:
        r = start(hub, "f1", "gpu")
        if r.status_code < 400:
            failure_message(hub, "f1")
        wait_for(lambda: server(hub, "f1") is None, timeout=60, message="f1's failed start to end")
    finally:
        module_cluster.clear_faults()
    assert usage(hub)["groups"]["flaky"]["used"]["gpus"] == 0
    try:
        start_ready(hub, "f2", "gpu")  # the pool's only GPU is free again
    finally:
        stop(hub, "f2")


def test_hub_restart_rebuilds_usage_from_the_cluster(hub):
    try:
        start_ready(hub, "s1", "gpu")
        start_ready(hub, "s2", "gpu")
        hub.restart()
        # rebuilt from the cluster as the hub starts (the ledger in memory died with the hub)
        report = usage(hub)
        assert report["groups"]["duo"]["used"]["gpus"] == 2 and report["groups"]["duo"]["holders"] == ["s1", "s2"]
        metrics = requests.get(f"{hub.url}/hub/metrics", timeout=30).text
        assert metric(metrics, "ptjaas_gpus_in_use", group="duo", size="gpu") == 2
        r = start(hub, "s3", "gpu")
        msg = r.text if r.status_code >= 400 else failure_message(hub, "s3")
        assert "0 of 2 duo GPUs free" in msg or "group 'duo' holds 2 of its 2 GPUs" in msg, msg
        report = usage(hub)
        assert report["groups"]["duo"]["used"]["gpus"] == 2
        assert report["groups"]["duo"]["holders"] == ["s1", "s2"]
    finally:
        for u in ("s1", "s2", "s3"):
            if server(hub, u):
                stop(hub, u)


def test_resourcequota_403_is_readable_and_leaves_nothing(hub, kube):
    from ptjaas_spawner.quota.resourcequota import quota_manifest

    quota = quota_manifest("team-gpus", "default", {"gpus": 1})
    kube.create_namespaced_resource_quota("default", quota, _preload_content=False)
    try:
        start_ready(hub, "q1", "gpu")
        r = start(hub, "q2", "gpu")  # the hub's budget (3) allows it; the cluster's (1) does not
        msg = r.text if r.status_code >= 400 else failure_message(hub, "q2")
        assert "The cluster refused to start your server" in msg and "team-gpus" in msg, msg
        assert "Traceback" not in msg and "HTTP response body" not in msg
        wait_for(lambda: server(hub, "q2") is None, timeout=60, message="q2's start to end")
        assert [p["metadata"]["annotations"]["hub.jupyter.org/username"] for p in gpu_pods(kube)] == ["q1"]
        assert usage(hub)["groups"]["rq"]["used"]["gpus"] == 1
    finally:
        kube.delete_namespaced_resource_quota("team-gpus", "default", _preload_content=False)
        for u in ("q1", "q2"):
            if server(hub, u):
                stop(hub, u)


def test_bad_quota_setting_stops_the_hub_naming_the_key(hub_factory):
    hub = hub_factory('c.PtjaasSpawner.quota_groups = {"vision": {"gpu": 4}}\n', start=False)
    hub.start(wait=False)
    assert hub.wait_exit(60) != 0
    assert "c.PtjaasSpawner.quota_groups['vision'] has unknown key(s) ['gpu']" in hub.logs()


def test_rebuild_after_a_restart_sends_no_request_of_its_own(cluster, hub_factory):
    """The ledger is rebuilt from the pods KubeSpawner's pod reflector lists anyway: a restart with
    a running server lists pods as often with quotas as without, or with the rebuild turned off;
    without quotas nothing is charged."""
    base = SPAWNER_SETUP + textwrap.dedent(
        f"""
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        # no time-based relist while the requests are counted
        c.ResourceReflector.timeout_seconds = 600
        c.ResourceReflector.restart_seconds = 600
        """
    )
    quotas = 'c.PtjaasSpawner.quota_default = {"gpus": 1}\n'
    variants = {
        "without quotas": "",
        "with quotas": quotas,
        "with quotas, rebuild off": quotas + "c.PtjaasSpawner.quota_rebuild_from_cluster = False\n",
    }
    hub = hub_factory(base + quotas, cluster=cluster)
    assert hub.api("POST", "/users/lister").status_code == 201
    start_ready(hub, "lister", "gpu")
    try:
        lists = {}
        for name, extra in variants.items():
            hub.stop()
            cluster.reset_request_stats()
            hub.restart(base + extra)
            # the reflector's list(s), then its watch: after that no pod list until a relist
            stats = wait_for(lambda: (s := cluster.request_stats()).get(("watch", "pods")) and s,
                             timeout=60, interval=0.1, message="the pod reflector's watch")
            lists[name] = stats.get(("list", "pods"), 0)
            used = usage(hub)["users"]
            if name == "with quotas":
                assert used["lister"]["gpus"] == 1, used
            else:
                assert used == {}, (name, used)
        assert lists["without quotas"] == lists["with quotas"] == lists["with quotas, rebuild off"], lists
    finally:
        stop(hub, "lister")
