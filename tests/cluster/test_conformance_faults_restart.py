"""Fault injection (failing status, latency, cut watch streams; in-process and over HTTP) and state
surviving a restart of the embedded cluster on the same state dir."""

import asyncio
import time

import aiohttp
import kubernetes
import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes_asyncio import client as ak8s
from kubernetes_asyncio import watch as awatch

from tests.cluster.k8s_conformance import HTTP_SERVER, POD_NAME_ENV, Kube, assert_status, http_get, py_pod

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def no_faults_left(module_cluster):
    yield
    module_cluster.clear_faults()


def test_failing_status_for_matching_requests_only(kube, ns, module_cluster):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "target"}})
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "other"}})
    module_cluster.inject_fault(verb="get", resource="configmaps", name="target", namespace=ns,
                                status=503, times=2)
    for _ in range(2):
        e = kube.error(kube.core.read_namespaced_config_map, "target", ns)
        assert e.status == 503
        assert kube.core.read_namespaced_config_map("other", ns).metadata.name == "other"
    assert kube.core.read_namespaced_config_map("target", ns).metadata.name == "target"  # used up


def test_failed_create_changes_nothing(kube, ns, module_cluster):
    module_cluster.inject_fault(verb="create", resource="pods", status=500)
    e = kube.error(kube.create_pod, ns, py_pod("nope", "pass"))
    assert e.status == 500
    assert kube.core.list_namespaced_pod(ns).items == []
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "unaffected"}})
    module_cluster.clear_faults()
    kube.create_pod(ns, py_pod("yes", "pass"))
    kube.wait_phase(ns, "yes", "Succeeded")


def test_latency(kube, ns, module_cluster):
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "slow"}})
    module_cluster.inject_fault(verb="get", resource="configmaps", name="slow", latency=0.5)
    started = time.monotonic()
    assert kube.core.read_namespaced_config_map("slow", ns).metadata.name == "slow"
    assert time.monotonic() - started >= 0.5
    assert kube.raw("GET", "/_ptjaas/faults").json()["faults"]  # still listed (times=None)
    module_cluster.clear_faults()
    assert kube.raw("GET", "/_ptjaas/faults").json()["faults"] == []
    assert kube.core.read_namespaced_config_map("slow", ns).metadata.name == "slow"


def test_faults_over_http(kube, ns):
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    resp = kube.raw("POST", "/_ptjaas/faults", json={
        "verb": "delete", "resource": "secrets", "namespace": ns, "name": None, "status": 409,
        "latency": 0, "times": 1, "cut_watch": False})
    assert resp.status_code in (200, 201), resp.text
    e = kube.error(kube.core.delete_namespaced_secret, "s", ns)
    assert e.status == 409
    assert kube.core.read_namespaced_secret("s", ns)
    kube.core.create_namespaced_secret(ns, {"metadata": {"name": "t"}})
    kube.raw("POST", "/_ptjaas/faults", json={"verb": "delete", "resource": "secrets", "status": 500})
    assert kube.error(kube.core.delete_namespaced_secret, "t", ns).status == 500
    assert kube.raw("DELETE", "/_ptjaas/faults").status_code in (200, 204)
    kube.core.delete_namespaced_secret("t", ns)


async def test_cut_watch_stream_then_resume_from_last_seen_version(kube, ns, module_cluster, akube):
    """A cut watch stream fails on the client like a dropped connection; a new watch from the last
    resourceVersion seen delivers everything after it, exactly once."""
    core = ak8s.CoreV1Api(akube)
    rv0 = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    got, cuts, first_seen = [], [], asyncio.Event()

    async def watcher():
        last_rv = rv0
        while len(got) < 4:
            w = awatch.Watch()
            try:
                async with w:
                    async for ev in w.stream(core.list_namespaced_config_map, ns,
                                             resource_version=last_rv, timeout_seconds=20):
                        got.append((ev["type"], ev["object"].metadata.name))
                        last_rv = ev["object"].metadata.resource_version
                        first_seen.set()
                        if len(got) == 4:
                            return
                cuts.append("ended")  # a clean end of stream also counts as a cut
            except (aiohttp.ClientError, asyncio.IncompleteReadError) as e:
                cuts.append(type(e).__name__)
            assert len(cuts) < 5, cuts

    task = asyncio.ensure_future(watcher())
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "before-cut"}})
    await asyncio.wait_for(first_seen.wait(), 20)
    module_cluster.inject_fault(verb="watch", resource="configmaps", cut_watch=True, times=1)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "after-cut-1"}})
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "after-cut-2"}})
    await core.delete_namespaced_config_map("before-cut", ns)
    await asyncio.wait_for(task, 30)
    assert cuts, "the injected cut did not interrupt the open watch"
    assert got == [("ADDED", "before-cut"), ("ADDED", "after-cut-1"), ("ADDED", "after-cut-2"),
                   ("DELETED", "before-cut")]


