"""The culler against a real JupyterHub with real single-user servers on the embedded cluster.

Short timeouts: GPU-size servers (a default and a named one) idle past their size's timeout are
culled while an active GPU server (real activity through the proxy) and an idle CPU-size server
are kept; the home volume stays and the next start sees the files; the after-cull snapshot
appears (with the files) and old snapshots are pruned; the usage record is written; a failing
and a hanging hook do not stop the cull; idle kernels inside a running GPU server are shut down
early. The culler runs one pass
at a time (``--once``) with a token of the role ``service_config`` defines (no admin).
"""

import asyncio
import json
import os
import subprocess
import textwrap
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests


from ptjaas_sandbox.cluster.server import free_port  # noqa: E402
from tests.hubutil import wait_ready
from tests.prometheus_stub import PrometheusStub
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]
# embedded only: the test makes a pod deletion slow by fault injection. Culling (with the snapshot
# hook) on a real kube-apiserver with z2jh's rights: tests/test_real_hub_rights.py

TESTS = Path(__file__).resolve().parent
GPU_IDLE = 6  # seconds
CULLER_TOKEN = "culler-test-token-0123456789"
SNAP_CLASS = "ptjaas-test-snapclass"
SNAPSHOTS = ("snapshot.storage.k8s.io", "v1", "default", "volumesnapshots")
IMAGES = {
    "python": {"display_name": "Python", "versions": {"2025.01": {"image": "example.org/python:2025.01"}}},
    "cuda": {"display_name": "CUDA", "sizes": ["gpu"],
             "versions": {"12.4": {"image": "example.org/cuda:12.4", "default": True}}},
}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "128Mi",
              "mem_limit": "1Gi", "cull_idle_timeout": 3600},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 0.1, "cpu_limit": 2, "mem_guarantee": "128Mi",
            "mem_limit": "2Gi", "gpu": 1, "groups": ["gpu-users"], "cull_idle_timeout": GPU_IDLE,
            "kernel_idle_timeout": 2},
}


def hub_config(tmp):
    return textwrap.dedent(f"""
        import json
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.load_groups = {{"gpu-users": {{"users": ["gina", "gabe"]}}}}
        c.PtjaasSpawner.images = {IMAGES!r}
        c.PtjaasSpawner.sizes = {SIZES!r}
        c.PtjaasSpawner.cmd = ["jupyterhub-singleuser"]
        c.PtjaasSpawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "1"}}
        c.PtjaasSpawner.start_timeout = 120
        c.PtjaasSpawner.http_timeout = 90
        c.PtjaasSpawner.k8s_api_request_timeout = 30  # one slow pod deletion below, not retried
        # pod IPs (127.100.x.y) repeat across embedded clusters run concurrently: not 8888
        c.PtjaasSpawner.port = {free_port()}

        from ptjaas_spawner.culler import install_culler, service_config
        # the hub-managed service (started by the hub; first pass at once, then hourly)
        install_culler(c, timeout={GPU_IDLE}, cull_every=3600)
        # the same culler, run by the test one pass at a time with its own token and role
        ext = service_config(
            c.PtjaasSpawner.sizes, c.PtjaasSpawner.images, name="culler-once", timeout={GPU_IDLE},
            before_cull_hooks=["cull_hooks_sample:failing", "cull_hooks_sample:hanging"],
            after_cull_hooks=["cull_hooks_sample:hanging", "snapshot", "usage", "cull_hooks_sample:failing"],
            hook_timeout=1, usage_file={str(tmp / "usage.jsonl")!r}, snapshot_class={SNAP_CLASS!r},
            audit_file={str(tmp / "audit.jsonl")!r},
            snapshot_keep=2)
        with open({str(tmp / "culler-once.json")!r}, "w") as f:
            json.dump(ext["services"][0], f)
        c.JupyterHub.services.append({{"name": "culler-once", "api_token": {CULLER_TOKEN!r}}})
        c.JupyterHub.load_roles.extend(ext["load_roles"])
    """)


def run_culler_once(hub, tmp, *args):
    svc = json.loads((tmp / "culler-once.json").read_text())
    env = dict(os.environ, **svc["environment"])
    env.update(JUPYTERHUB_API_URL=f"{hub.url}/hub/api", JUPYTERHUB_API_TOKEN=CULLER_TOKEN,
               PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]))
    return subprocess.run(svc["command"] + ["--once", "--log-level=DEBUG", *args], env=env, capture_output=True, text=True, timeout=120)


