"""Team namespaces on the real kube-apiserver, the hub holding exactly z2jh's hub Role + our
rbac-hub.yaml in its own namespace (``ptjaas_sandbox.hubrights``) and, in each team namespace,
what ``ptjaas team-manifests ... | kubectl apply -f -`` makes, nothing more. Then the audit log
must show no request of the hub's account refused and no pod access across all namespaces.

The tests run in file order; the last one reads the audit log of all before it.
"""

import json
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml


from tests.test_teams_hub import (
    GROUPS, IMAGES, QUOTA_GROUPS, SIZES, assert_usage_by_namespace, server, start_ready, stop, usage,
    user_claims, user_pods,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parent.parent
TEAMS = {"vision": "jhub-team-{group}", "nlp": "jhub-team-{group}"}
TEAM_NAMESPACES = ["jhub-team-nlp", "jhub-team-vision"]


@pytest.fixture(scope="module")
def backend(real_cluster, shared_dir):
    """A fresh hub namespace of the session's real cluster, the hub with z2jh's rights + ours."""
    from ptjaas_sandbox.hubrights import HubBackend

    return HubBackend(real_cluster, f"jhub-{uuid.uuid4().hex[:6]}", shared_dir / "charts" / "jupyterhub",
                      helm=str(ROOT / "node_modules" / ".bin" / "helm"))


@pytest.fixture(scope="module")
def kube(backend):
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(backend.admin_kubeconfig_path))
    yield kubernetes.client.CoreV1Api(client)
    client.close()


