"""Starts that cannot succeed fail fast, say why in plain words and leave nothing behind
(issue 10's bugs 2-7, issue 9 point 5), through a real JupyterHub on the embedded cluster.

Each test fails on the code before these fixes: a stale claim event failed a new start, a
storage quota gave a 500, no default StorageClass waited minutes, the scheduler's volume
warning reached the user, a refused pod left a new home claim, the user's token reached the
hub log, an unschedulable pod waited ``start_timeout``.
"""

import json
import textwrap
import time
from pathlib import Path

import pytest
import requests


from tests.waiting import wait_for

from tests.hubutil import server
from tests.backend_support import Backend, backend_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]

IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu-8": {"display_name": "Eight GPUs", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi", "gpu": 8},
}


def hub_config(extra="", backend=None):
    return textwrap.dedent(
        f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        """
    ) + (backend.hub_config() if backend is not None else "") + textwrap.dedent(extra)


@pytest.fixture(params=["embedded", "real"])
def backend(request):
    """Each test runs on a fresh embedded cluster and in a fresh namespace of the real control
    plane (skipped where its binaries are absent), the hub with exactly z2jh's rights there."""
    b = backend_for(request)
    yield b
    b.close()


# what test_no_node_can_take_the_pod_fails_fast needs (harmless to the others: their pods are
# either refused or schedule, and each user runs one server at a time)
SHARED_HUB = 'c.PtjaasSpawner.unschedulable_timeout = 2\nc.PtjaasSpawner.quota_default = {"servers": 1}\n'


@pytest.fixture(scope="module", params=["embedded", "real"])
def quota_hub(request, tmp_path_factory, module_hub_factory):
    """(backend, hub) shared by the tests that need no setting of their own: one cluster (or real
    namespace) and one hub per backend, of the plain config plus ``SHARED_HUB``. Each test has
    users of its own and removes the quotas it made, so they do not see each other; starting a
    cluster and a hub per test was most of their time."""
    import uuid

    if request.param == "embedded":
        from tests.clusterutil import running_cluster
        with running_cluster(tmp_path_factory.mktemp("k8s")) as cluster:
            b = Backend("embedded", cluster, "default", cluster.kubeconfig_path, embedded=cluster)
            hub = module_hub_factory(hub_config(SHARED_HUB, b), cluster=b.target)
            yield b, hub
            hub.stop()  # before its cluster goes
            b.close()
        return
    from ptjaas_sandbox.hubrights import HubBackend
    real = request.getfixturevalue("real_cluster")
    hub_backend = HubBackend(real, f"hub-{uuid.uuid4().hex[:8]}",
                             request.getfixturevalue("shared_dir") / "charts" / "jupyterhub",
                             helm=str(Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "helm"))
    b = Backend("real", hub_backend, hub_backend.namespace, hub_backend.admin_kubeconfig_path,
                real_cluster=hub_backend.cluster)
    hub = module_hub_factory(hub_config(SHARED_HUB, b), cluster=b.target)
    yield b, hub
    hub.stop()
    b.close()


def add_user(hub, user):
    r = hub.api("POST", f"/users/{user}")
    assert r.status_code in (201, 409), r.text


def start_outcome(hub, user, options, timeout=60):
    """Start and follow the start to its end: (ready, message, progress messages, seconds, status)."""
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


def test_refused_pod_leaves_no_new_home_claim(quota_hub):
    """Bug 6: a pod refused by the namespace's ResourceQuota leaves no home claim behind."""
    backend, hub = quota_hub
    backend.create_quota("compute", {"pods": "0"})
    add_user(hub, "nina")
    ready, message, _, _, status = start_outcome(hub, "nina", {"size": "small"})
    assert not ready and "resource quota" in message and "was not created" in message, message
    wait_for(lambda: server(hub, "nina") is None, timeout=30, message="nina's server gone")
    wait_for(lambda: "claim-nina" not in backend.claims(), timeout=30,
             message="the refused start's new home claim to go")
    assert "jupyter-nina" not in backend.pods()

    # an existing home is never touched by a refused start
    backend.delete_quota("compute")
    ready, message, _, _, _ = start_outcome(hub, "nina", {"size": "small"}, timeout=120)
    assert ready, message
    r = hub.api("DELETE", "/users/nina/server")
    assert r.status_code in (202, 204)
    wait_for(lambda: server(hub, "nina") is None, timeout=60, message="nina stopped")
    backend.create_quota("compute", {"pods": "0"})
    ready, message, _, _, _ = start_outcome(hub, "nina", {"size": "small"})
    backend.delete_quota("compute")  # the module's hub is shared
    assert not ready and "resource quota" in message
    assert "claim-nina" in backend.claims()


def test_storage_quota_refusal_is_readable(quota_hub):
    """Bug 3: a ResourceQuota on claims or storage refuses the home claim with a readable 403."""
    backend, hub = quota_hub
    for user, hard in (("olga", {"persistentvolumeclaims": "0"}), ("otto", {"requests.storage": "5Gi"})):
        backend.create_quota("storage", hard)
        add_user(hub, user)
        ready, message, _, _, status = start_outcome(hub, user, {"size": "small"})
        assert not ready
        assert status == 403, (status, message)
        assert "storage quota" in message and "Nothing was created" in message, message
        assert "Internal Server Error" not in message and "ApiException" not in message
        assert f"claim-{user}" not in backend.claims() and f"jupyter-{user}" not in backend.pods()
        backend.delete_quota("storage")


@pytest.fixture
def no_default_class(backend, tmp_path):
    """The backend without a default StorageClass: a fresh embedded cluster without classes, or
    the real cluster's default class unmarked for the test (and marked again after it)."""
    key = "storageclass.kubernetes.io/is-default-class"
    if backend.real:
        defaults = [c.metadata.name for c in backend.storage.list_storage_class().items
                    if (c.metadata.annotations or {}).get(key) == "true"]
        for name in defaults:
            backend.storage.patch_storage_class(name, {"metadata": {"annotations": {key: "false"}}})
        try:
            yield backend
        finally:
            for name in defaults:
                backend.storage.patch_storage_class(name, {"metadata": {"annotations": {key: "true"}}})
        return
    from tests.clusterutil import running_cluster as _running_cluster

    with _running_cluster(tmp_path / "k8s-no-class", storage_classes=[]) as cluster:
        b = Backend("embedded", cluster, "default", cluster.kubeconfig_path, embedded=cluster)
        yield b
        b.close()


def test_no_default_storage_class_fails_fast_naming_the_setting(no_default_class, hub_factory):
    """Bug 4: no StorageClass set and no default class: fail fast, name the setting, remove the claim."""
    backend = no_default_class
    hub = hub_factory(hub_config(backend=backend), cluster=backend.target)
    add_user(hub, "noel")
    ready, message, _, seconds, _ = start_outcome(hub, "noel", {"size": "small"}, timeout=45)
    assert not ready
    assert "c.PtjaasSpawner.home_volume_storage_class" in message and "default StorageClass" in message, message
    assert seconds < 40
    wait_for(lambda: "claim-noel" not in backend.claims(), timeout=30, message="the new claim removed")
    wait_for(lambda: "jupyter-noel" not in backend.pods(), timeout=30, message="the pod removed")
    hub.stop()


def test_old_claim_events_do_not_fail_a_new_start(backend, hub_factory):
    """Bug 2: the events of a deleted claim (kept an hour by the API server) do not fail the
    start of a new claim of the same name; bug 5: while the home volume is provisioned the user
    reads that, not the scheduler's warning."""
    gold = f"gold-{backend.namespace}"  # StorageClasses are cluster-wide: one per test namespace
    # the API answers at once (no 10 s wait for the start), so the test reads the whole progress
    hub = hub_factory(hub_config(f'c.PtjaasSpawner.home_volume_storage_class = "{gold}"\n'
                                 'c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}\n', backend),
                      cluster=backend.target)
    add_user(hub, "erin")
    ready, message, _, _, _ = start_outcome(hub, "erin", {"size": "small"})
    assert not ready and f'storageclass.storage.k8s.io "{gold}" not found' in message, message
    wait_for(lambda: "claim-erin" not in backend.claims(), timeout=30, message="never-bound claim deleted")
    old = [e for e in backend.events() if e.involved_object.name == "claim-erin" and e.type == "Warning"]
    assert old, "the old claim's events stay, as on a real API server"
    wait_for(lambda: server(hub, "erin") is None, timeout=30, message="erin's failed server gone")

    # the admin fixes the class (a provisioner that takes a moment, like a real one)
    backend.storage.create_storage_class({"metadata": {"name": gold}, "provisioner": "ptjaas.io/local-path",
                                          "parameters": {"ptjaas.io/provision-delay": "3"}})
    try:
        ready, message, progress, _, _ = start_outcome(hub, "erin", {"size": "small"}, timeout=120)
        assert ready, (message, progress)
        text = "\n".join(progress)
        assert "unbound immediate PersistentVolumeClaims" not in text, text
        if backend.real:  # the real scheduler always reports the Pending claim (the embedded one may not)
            assert text.count("Your home volume is being created") == 1, text
    finally:
        hub.stop()
        if backend.real:
            for claim in backend.claims():
                backend.core.delete_namespaced_persistent_volume_claim(claim, backend.namespace)
            backend.storage.delete_storage_class(gold)


def test_no_node_can_take_the_pod_fails_fast(quota_hub):
    """Issue 9, point 5: an unschedulable pod fails the start in plain words within
    ``unschedulable_timeout`` (2 s: ``SHARED_HUB``), is deleted, and its quota share (one server)
    is free again."""
    backend, hub = quota_hub
    add_user(hub, "gus")
    ready, message, progress, seconds, _ = start_outcome(hub, "gus", {"size": "gpu-8"})
    assert not ready
    assert "no node has a free GPU right now" in message, message
    assert "Insufficient" not in message and seconds < 40
    wait_for(lambda: "jupyter-gus" not in backend.pods(), timeout=30, message="the unschedulable pod deleted")
    wait_for(lambda: server(hub, "gus") is None, timeout=30, message="gus's server gone")
    # the quota share (1 server) is free again: a start that fits works
    ready, message, _, _, _ = start_outcome(hub, "gus", {"size": "small"}, timeout=120)
    assert ready, message
    hub.api("DELETE", "/users/gus/server")  # the module's hub is shared
    wait_for(lambda: server(hub, "gus") is None, timeout=60, message="gus stopped")


def test_a_start_out_of_time_says_why(backend, hub_factory):
    """A start still not done at ``start_timeout`` fails with what its pod waits for in plain
    words (JupyterHub's own timeout reads as an empty "Spawn failed:"), leaving no pod behind."""
    label = f"ptjaas.io/never-{backend.namespace}"
    sizes = dict(SIZES, picky=dict(SIZES["small"], display_name="Picky", node_selector={label: "yes"}))
    hub = hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(sizes)}
        c.PtjaasSpawner.unschedulable_timeout = 0
        c.PtjaasSpawner.start_timeout = 20
        """) + backend.hub_config(), cluster=backend.target)
    add_user(hub, "tim")
    ready, message, _, seconds, _ = start_outcome(hub, "tim", {"size": "picky"})
    assert not ready
    assert "did not start within 20 s" in message and "no node matches this size's node selector" in message, message
    assert seconds < 25, seconds
    wait_for(lambda: "jupyter-tim" not in backend.pods(), timeout=30, message="the pod deleted")
    wait_for(lambda: server(hub, "tim") is None, timeout=30, message="tim's server gone")


def test_api_token_is_never_logged(backend, hub_factory, tmp_path):
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
    hub = hub_factory(hub_config(extra, backend), cluster=backend.target)
    # the pod create fails (KubeSpawner logs the pod): a ResourceQuota refuses it
    backend.create_quota("compute", {"pods": "0"})
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


def test_restart_of_a_bound_home_does_not_read_the_claim(backend, hub_factory):
    """Bug 2 (second half): once a pod ran on the home claim (state proves it bound), a later
    start does not read the claim, even while the pod waits with warnings."""
    label = f"ptjaas.io/ready-{backend.namespace}"
    sizes = dict(SIZES, picky=dict(SIZES["small"], display_name="Picky", node_selector={label: "yes"}))
    # the namespace's watches do not relist during the test (their time-based relists, per
    # namespace and not per start, would mix in)
    hub = hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(sizes)}
        c.ResourceReflector.restart_seconds = 3600
        c.ResourceReflector.timeout_seconds = 3600
        c.ResourceReflector.request_timeout = 3600
        """) + backend.hub_config(), cluster=backend.target)
    add_user(hub, "rita")
    ready, message, _, _, _ = start_outcome(hub, "rita", {"size": "small"}, timeout=120)
    assert ready, message
    r = hub.api("DELETE", "/users/rita/server")
    assert r.status_code in (202, 204)
    wait_for(lambda: server(hub, "rita") is None, timeout=60, message="rita stopped")

    backend.count_requests()
    r = hub.api("POST", "/users/rita/server", json={"size": "picky"})
    assert r.status_code in (201, 202), r.text

    def unschedulable():
        return [e for e in backend.events() if e.involved_object.name == "jupyter-rita"
                and e.reason == "FailedScheduling" and "selector" in (e.message or "")]
    wait_for(unschedulable, timeout=30, message="the pod to wait for a node")
    node = backend.node_name()
    backend.core.patch_node(node, {"metadata": {"labels": {label: "yes"}}})
    try:
        wait_for(lambda: (server(hub, "rita") or {}).get("ready"), timeout=90, message="rita ready")
    finally:
        backend.core.patch_node(node, {"metadata": {"labels": {label: None}}})
    claim_requests = backend.requests("persistentvolumeclaims")
    assert claim_requests == {}, claim_requests  # (the claim's events are listed only after a claim read)