@contextmanager
def kept_active(url, headers):
    """Gabe keeps working through the proxy while the culler runs: his server reports the
    activity to the hub each second, however long the culler takes to start on a loaded machine."""
    stop = threading.Event()

    def work():
        while not stop.is_set():
            try:
                requests.get(url, headers=headers, timeout=10)
            except requests.RequestException:
                pass
            stop.wait(0.5)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=15)


def servers(hub, user):
    r = hub.api("GET", f"/users/{user}")
    r.raise_for_status()
    return r.json()["servers"]


def idle_seconds(server):
    last = datetime.fromisoformat(server["last_activity"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - last).total_seconds()


def user_url(hub, user, name, path):
    return f"{hub.url}/user/{user}/" + (f"{name}/" if name else "") + path


def token(hub, user):
    r = hub.api("POST", f"/users/{user}/tokens", json={"note": "cull test"})
    r.raise_for_status()
    return {"Authorization": f"token {r.json()['token']}"}


@pytest.fixture(scope="module")
def k8s(module_cluster):
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield kubernetes.client.CoreV1Api(api_client), kubernetes.client.CustomObjectsApi(api_client)
    api_client.close()


def culler_snapshots(custom):
    items = custom.list_namespaced_custom_object(
        *SNAPSHOTS, label_selector="app.kubernetes.io/managed-by=ptjaas-culler")["items"]
    return {s["metadata"]["name"]: s for s in items}


def test_gpu_idle_server_culled_with_hooks_active_and_cpu_kept(module_cluster, hub_factory, k8s, tmp_path):
    core, custom = k8s
    custom.create_cluster_custom_object("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": SNAP_CLASS}, "driver": "ptjaas.io/local-path", "deletionPolicy": "Delete"})
    hub = hub_factory(hub_config(tmp_path), cluster=module_cluster)
    # the hub-managed culler started with the hub and made its first pass
    wait_for(lambda: "cull pass: 0 users" in hub.logs(), timeout=60, message="managed culler's first pass")

    hub.api("POST", "/users", json={"usernames": ["gina", "gabe", "carl"]})
    gina_opts = {"image": "cuda", "version": "12.4", "size": "gpu"}
    gpu = {"image": "cuda", "size": "gpu"}
    for user, name, opts in [("gina", "", gina_opts), ("gabe", "train", gpu), ("gabe", "sweep", gpu),
                             ("carl", "", {})]:  # carl: the defaults (a CPU size)
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        r = hub.api("POST", path, json=opts)
        assert r.status_code in (201, 202), r.text
    for user, name in [("gina", ""), ("gabe", "train"), ("gabe", "sweep"), ("carl", "")]:
        wait_ready(hub, user, name, timeout=150)

    gina, gabe = token(hub, "gina"), token(hub, "gabe")
    r = requests.put(user_url(hub, "gina", "", "api/contents/results.txt"), headers=gina, timeout=30,
                     json={"type": "file", "format": "text", "content": "weeks of work"})
    assert r.status_code in (200, 201), r.text
    # two snapshots from earlier culls of gina's home (the oldest must be pruned: keep 2)
    for i in range(2):
        custom.create_namespaced_custom_object(*SNAPSHOTS, {
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": f"claim-gina-cull-20000101-00000{i}-000000",
                         "labels": {"app.kubernetes.io/managed-by": "ptjaas-culler"}},
            "spec": {"volumeSnapshotClassName": SNAP_CLASS,
                     "source": {"persistentVolumeClaimName": "claim-gina"}}})
    # a kernel in gabe's GPU server: idle kernels are shut down after the size's kernel_idle_timeout
    r = requests.post(user_url(hub, "gabe", "train", "api/kernels"), headers=gabe, json={}, timeout=60)
    assert r.status_code == 201, r.text

    def gina_and_carl_idle_gabe_active():
        # real activity: gabe works through the proxy; his server reports it to the hub each second
        r = requests.get(user_url(hub, "gabe", "train", "api/contents"), headers=gabe, timeout=30)
        r.raise_for_status()
        g, c, b = servers(hub, "gina")[""], servers(hub, "carl")[""], servers(hub, "gabe")
        return (idle_seconds(g) > GPU_IDLE + 1 and idle_seconds(c) > GPU_IDLE + 1
                and idle_seconds(b["sweep"]) > GPU_IDLE + 1 and idle_seconds(b["train"]) < GPU_IDLE - 3)

    wait_for(gina_and_carl_idle_gabe_active, timeout=60, interval=0.5,
             message="gina and carl idle, gabe active")
    kernels_url = user_url(hub, "gabe", "train", "api/kernels")
    wait_for(lambda: requests.get(kernels_url, headers=gabe, timeout=30).json() == [], timeout=30,
             message="the idle kernel in the GPU server to be shut down")

    # gina's pod is slow to delete: the hub answers 202 after its slow_stop_timeout (10 s); the
    # culler waits for the stop to finish before its after-cull hooks (snapshot of a quiet volume)
    module_cluster.inject_fault(verb="delete", resource="pods", name="jupyter-gina", latency=12, times=1)
    try:
        with kept_active(user_url(hub, "gabe", "train", "api/contents"), gabe):
            out = run_culler_once(hub, tmp_path)  # the hanging hooks cannot make it hang (subprocess timeout)
    finally:
        module_cluster.clear_faults()
    log = out.stdout + out.stderr
    print(log)  # shown when the test fails
    assert out.returncode == 0, log
    assert "server gina is slow to stop; waiting" in log
    assert log.index("slow to stop") < log.index("after-cull hook hanging for gina") < log.index("snapshot claim-gina")

    # culled: gina's idle GPU server and gabe's idle named GPU server. Kept: gabe's active GPU
    # server, carl's idle CPU server.
    assert "" not in servers(hub, "gina"), log
    assert "sweep" not in servers(hub, "gabe"), log
    assert servers(hub, "gabe")["train"]["ready"], log
    assert servers(hub, "carl")[""]["ready"], log
    assert "Culling server gina" in log and "size gpu" in log
    assert "Culling server gabe/sweep" in log
    assert "Culling server carl" not in log and "Culling server gabe/train" not in log
    # carl started with the defaults: the culler still knew his server's size (CPU: 1 h timeout)
    assert "Not culling carl: inactive for" in log and "(size small" in log
    # both failing hooks and both hanging ones were logged, and did not stop the cull
    assert "before-cull hook failing for gina failed (RuntimeError" in log, log
    assert "before-cull hook hanging for gina timed out after 1.0s" in log, log
    assert "after-cull hook hanging for gina timed out" in log
    assert "after-cull hook failing for gina failed" in log

    # the home claim stays
    claims = core.list_namespaced_persistent_volume_claim("default").items
    assert "claim-gina" in {c.metadata.name for c in claims}

    # snapshot: a new one of claim-gina (with the files), the oldest earlier one pruned
    snaps = culler_snapshots(custom)
    assert "claim-gina-cull-20000101-000000-000000" not in snaps, sorted(snaps)
    assert "claim-gina-cull-20000101-000001-000000" in snaps, sorted(snaps)
    (new,) = [n for n in snaps if n.startswith("claim-gina") and not n.startswith("claim-gina-cull-2000")]
    assert snaps[new]["spec"] == {"volumeSnapshotClassName": SNAP_CLASS,
                                  "source": {"persistentVolumeClaimName": "claim-gina"}}
    ready = wait_for(lambda: (culler_snapshots(custom)[new].get("status") or {}).get("readyToUse")
                     and culler_snapshots(custom)[new], timeout=30, message="snapshot ready")
    content = custom.get_cluster_custom_object("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents",
                                               ready["status"]["boundVolumeSnapshotContentName"])
    snap_dir = Path(content["status"]["snapshotHandle"])
    assert (snap_dir / "results.txt").read_text() == "weeks of work"

    # the named server's home was snapshotted too
    assert any(s["spec"]["source"]["persistentVolumeClaimName"] == "claim-gabe" for s in snaps.values())

    # the audit record: one server-cull line per culled server, by the culler
    culls = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    culls = [(e["action"], e["user"], e["server"], e["by"], e["size"]) for e in culls if e["action"] == "server-cull"]
    assert sorted(culls) == [("server-cull", "gabe", "sweep", "ptjaas-culler", "gpu"),
                             ("server-cull", "gina", "", "ptjaas-culler", "gpu")]

    # usage records
    entries = [json.loads(line) for line in (tmp_path / "usage.jsonl").read_text().splitlines()]
    (entry,) = [e for e in entries if e["user"] == "gina"]
    gabe_entries = [(e["user"], e["server"], e["gpus"]) for e in entries if e["user"] == "gabe"]
    assert gabe_entries == [("gabe", "sweep", 1)]
    assert entry["user"] == "gina" and entry["server"] == "" and entry["size"] == "gpu"
    assert entry["image"] == "cuda" and entry["version"] == "12.4" and entry["gpus"] == 1
    assert 0 < entry["gpu_hours"] == entry["hours"] < 0.1 and entry["reason"] == "idle"

    # the next start of gina's server sees her files
    r = hub.api("POST", "/users/gina/server", json=gina_opts)
    assert r.status_code in (201, 202), r.text
    wait_ready(hub, "gina", timeout=150)
    r = requests.get(user_url(hub, "gina", "", "api/contents/results.txt"), headers=gina, timeout=30)
    assert r.status_code == 200 and r.json()["content"] == "weeks of work"

    # servers whose user_options name no size (started before ptjaas recorded it): the culler
    # reads the size from the pod labels, one list call
    from ptjaas_spawner.culler import CullPolicy
    from ptjaas_spawner.culler.policy import choice_from_labels, labels_by_server
    from ptjaas_spawner.kube import Kube

    async def pod_labels():
        kube = Kube("default")
        try:
            return labels_by_server(await kube.list_pods("component=singleuser-server"))
        finally:
            await kube.close()

    labels = asyncio.run(pod_labels())
    policy = CullPolicy.from_dict({"sizes": SIZES, "images": IMAGES})
    assert choice_from_labels(policy, labels[("carl", "")])["size"] == "small"
    assert choice_from_labels(policy, labels[("gabe", "train")]) == {"size": "gpu", "image": "cuda",
                                                                     "version": "12.4"}

    # idle GPUs count as idle: gina and gabe both keep working (activity through the proxy);
    # Prometheus (DCGM exporter series) shows gabe's GPU under 5 % over his size's idle timeout
    # (busy 20 s ago, before the window) and gina's GPU busy: gabe's server is culled, gina's kept
    def server_age(user, name):
        started = servers(hub, user)[name]["started"]
        return (datetime.now(timezone.utc) - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()

    wait_for(lambda: server_age("gina", "") > GPU_IDLE + 1, timeout=30, message="gina's server older than the GPU timeout")
    from ptjaas_spawner.culler.prometheus import pod_names
    from ptjaas_spawner.kube import Kube

    async def names():
        kube = Kube("default")
        try:
            return pod_names(await kube.list_pods("component=singleuser-server"))
        finally:
            await kube.close()

    pods = asyncio.run(names())
    gabe_pod, gina_pod = pods[("gabe", "train")][1], pods[("gina", "")][1]
    with PrometheusStub() as prom:
        prom.series = {gabe_pod: {"0": [(1, 3.0), (4, 1.0), (20, 97.0)]},
                       gina_pod: {"0": [(1, 2.0), (3, 85.0)]}}
        with kept_active(user_url(hub, "gabe", "train", "api/contents"), gabe), \
                kept_active(user_url(hub, "gina", "", "api/contents"), gina):
            wait_for(lambda: idle_seconds(servers(hub, "gina")[""]) < GPU_IDLE - 3, timeout=30,
                     message="gina active")
            out = run_culler_once(hub, tmp_path, f"--prometheus-url={prom.url}", "--gpu-idle-threshold=5")
    log = out.stdout + out.stderr
    print(log)
    assert out.returncode == 0, log
    assert f'pod="{gabe_pod}"}}[{GPU_IDLE}s])' in " ".join(prom.queries), prom.queries
    assert "train" not in servers(hub, "gabe"), log
    assert servers(hub, "gina")[""]["ready"], log
    assert f"Culling server gabe/train: GPU idle: under 5 % for {GPU_IDLE} s (at most 3 %" in log
    assert "Culling server gina" not in log and "Culling server carl" not in log
    gpu_culls = [e for e in map(json.loads, (tmp_path / "audit.jsonl").read_text().splitlines())
                 if e["action"] == "server-cull" and e["server"] == "train"]
    assert [(e["user"], e["kind"], e["reason"].split(" (")[0]) for e in gpu_culls] == [
        ("gabe", "gpu-idle", f"GPU idle: under 5 % for {GPU_IDLE} s")]
    entries = [json.loads(line) for line in (tmp_path / "usage.jsonl").read_text().splitlines()]
    assert [(e["server"], e["reason"]) for e in entries if e["user"] == "gabe"] == [("sweep", "idle"), ("train", "gpu-idle")]

    for user, name in [("gina", ""), ("carl", "")]:
        hub.api("DELETE", f"/users/{user}/servers/{name}" if name else f"/users/{user}/server")
    for user, name in [("gina", ""), ("carl", "")]:
        hub.wait_stopped(user, name)
