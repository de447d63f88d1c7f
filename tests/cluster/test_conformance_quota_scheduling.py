"""ResourceQuota admission (403 `exceeded quota` in a real API server's format, status.used kept up
to date) and scheduling (FailedScheduling events, retry when capacity frees up, GPU allocation
passed as CUDA_VISIBLE_DEVICES)."""

import json

import pytest
from kubernetes_asyncio import client as ak8s
from kubernetes_asyncio.client.rest import ApiException as AsyncApiException

from tests.cluster.k8s_conformance import SLEEP_FOREVER, Kube, assert_status, condition, py_pod, wait_for

pytestmark = pytest.mark.timeout(120)


def sleeper(name, cpu=None, gpu=None, memory=None, **kw):
    requests, limits = {}, {}
    if cpu:
        requests["cpu"] = limits["cpu"] = cpu
    if memory:
        requests["memory"] = limits["memory"] = memory
    if gpu:
        limits["nvidia.com/gpu"] = requests["nvidia.com/gpu"] = str(gpu)
    resources = {"requests": requests, "limits": limits} if requests else None
    return py_pod(name, SLEEP_FOREVER, grace=1, resources=resources, **kw)


def quota(kube, ns, name, hard):
    kube.core.create_namespaced_resource_quota(ns, {"metadata": {"name": name}, "spec": {"hard": hard}})
    wait_for(lambda: kube.core.read_namespaced_resource_quota(name, ns).status.hard == hard,
             timeout=10, message=f"quota {name} status.hard")


def used(kube, ns, name):
    return kube.core.read_namespaced_resource_quota(name, ns).status.used or {}


# --- ResourceQuota --------------------------------------------------------------------------

def test_quota_refuses_pod_over_cpu_with_real_message(kube, ns):
    quota(kube, ns, "compute", {"requests.cpu": "1"})
    e = kube.error(kube.create_pod, ns, sleeper("hog", cpu="2"))
    body = assert_status(e, 403, "Forbidden")
    assert body["message"] == (
        'pods "hog" is forbidden: exceeded quota: compute, requested: requests.cpu=2, '
        "used: requests.cpu=0, limited: requests.cpu=1")
    assert body["details"]["name"] == "hog" and body["details"]["kind"] == "pods"
    assert kube.core.list_namespaced_pod(ns).items == []


def test_quota_status_used_follows_pods(kube, ns):
    quota(kube, ns, "compute", {"pods": "2", "requests.cpu": "1"})
    wait_for(lambda: used(kube, ns, "compute") == {"pods": "0", "requests.cpu": "0"},
             timeout=10, message="initial usage 0")
    kube.create_pod(ns, sleeper("a", cpu="500m"))
    wait_for(lambda: used(kube, ns, "compute") == {"pods": "1", "requests.cpu": "500m"},
             timeout=10, message="usage after one pod")
    kube.create_pod(ns, sleeper("b", cpu="250m"))
    wait_for(lambda: used(kube, ns, "compute") == {"pods": "2", "requests.cpu": "750m"},
             timeout=10, message="usage after two pods")
    e = kube.error(kube.create_pod, ns, sleeper("c", cpu="500m"))
    body = assert_status(e, 403, "Forbidden")
    # only the exceeded resources, sorted, comma-joined
    assert body["message"] == (
        'pods "c" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=500m, '
        "used: pods=2,requests.cpu=750m, limited: pods=2,requests.cpu=1")
    kube.core.delete_namespaced_pod("a", ns, grace_period_seconds=1)
    kube.wait_gone(kube.core.read_namespaced_pod, "a", ns)
    wait_for(lambda: used(kube, ns, "compute") == {"pods": "1", "requests.cpu": "250m"},
             timeout=10, message="usage released by deletion")
    kube.create_pod(ns, sleeper("c", cpu="500m"))


