"""A real hub on the real control plane with exactly z2jh's hub rights plus ours: a first start, a
restart with a data connection, a stop, a start the namespace's ResourceQuota refuses and a cull;
then the audit log says no request of the hub's (or the culler's) account was refused for lack of
rights, and the hub never asked for a Secret: the connection's reached the server through the
kubelet (issue 23)."""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest


from ptjaas_spawner.quota.resourcequota import quota_manifest  # noqa: E402
from ptjaas_sandbox.cluster.server import free_port  # noqa: E402
from tests.hubutil import server, start
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(400)]

TESTS = Path(__file__).resolve().parent
CULLER_TOKEN = "culler-rights-test-token-0123456789"
IMAGES = {"python": {"display_name": "Python", "versions": {"2025.01": {"image": "example.org/python:2025.01"}}}}
SIZES = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "128Mi",
                   "mem_limit": "1Gi"}}


def hub_config(tmp, namespace):
    return textwrap.dedent(f"""
        import json
        c.PtjaasSpawner.images = {IMAGES!r}
        c.PtjaasSpawner.sizes = {SIZES!r}
        c.PtjaasSpawner.cmd = ["jupyterhub-singleuser"]
        c.PtjaasSpawner.port = {free_port()}
        c.PtjaasSpawner.data_connections = {{"store": {{"secret": "store-creds", "env": {{"STORE_KEY": "key"}}}}}}
        from ptjaas_spawner.culler import service_config
        ext = service_config(c.PtjaasSpawner.sizes, c.PtjaasSpawner.images, name="culler-once", timeout=1,
                             after_cull_hooks=["snapshot"], snapshot_keep=1, namespace={namespace!r})
        with open({str(tmp / "culler-once.json")!r}, "w") as f:
            json.dump(ext["services"][0], f)
        c.JupyterHub.services.append({{"name": "culler-once", "api_token": {CULLER_TOKEN!r}}})
        c.JupyterHub.load_roles.extend(ext["load_roles"])
    """)


SMALL = {"image": "python", "size": "small"}


def audit_events(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_hub_and_culler_never_lack_a_right(real_hub_backend, hub_factory, tmp_path):
    backend = real_hub_backend
    ns = backend.namespace
    hub = hub_factory(hub_config(tmp_path, ns), cluster=backend, env={"KUBECONFIG": backend.kubeconfig_path})
    for user in ("ann", "bob"):
        hub.api("POST", f"/users/{user}").raise_for_status()
    # a first start (home claim made), a stop, a restart of the same server
    assert start(hub, "ann", SMALL).status_code in (201, 202)
    hub.wait_ready("ann", timeout=150)
    assert hub.api("DELETE", "/users/ann/server").status_code in (202, 204)
    hub.wait_stopped("ann")
    backend.cluster.plane.api("POST", f"/api/v1/namespaces/{ns}/secrets",
                              {"metadata": {"name": "store-creds"}, "stringData": {"key": "s3cr3t"}})
    assert start(hub, "ann", dict(SMALL, connections=["store"])).status_code in (201, 202)
    hub.wait_ready("ann", timeout=150)
    runtime = next(p for p in backend.cluster.kubelet.pods.values() if p.name == "jupyter-ann")
    with open(f"/proc/{runtime.procs['notebook'].pid}/environ", "rb") as f:
        assert b"STORE_KEY=s3cr3t" in f.read().split(b"\0")
    # a start refused by the namespace's ResourceQuota (no pod may be created)
    backend.cluster.plane.api("POST", f"/api/v1/namespaces/{ns}/resourcequotas",
                              dict(quota_manifest("no-more-pods", ns, {}), spec={"hard": {"pods": "1"}}))
    wait_for(lambda: backend.cluster.plane.api("GET", f"/api/v1/namespaces/{ns}/resourcequotas/no-more-pods")
             .get("status", {}).get("used", {}).get("pods") == "1", timeout=30, message="quota usage counted")
    start(hub, "bob", SMALL)
    wait_for(lambda: server(hub, "bob") is None, timeout=120, message="bob's refused start to end")
    assert "exceeded quota: no-more-pods" in hub.logs()
    # a cull of ann's idle server, with the snapshot hook (the culler runs with the hub's KUBECONFIG)
    svc = json.loads((tmp_path / "culler-once.json").read_text())
    env = dict(os.environ)
    env.update(svc["environment"])
    env.update(KUBECONFIG=backend.kubeconfig_path, JUPYTERHUB_API_URL=f"{hub.url}/hub/api",
               JUPYTERHUB_API_TOKEN=CULLER_TOKEN)
    wait_for(lambda: subprocess.run(svc["command"] + ["--once"], env=env, capture_output=True, text=True,
                                    timeout=120).returncode == 0 and server(hub, "ann") is None,
             timeout=120, interval=1, message="ann's server culled")
    snapshots = backend.cluster.plane.api(
        "GET", f"/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots")["items"]
    assert [s["spec"]["source"]["persistentVolumeClaimName"] for s in snapshots] == ["claim-ann"]

    # every request of the hub's account, in the audit log (written in batches: wait for the last)
    def requests_of_the_hub():
        events = [e for e in audit_events(backend.audit_log_path)
                  if e.get("user", {}).get("username") == backend.account and e.get("stage") == "ResponseComplete"]
        return events if any(e["objectRef"].get("resource") == "volumesnapshots" for e in events) else None
    events = wait_for(requests_of_the_hub, timeout=30, message="the culler's requests in the audit log")
    verbs = {(e["verb"], e["objectRef"].get("resource")) for e in events}
    assert {("create", "pods"), ("create", "persistentvolumeclaims"), ("delete", "pods"),
            ("create", "volumesnapshots")} <= verbs, verbs
    refused = [(e["verb"], e["requestURI"], e["responseStatus"]) for e in events
               if e["responseStatus"]["code"] == 403
               and e.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid"]
    assert refused == []
    # the Secret's value reached the server, and the hub never asked for a Secret (the kubelet did)
    assert [e["requestURI"] for e in events if e["objectRef"].get("resource") == "secrets"] == []
    readers = {e["user"]["username"] for e in audit_events(backend.audit_log_path)
               if (e.get("objectRef") or {}).get("resource") == "secrets"
               and e["objectRef"].get("name") == "store-creds" and e.get("verb") == "get"}
    assert readers and backend.account not in readers, readers  # the node's kubelet read it
    assert "s3cr3t" not in hub.logs()
    # the refusals the hub did meet were the quota's (admission), not RBAC's
    assert any(e["responseStatus"]["code"] == 403 and e["objectRef"].get("resource") == "pods" for e in events)