@pytest.fixture(scope="module")
def team_namespaces(backend, tmp_path_factory):
    """What an admin runs: ``ptjaas team-manifests -f values.yaml | kubectl apply -f -``."""
    tmp = tmp_path_factory.mktemp("teams")
    values = tmp / "values.yaml"
    values.write_text(yaml.safe_dump({"hub": {"config": {"PtjaasSpawner": {
        "team_namespaces": TEAMS, "quota_groups": QUOTA_GROUPS, "sizes": SIZES}}}}))
    manifests = subprocess.run(
        [sys.executable, "-m", "ptjaas_spawner.cli", "team-manifests", "-f", str(values),
         "--hub-namespace", backend.namespace, "--release", "hub", "--service-account", "hub"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    applied = subprocess.run(["kubectl", "--kubeconfig", str(backend.admin_kubeconfig_path), "apply", "-f", "-"],
                             input=manifests, capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    for ns in TEAM_NAMESPACES:
        assert f"namespace/{ns} created" in applied.stdout or f"namespace/{ns} unchanged" in applied.stdout
    return TEAM_NAMESPACES


@pytest.fixture(scope="module")
def hub(backend, team_namespaces, module_hub_factory):
    config = textwrap.dedent(f"""
        c.JupyterHub.spawner_class = "ptjaas"
        c.JupyterHub.load_groups = {json.dumps(GROUPS)}
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.Authenticator.admin_users = {{"boss"}}
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        c.PtjaasSpawner.quota_groups = {json.dumps(QUOTA_GROUPS)}
        c.PtjaasSpawner.team_namespaces = {json.dumps(TEAMS)}
        # the real node's pods share one address: each server gets a port of its own
        from ptjaas_sandbox.cluster.server import free_port
        def _own_port(spawner):
            spawner.port = free_port()
        c.PtjaasSpawner.pre_spawn_hook = _own_port
        """)
    return module_hub_factory(config, cluster=backend)


def test_a_vision_member_lands_in_the_vision_namespace(hub, kube):
    try:
        start_ready(hub, "vera", {"image": "python", "size": "small"})
        assert user_pods(kube, "vera") == {"jhub-team-vision": ["jupyter-vera"]}
        assert user_claims(kube, "vera") == {"jhub-team-vision": ["claim-vera"]}
        # the namespace's LimitRange caps GPUs per container; a CPU size still holds none
        resources = kube.read_namespaced_pod("jupyter-vera", "jhub-team-vision").spec.containers[0].resources
        assert (resources.requests or {}).get("nvidia.com/gpu", "0") == "0", resources
    finally:
        stop(hub, "vera")
    assert user_claims(kube, "vera") == {"jhub-team-vision": ["claim-vera"]}


def test_a_home_made_before_teams_keeps_being_used(hub, kube, backend):
    ns = backend.namespace
    kube.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "claim-leo", "annotations": {"hub.jupyter.org/username": "leo"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    try:
        start_ready(hub, "leo", {"image": "python", "size": "small"})
        assert user_pods(kube, "leo") == {ns: ["jupyter-leo"]}
        assert user_claims(kube, "leo") == {ns: ["claim-leo"]}
    finally:
        stop(hub, "leo")


def test_hub_restart_rebuilds_usage_from_three_namespaces(hub, kube, backend):
    ns = backend.namespace
    try:
        start_ready(hub, "vera", {"image": "python", "size": "small"})
        start_ready(hub, "tom", {"image": "python", "size": "small", "team": "nlp"})
        start_ready(hub, "nobody", {"image": "python", "size": "small"})
        assert {n for u in ("vera", "tom", "nobody") for n in user_pods(kube, u)} == {ns, *TEAM_NAMESPACES}
        by_namespace = {ns: (1, 0, ["nobody"]), "jhub-team-nlp": (1, 0, ["tom"]),
                        "jhub-team-vision": (1, 0, ["vera"])}
        assert_usage_by_namespace(hub, by_namespace)
        before = usage(hub)
        hub.restart()
        after = usage(hub)
        assert after["servers"] == before["servers"] and after["namespaces"] == before["namespaces"]
        assert after["groups"] == before["groups"]
        assert_usage_by_namespace(hub, by_namespace)
    finally:
        for u in ("vera", "tom", "nobody"):
            if server(hub, u):
                stop(hub, u)


def _flush_audit_log(backend, kube):
    """The audit log is written in batches: make a request of our own and wait until it is in
    the log; every earlier request is then in it too."""
    marker = datetime.now(timezone.utc)
    kube.read_namespace(backend.namespace)

    def logged():
        with open(backend.audit_log_path) as f:
            for line in reversed(f.read().splitlines()):
                e = json.loads(line) if line.strip() else {}
                ref = e.get("objectRef") or {}
                if (ref.get("resource") == "namespaces" and ref.get("name") == backend.namespace
                        and e.get("verb") == "get" and e.get("stage") == "ResponseComplete"
                        and datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")) >= marker):
                    return True
        return False
    wait_for(logged, timeout=30, message="the audit log to catch up")


def test_the_audit_log_shows_no_refusal_and_no_cluster_wide_pod_access(hub, kube, backend):
    _flush_audit_log(backend, kube)
    with open(backend.audit_log_path) as f:
        events = [e for e in map(json.loads, filter(str.strip, f))
                  if e.get("stage") == "ResponseComplete" and (e.get("user") or {}).get("username") == backend.account]
    assert events, "no request of the hub's account in the audit log"
    refused = [(e["verb"], e["requestURI"], e["responseStatus"].get("code")) for e in events
               if e["responseStatus"].get("code") in (401, 403)]
    assert refused == []
    cluster_wide = [(e["verb"], e["requestURI"]) for e in events
                    if (e.get("objectRef") or {}).get("resource") == "pods" and not e["objectRef"].get("namespace")]
    assert cluster_wide == []
    # the hub watched pods in each namespace it uses, and made servers and homes in the teams'
    seen = {(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("namespace")) for e in events
            if e.get("objectRef")}
    for ns in (backend.namespace, *TEAM_NAMESPACES):
        assert {("list", "pods", ns), ("watch", "pods", ns)} <= seen, ns
    for ns in TEAM_NAMESPACES:
        assert {("create", "pods", ns), ("create", "persistentvolumeclaims", ns), ("delete", "pods", ns)} <= seen, ns