def test_finished_pods_do_not_count_against_quota(kube, ns):
    quota(kube, ns, "count", {"pods": "1"})
    kube.create_pod(ns, py_pod("job", "pass"))
    kube.wait_phase(ns, "job", "Succeeded")
    wait_for(lambda: used(kube, ns, "count") == {"pods": "0"}, timeout=10,
             message="a Succeeded pod releases its quota")
    kube.create_pod(ns, sleeper("next"))
    wait_for(lambda: used(kube, ns, "count") == {"pods": "1"}, timeout=10, message="pods used 1")


def test_quota_on_gpus_and_pod_count(kube, ns):
    quota(kube, ns, "gpus", {"requests.nvidia.com/gpu": "1", "pods": "1"})
    e = kube.error(kube.create_pod, ns, sleeper("greedy", gpu=2))
    assert assert_status(e, 403, "Forbidden")["message"] == (
        'pods "greedy" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=2, '
        "used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=1")
    kube.create_pod(ns, sleeper("one"))
    wait_for(lambda: used(kube, ns, "gpus").get("pods") == "1", timeout=10, message="pods used")
    e = kube.error(kube.create_pod, ns, sleeper("two"))
    assert "exceeded quota: gpus, requested: pods=1, used: pods=1, limited: pods=1" in \
        assert_status(e, 403, "Forbidden")["message"]


def test_quota_on_claims_storage_and_expansion(kube, ns):
    quota(kube, ns, "storage", {"requests.storage": "5Gi", "persistentvolumeclaims": "2"})

    def pvc(name, size):
        return {"metadata": {"name": name}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
            "resources": {"requests": {"storage": size}}}}

    kube.core.create_namespaced_persistent_volume_claim(ns, pvc("first", "3Gi"))
    wait_for(lambda: used(kube, ns, "storage") == {"persistentvolumeclaims": "1",
                                                    "requests.storage": "3Gi"},
             timeout=10, message="storage usage")
    wait_for(lambda: kube.core.read_namespaced_persistent_volume_claim("first", ns).status.phase == "Bound",
             timeout=20, message="claim bound (only a bound claim may grow)")
    e = kube.error(kube.core.create_namespaced_persistent_volume_claim, ns, pvc("second", "3Gi"))
    assert assert_status(e, 403, "Forbidden")["message"] == (
        'persistentvolumeclaims "second" is forbidden: exceeded quota: storage, '
        "requested: requests.storage=3Gi, used: requests.storage=3Gi, limited: requests.storage=5Gi")
    e = kube.error(kube.core.patch_namespaced_persistent_volume_claim, "first", ns,
                   {"spec": {"resources": {"requests": {"storage": "6Gi"}}}})
    assert "exceeded quota: storage, requested: requests.storage=3Gi" in \
        assert_status(e, 403, "Forbidden")["message"]
    got = kube.core.read_namespaced_persistent_volume_claim("first", ns)
    assert got.spec.resources.requests["storage"] == "3Gi"


async def test_quota_403_through_async_client(akube, kube, ns):
    quota(kube, ns, "tiny", {"requests.memory": "1Gi"})
    with pytest.raises(AsyncApiException) as err:
        await ak8s.CoreV1Api(akube).create_namespaced_pod(ns, sleeper("big", memory="2Gi"))
    body = assert_status(err.value, 403, "Forbidden")
    assert body["message"].endswith(
        "exceeded quota: tiny, requested: requests.memory=2Gi, used: requests.memory=0, "
        "limited: requests.memory=1Gi")


# --- scheduling (a cluster of its own: these tests use up the node) -------------------------

def failed_scheduling(kube, ns, name):
    return kube.wait_event(ns, name, "FailedScheduling")


def cuda_devices(kube, ns, name):
    """Run-time CUDA_VISIBLE_DEVICES of a sleeper pod, read from its log."""
    text = wait_for(lambda: kube.log(ns, name).strip(), timeout=20, message=f"log of {name}")
    return json.loads(text.splitlines()[0])