def test_cut_watch_ends_an_open_sync_stream(kube, ns, module_cluster):
    rv0 = kube.core.list_namespaced_config_map(ns).metadata.resource_version
    kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "c1"}})
    w = kubernetes.watch.Watch()
    stream = w.stream(kube.core.list_namespaced_config_map, ns, resource_version=rv0,
                      timeout_seconds=30, _request_timeout=30)
    first = next(stream)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "c1")
    started = time.monotonic()
    module_cluster.inject_fault(verb="watch", resource="configmaps", cut_watch=True)
    rest = []
    with pytest.raises((urllib3.exceptions.ProtocolError, StopIteration)):
        while True:  # ends (StopIteration) or fails like a dropped connection
            rest.append(next(stream)["type"])
    assert [t for t in rest if t != "BOOKMARK"] == []
    assert time.monotonic() - started < 25


# --- restart with the same state dir --------------------------------------------------------

def test_state_survives_restart(tmp_path):
    from ptjaas_sandbox.cluster import EmbeddedCluster

    state = tmp_path / "k8s"
    first = EmbeddedCluster(state_dir=state)
    first.start_in_thread()
    try:
        kube = Kube(first)
        ns = kube.namespace("persist")
        cm = kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg",
                                                                      "labels": {"k": "v"}},
                                                         "data": {"a": "1"}})
        secret = kube.core.create_namespaced_secret(ns, {"metadata": {"name": "sec"},
                                                         "stringData": {"t": "x"}})
        kube.core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "home"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        vol = [{"name": "v", "persistentVolumeClaim": {"claimName": "home"}}]
        mounts = [{"name": "v", "mountPath": "/home/jovyan"}]
        kube.create_pod(ns, py_pod("write", "import sys; open(sys.argv[1], 'w').write('still here')",
                                   "/home/jovyan/file.txt", volumes=vol, mounts=mounts))
        kube.wait_phase(ns, "write", "Succeeded")
        kube.create_pod(ns, py_pod("web", HTTP_SERVER, "0.0.0.0", "8888", ports=[8888],
                                   env=[POD_NAME_ENV], grace=1, restart="OnFailure"))
        web_uid = kube.wait_ready(ns, "web").metadata.uid
        claim = kube.core.read_namespaced_persistent_volume_claim("home", ns)
        assert claim.status.phase == "Bound"
        last_rv = int(kube.core.list_namespace().metadata.resource_version)
        kube.close()
    finally:
        first.stop_thread()

    second = EmbeddedCluster(state_dir=state)
    second.start_in_thread()
    try:
        kube = Kube(second)
        got = kube.core.read_namespaced_config_map("cfg", ns)
        assert (got.metadata.uid, got.metadata.resource_version, got.data, got.metadata.labels) == (
            cm.metadata.uid, cm.metadata.resource_version, {"a": "1"}, {"k": "v"})
        assert got.metadata.creation_timestamp == cm.metadata.creation_timestamp
        assert kube.core.read_namespaced_secret("sec", ns).metadata.uid == secret.metadata.uid
        again = kube.core.read_namespaced_persistent_volume_claim("home", ns)
        assert (again.status.phase, again.spec.volume_name, again.metadata.uid) == (
            "Bound", claim.spec.volume_name, claim.metadata.uid)
        newer = kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "after"}})
        assert int(newer.metadata.resource_version) > last_rv  # the counter continues
        assert kube.raw("GET", "/api/v1/nodes/ptjaas-node-1").status_code == 200
        kube.create_pod(ns, py_pod("read", "import sys; print(open(sys.argv[1]).read())",
                                   "/home/jovyan/file.txt", volumes=vol, mounts=mounts))
        kube.wait_phase(ns, "read", "Succeeded")
        assert kube.log(ns, "read").strip() == "still here"
        assert kube.core.read_namespaced_pod("write", ns).status.phase == "Succeeded"
        web = kube.wait_ready(ns, "web")  # a pod that was running runs again (as KubeSpawner's do)
        assert web.metadata.uid == web_uid
        assert http_get(f"http://{web.status.pod_ip}:8888/") == (200, "web")
        e = kube.error(kube.core.create_namespaced_config_map, ns, {"metadata": {"name": "cfg"}})
        assert_status(e, 409, "AlreadyExists")
        assert isinstance(k8s.VersionApi(kube.api).get_code().git_version, str)
        kube.close()
    finally:
        second.stop_thread()
