"""Starts that cannot succeed fail fast, say why in plain words and leave nothing behind
(issue 10's bugs 2-7, issue 9 point 5), through a real JupyterHub on the embedded cluster.

Each test fails on the code before these fixes: a stale claim event failed a new start, a
storage quota gave a 500, no default StorageClass waited minutes, the scheduler's volume
warning reached the user, a refused pod left a new home claim, the user's token reached the
hub log, an unschedulable pod waited ``start_timeout``.
"""

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))  # any pytest import mode

from waiting import wait_for  # noqa: E402

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]

IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu-8": {"display_name": "Eight GPUs", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi", "gpu": 8},
}


def hub_config(extra=""):
    return textwrap.dedent(
        f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        """
    ) + textwrap.dedent(extra)


def kube_clients(cluster):
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig_path))
    return kubernetes.client.CoreV1Api(api_client), kubernetes.client.StorageV1Api(api_client)


def names(items):
    return sorted(i.metadata.name for i in items)


def claims(core):
    return names(core.list_namespaced_persistent_volume_claim("default").items)


def pods(core):
    return names(p for p in core.list_namespaced_pod("default").items if not p.metadata.deletion_timestamp)


def server(hub, user):
    r = hub.api("GET", f"/users/{user}")
    r.raise_for_status()
    return r.json()["servers"].get("")


def add_user(hub, user):
    r = hub.api("POST", f"/users/{user}")
    assert r.status_code in (201, 409), r.text


def start_outcome(hub, user, options, timeout=60):
    """Start and follow the start to its end: (ready, message, progress messages, seconds)."""
    began = time.monotonic()
    r = hub.api("POST", f"/users/{user}/server", json=options)
    if r.status_code not in (201, 202):
        return False, r.json().get("message", r.text), [], time.monotonic() - began, r.status_code
    messages = []
    token = hub.api("POST", f"/users/{user}/tokens", json={"note": "progress"}).json()["token"]
    url = hub.url.rstrip("/") + f"/hub/api/users/{user}/server/progress"
    with requests.get(url, headers={"Authorization": f"token {token}"}, stream=True, timeout=timeout) as resp:
        for line in resp.iter_lines(decode_unicode=True):
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            messages.append(event.get("message", ""))
            if event.get("failed") or event.get("ready"):
                return (bool(event.get("ready")), event.get("message", ""), messages,
                        time.monotonic() - began, r.status_code)
    return bool((server(hub, user) or {}).get("ready")), "", messages, time.monotonic() - began, r.status_code


def test_refused_pod_leaves_no_new_home_claim(cluster, hub_factory):
    """Bug 6: a pod refused by the namespace's ResourceQuota leaves no home claim behind."""
    core, _ = kube_clients(cluster)
    core.create_namespaced_resource_quota("default", {
        "metadata": {"name": "compute"}, "spec": {"hard": {"pods": "0"}}})
    hub = hub_factory(hub_config(), cluster=cluster)
    add_user(hub, "nina")
    ready, message, _, _, status = start_outcome(hub, "nina", {"size": "small"})
    assert not ready and "resource quota" in message and "was not created" in message, message
    wait_for(lambda: server(hub, "nina") is None, timeout=30, message="nina's server gone")
    assert "claim-nina" not in claims(core), "the refused start left its new home claim"
    assert "jupyter-nina" not in pods(core)

    # an existing home is never touched by a refused start
    core.delete_namespaced_resource_quota("compute", "default")
    ready, message, _, _, _ = start_outcome(hub, "nina", {"size": "small"})
    assert ready, message
    r = hub.api("DELETE", "/users/nina/server")
    assert r.status_code in (202, 204)
    wait_for(lambda: server(hub, "nina") is None, timeout=60, message="nina stopped")
    core.create_namespaced_resource_quota("default", {
        "metadata": {"name": "compute"}, "spec": {"hard": {"pods": "0"}}})
    ready, message, _, _, _ = start_outcome(hub, "nina", {"size": "small"})
    assert not ready and "resource quota" in message
    assert "claim-nina" in claims(core)


def test_storage_quota_refusal_is_readable(cluster, hub_factory):
    """Bug 3: a ResourceQuota on claims or storage refuses the home claim with a readable 403."""
    core, _ = kube_clients(cluster)
    hub = hub_factory(hub_config(), cluster=cluster)
    for user, hard in (("olga", {"persistentvolumeclaims": "0"}), ("otto", {"requests.storage": "5Gi"})):
        core.create_namespaced_resource_quota("default", {"metadata": {"name": "storage"}, "spec": {"hard": hard}})
        wait_for(lambda: core.read_namespaced_resource_quota("storage", "default").status.hard,
                 timeout=30, message="quota status")
        add_user(hub, user)
        ready, message, _, _, status = start_outcome(hub, user, {"size": "small"})
        assert not ready
        assert status == 403, (status, message)
        assert "storage quota" in message and "Nothing was created" in message, message
        assert "Internal Server Error" not in message and "ApiException" not in message
        assert f"claim-{user}" not in claims(core) and f"jupyter-{user}" not in pods(core)
        core.delete_namespaced_resource_quota("storage", "default")
        wait_for(lambda: "storage" not in names(core.list_namespaced_resource_quota("default").items),
                 timeout=30, message="quota deleted")


def test_no_default_storage_class_fails_fast_naming_the_setting(tmp_path, hub_factory):
    """Bug 4: no StorageClass set and no default class: fail fast, name the setting, remove the claim."""
    from conftest import _running_cluster

    with _running_cluster(tmp_path / "k8s", storage_classes=[]) as cluster:
        core, _ = kube_clients(cluster)
        hub = hub_factory(hub_config(), cluster=cluster)
        add_user(hub, "noel")
        ready, message, _, seconds, _ = start_outcome(hub, "noel", {"size": "small"}, timeout=45)
        assert not ready
        assert "c.PtjaasSpawner.home_volume_storage_class" in message and "default StorageClass" in message, message
        assert seconds < 40
        wait_for(lambda: "claim-noel" not in claims(core), timeout=30, message="the new claim removed")
        wait_for(lambda: "jupyter-noel" not in pods(core), timeout=30, message="the pod removed")
        hub.stop()


def test_old_claim_events_do_not_fail_a_new_start(cluster, hub_factory):
    """Bug 2: the events of a deleted claim (kept an hour by the API server) do not fail the
    start of a new claim of the same name; bug 5: while the home volume is provisioned the user
    reads that, not the scheduler's warning."""
    core, storage = kube_clients(cluster)
    hub = hub_factory(hub_config('c.PtjaasSpawner.home_volume_storage_class = "gold"\n'), cluster=cluster)
    add_user(hub, "erin")
    ready, message, _, _, _ = start_outcome(hub, "erin", {"size": "small"})
    assert not ready and 'storageclass.storage.k8s.io "gold" not found' in message, message
    wait_for(lambda: "claim-erin" not in claims(core), timeout=30, message="never-bound claim deleted")
    old = [e for e in core.list_namespaced_event("default").items
           if e.involved_object.name == "claim-erin" and e.type == "Warning"]
    assert old, "the old claim's events stay, as on a real API server"
    wait_for(lambda: server(hub, "erin") is None, timeout=30, message="erin's failed server gone")

    # the admin fixes the class (a provisioner that takes a moment, like a real one)
    storage.create_storage_class({"metadata": {"name": "gold"}, "provisioner": "ptjaas.io/local-path",
                                  "parameters": {"ptjaas.io/provision-delay": "3"}})
    ready, message, progress, _, _ = start_outcome(hub, "erin", {"size": "small"})
    assert ready, (message, progress)
    text = "\n".join(progress)
    assert "unbound immediate PersistentVolumeClaims" not in text, text
    assert "Your home volume is being created" in text, text
    assert text.count("Your home volume is being created") == 1, text


def test_no_node_can_take_the_pod_fails_fast(module_cluster, hub_factory):
    """Issue 9, point 5: an unschedulable pod fails the start in plain words within
    ``unschedulable_timeout``, is deleted, and its quota share is free again."""
    core, _ = kube_clients(module_cluster)
    hub = hub_factory(hub_config('c.PtjaasSpawner.unschedulable_timeout = 2\n'
                                 'c.PtjaasSpawner.quota_default = {"servers": 1}\n'), cluster=module_cluster)
    add_user(hub, "gus")
    ready, message, progress, seconds, _ = start_outcome(hub, "gus", {"size": "gpu-8"})
    assert not ready
    assert "no node has a free GPU right now" in message, message
    assert "Insufficient" not in message and seconds < 40
    wait_for(lambda: "jupyter-gus" not in pods(core), timeout=30, message="the unschedulable pod deleted")
    wait_for(lambda: server(hub, "gus") is None, timeout=30, message="gus's server gone")
    # the quota share (1 server) is free again: a start that fits works
    ready, message, _, _, _ = start_outcome(hub, "gus", {"size": "small"})
    assert ready, message


def test_api_token_is_never_logged(cluster, hub_factory, tmp_path):
    """Bug 7: a failed pod creation makes KubeSpawner log the whole pod; the user's API token
    in it is redacted (and so is every other secret-named variable)."""
    tokens = tmp_path / "tokens.txt"
    extra = f"""
    c.PtjaasSpawner.environment = {{"MY_CLIENT_SECRET": "s3cr3t-value-for-the-test"}}
    def _record_token(spawner, pod):  # the test's probe: which token did this start get?
        with open({str(tokens)!r}, "a") as f:
            f.write(spawner.api_token + "\\n")
        return pod
    c.PtjaasSpawner.modify_pod_hook = _record_token
    """
    hub = hub_factory(hub_config(extra), cluster=cluster)
    cluster.inject_fault(verb="create", resource="pods", status=500, message="etcd is having a bad day")
    add_user(hub, "tess")
    ready, message, _, _, _ = start_outcome(hub, "tess", {"size": "small"})
    assert not ready
    logs = hub.logs()
    token = tokens.read_text().split()[-1]
    assert len(token) >= 16
    assert "JUPYTERHUB_API_TOKEN" in logs, "KubeSpawner logged the pod"
    assert token not in logs, "the user's API token is in the hub log"
    assert "s3cr3t-value-for-the-test" not in logs
    assert "[redacted]" in logs
    assert "tess" in logs  # the rest of the line is still there


def test_restart_of_a_bound_home_does_not_read_the_claim(cluster, hub_factory):
    """Bug 2 (second half): once a pod ran on the home claim (state proves it bound), a later
    start does not read the claim or its events, even while the pod waits with warnings."""
    core, _ = kube_clients(cluster)
    sizes = dict(SIZES, picky=dict(SIZES["small"], display_name="Picky",
                                   node_selector={"ptjaas.io/test-ready": "yes"}))
    hub = hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(sizes)}
        """), cluster=cluster)
    add_user(hub, "rita")
    ready, message, _, _, _ = start_outcome(hub, "rita", {"size": "small"})
    assert ready, message
    r = hub.api("DELETE", "/users/rita/server")
    assert r.status_code in (202, 204)
    wait_for(lambda: server(hub, "rita") is None, timeout=60, message="rita stopped")

    cluster.reset_request_stats()
    r = hub.api("POST", "/users/rita/server", json={"size": "picky"})
    assert r.status_code in (201, 202), r.text

    def unschedulable():
        return [e for e in core.list_namespaced_event("default").items
                if e.involved_object.name == "jupyter-rita" and e.reason == "FailedScheduling"
                and "selector" in (e.message or "")]
    wait_for(unschedulable, timeout=30, message="the pod to wait for a node")
    node = core.list_node().items[0].metadata.name
    core.patch_node(node, {"metadata": {"labels": {"ptjaas.io/test-ready": "yes"}}})
    try:
        wait_for(lambda: (server(hub, "rita") or {}).get("ready"), timeout=90, message="rita ready")
    finally:
        core.patch_node(node, {"metadata": {"labels": {"ptjaas.io/test-ready": None}}})
    stats = cluster.request_stats()
    claim_requests = {k: v for k, v in stats.items() if k != "total" and k[1] == "persistentvolumeclaims"}
    assert claim_requests == {}, stats  # (the claim's events are listed only after a claim read)