GPU_SLEEPER = ("import json, os, time\nprint(json.dumps(os.environ.get('CUDA_VISIBLE_DEVICES')),"
               " flush=True)\nwhile True: time.sleep(1)")


def gpu_pod(name, gpus):
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else None
    return py_pod(name, GPU_SLEEPER, grace=1, resources=resources)


def test_gpus_scheduling_and_cuda_visible_devices(fresh_kube):
    kube = fresh_kube
    ns = kube.namespace("gpu")
    kube.create_pod(ns, gpu_pod("two-a", 2))
    kube.create_pod(ns, gpu_pod("two-b", 2))
    for name in ("two-a", "two-b"):
        kube.wait_phase(ns, name, "Running")
    a = cuda_devices(kube, ns, "two-a").split(",")
    b = cuda_devices(kube, ns, "two-b").split(",")
    assert len(a) == 2 and len(b) == 2 and not set(a) & set(b), (a, b)
    assert set(a) | set(b) == {"0", "1", "2", "3"}

    kube.create_pod(ns, gpu_pod("waits", 1))  # all four are taken now
    ev = failed_scheduling(kube, ns, "waits")
    assert ev.type == "Warning"
    assert ev.message.startswith("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."), ev.message
    pod = kube.core.read_namespaced_pod("waits", ns)
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    assert condition(pod, "PodScheduled") == "False"
    assert [c.reason for c in pod.status.conditions if c.type == "PodScheduled"] == ["Unschedulable"]

    kube.core.delete_namespaced_pod("two-a", ns, grace_period_seconds=1)
    kube.wait_phase(ns, "waits", "Running", timeout=30)  # rescheduled once capacity frees up
    w = cuda_devices(kube, ns, "waits").split(",")
    assert len(w) == 1 and w[0] in a
    scheduled = kube.wait_event(ns, "waits", "Scheduled")
    assert scheduled.message == f"Successfully assigned {ns}/waits to ptjaas-node-1"


def test_unschedulable_reasons(fresh_kube):
    kube = fresh_kube
    ns = kube.namespace("sched")
    kube.create_pod(ns, gpu_pod("five-gpus", 5))
    kube.create_pod(ns, sleeper("huge-cpu", cpu="100"))
    kube.create_pod(ns, sleeper("huge-mem", memory="1Ti"))
    kube.create_pod(ns, sleeper("elsewhere", node_selector={"ptjaas.io/pool": "nowhere"}))
    expected = {
        "five-gpus": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        "huge-cpu": "0/1 nodes are available: 1 Insufficient cpu.",
        "huge-mem": "0/1 nodes are available: 1 Insufficient memory.",
        "elsewhere": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
    }
    for name, message in expected.items():
        ev = failed_scheduling(kube, ns, name)
        assert ev.message.startswith(message), ev.message
        assert kube.core.read_namespaced_pod(name, ns).status.phase == "Pending"
    # a pod that fits is not held up by the ones that do not
    kube.create_pod(ns, sleeper("fits", cpu="1"))
    kube.wait_phase(ns, "fits", "Running")
    assert kube.core.read_namespaced_pod("fits", ns).spec.node_name == "ptjaas-node-1"


def test_several_nodes_with_labels_and_taints(tmp_path):
    from ptjaas_sandbox.cluster import EmbeddedCluster, NodeSpec

    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    toleration = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    c = EmbeddedCluster(state_dir=tmp_path / "k8s", nodes=[
        NodeSpec(name="cpu-node", cpu="4", memory="8Gi", gpus=0),
        NodeSpec(name="gpu-node", cpu="8", memory="32Gi", gpus=2, labels={"ptjaas.io/pool": "gpu"},
                 taints=[taint])])
    c.start_in_thread()
    try:
        kube = Kube(c)
        ns = kube.namespace("nodes")
        capacity = {n.metadata.name: n.status.capacity for n in kube.core.list_node().items}
        assert capacity["cpu-node"]["cpu"] == "4" and "nvidia.com/gpu" not in capacity["cpu-node"]
        assert capacity["gpu-node"]["nvidia.com/gpu"] == "2"

        tolerant = gpu_pod("tolerant", 1)
        tolerant["spec"]["tolerations"] = toleration
        kube.create_pod(ns, tolerant)
        kube.create_pod(ns, gpu_pod("intolerant", 1))
        kube.create_pod(ns, sleeper("plain", cpu="2"))
        picky = sleeper("picky", cpu="100", node_selector={"ptjaas.io/pool": "gpu"})
        picky["spec"]["tolerations"] = toleration
        kube.create_pod(ns, picky)

        assert kube.wait_phase(ns, "tolerant", "Running").spec.node_name == "gpu-node"
        assert kube.wait_phase(ns, "plain", "Running").spec.node_name == "cpu-node"
        assert failed_scheduling(kube, ns, "intolerant").message.startswith(
            "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, "
            "1 node(s) had untolerated taint(s).")
        assert failed_scheduling(kube, ns, "picky").message.startswith(
            "0/2 nodes are available: 1 Insufficient cpu, "
            "1 node(s) didn't match Pod's node affinity/selector.")
        assert kube.core.list_namespaced_pod(
            ns, field_selector="spec.nodeName=gpu-node").items[0].metadata.name == "tolerant"
        kube.close()
    finally:
        c.stop_thread()


# --- LimitRange ------------------------------------------------------------------------------

def test_limitrange_defaults_and_caps_containers(kube, ns):
    """A Container item's missing default limit is its max, a missing default request its default
    limit; a container without them gets them, one above max is refused with the real message.
    (A max without a default gives every container the max: team-manifests sets a default of 0.)"""
    kube.core.create_namespaced_limit_range(ns, {"metadata": {"name": "caps"}, "spec": {"limits": [
        {"type": "Container", "max": {"nvidia.com/gpu": "2"}, "defaultRequest": {"cpu": "100m"}}]}})
    item = kube.core.read_namespaced_limit_range("caps", ns).spec.limits[0]
    assert item.default == {"nvidia.com/gpu": "2"}
    assert item.default_request == {"cpu": "100m", "nvidia.com/gpu": "2"}
    res = kube.create_pod(ns, sleeper("plain")).spec.containers[0].resources
    assert res.limits == {"nvidia.com/gpu": "2"} and res.requests == {"cpu": "100m", "nvidia.com/gpu": "2"}
    res = kube.create_pod(ns, sleeper("cpu-only", cpu="200m")).spec.containers[0].resources
    assert res.limits == {"cpu": "200m", "nvidia.com/gpu": "2"}
    assert res.requests == {"cpu": "200m", "nvidia.com/gpu": "2"}
    e = kube.error(kube.create_pod, ns, sleeper("big", gpu=3))
    body = assert_status(e, 403, "Forbidden")
    assert body["message"] == 'pods "big" is forbidden: maximum nvidia.com/gpu usage per Container is 2, but limit is 3'
    kube.core.patch_namespaced_limit_range("caps", ns, {"spec": {"limits": [
        {"type": "Container", "max": {"nvidia.com/gpu": "2"}, "default": {"nvidia.com/gpu": "0"}}]}})
    # kube-apiserver's LimitRanger reads LimitRanges from its informer: a pod made just after the
    # patch may still get the old default (one that did is deleted at once: it holds 2 GPUs)
    attempts = []

    def zero_default():
        name = f"zero-{len(attempts)}"
        attempts.append(kube.create_pod(ns, sleeper(name)).spec.containers[0].resources)
        if attempts[-1].limits != {"nvidia.com/gpu": "0"}:
            kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            return False
        return True

    wait_for(zero_default, timeout=30, interval=0.5, message="the patched LimitRange's default on a new pod")
    res = attempts[-1]
    assert res.limits == {"nvidia.com/gpu": "0"} and res.requests == {"nvidia.com/gpu": "0"}
