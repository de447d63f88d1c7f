"""Issue 23, team datasets through a real JupyterHub, on the embedded cluster and on a real
kube-apiserver where the hub has exactly z2jh's rights plus helm-values/manifests/rbac-hub.yaml: alice (team-a)
creates a dataset and writes a file in it from her notebook; bob (team-a) mounts it read-only,
reads the file and cannot write it (nor mount it read-write: its rule is "creator"); carol
(team-b) neither lists nor mounts it; forged creates are refused with nothing made; a delete
needs the creator and the name typed again. Every step is on the audit record."""

import json
import os
import textwrap
from datetime import datetime, timezone

import pytest
import requests

from ptjaas_sandbox.cluster.podexec import namespaces_work
from ptjaas_sandbox.cluster.server import free_port  # noqa: E402
from tests.clusterutil import ensure_snapshot_class
from tests.hubutil import start, start_ready, stop
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]
# on the embedded cluster and on a real kube-apiserver with z2jh's hub rights (tests/conftest.py)
BACKENDS = ("embedded", "real")

IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/python:1"}}}}
SIZES = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "128Mi",
                   "mem_limit": "1Gi"}}
QUOTA = {"team-a": {"datasets": {"count": 3, "storage": "2Gi"}}, "team-b": {"datasets": {"count": 1, "storage": "1Gi"}}}


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory, tmp_path_factory):
    ensure_snapshot_class(module_cluster.kubeconfig_path, "csi-local")
    tmp = tmp_path_factory.mktemp("datasethub")
    h = module_hub_factory(textwrap.dedent(f"""
        c.Authenticator.admin_users = {{"root"}}
        c.JupyterHub.load_groups = {{"team-a": {{"users": ["alice", "bob"]}}, "team-b": {{"users": ["carol"]}}}}
        c.PtjaasSpawner.images = {IMAGES!r}
        c.PtjaasSpawner.sizes = {SIZES!r}
        c.PtjaasSpawner.quota_groups = {QUOTA!r}
        c.PtjaasSpawner.dataset_classes = {{"shared": {{"display_name": "Shared", "access_modes": ["ReadWriteMany"]}},
                                            "single": {{"access_modes": ["ReadWriteOnce"]}}}}
        c.PtjaasSpawner.snapshot_classes = {{"standard": "csi-local"}}
        c.PtjaasSpawner.port = {free_port()}
        c.PtjaasSpawner.audit_log_file = {str(tmp / "audit.jsonl")!r}
        from ptjaas_spawner.pages import install
        install(c)
    """), cluster=module_cluster)
    h.audit_path = tmp / "audit.jsonl"
    h.since = datetime.now(timezone.utc)   # the real cluster's audit log: this module's requests
    h.tokens = {}
    for user in ("alice", "bob", "carol", "root"):
        r = h.api("POST", f"/users/{user}/tokens", json={"note": "dataset test"})
        r.raise_for_status()
        h.tokens[user] = r.json()["token"]
    return h


def datasets(hub, user, method="GET", path="team-a", **kw):
    return hub.api(method, f"/ptjaas/datasets/{path}", token=hub.tokens[user], **kw)


def contents(hub, user, path, content=None):
    url = f"{hub.url}/user/{user}/api/contents/{path}"
    headers = {"Authorization": f"token {hub.tokens[user]}"}
    if content is None:
        return requests.get(url, headers=headers, timeout=30)
    return requests.put(url, headers=headers, timeout=30, json={"type": "file", "format": "text", "content": content})


def dataset_claims(core):
    return sorted(p.metadata.name for p in core.list_namespaced_persistent_volume_claim(
        "default", label_selector="ptjaas.io/dataset").items)


def test_team_dataset_create_mount_and_delete(hub, core, custom):
    # forged creates: refused with the reason, nothing made
    for body, status, why in [
        ({"name": "Bad_Name", "size": "1Gi"}, 400, "is not a DNS label"),
        ({"name": "big", "size": "5Gi"}, 400, "over team team-a's dataset storage: 2Gi of 2Gi left"),
        ({"name": "x", "size": "1Gi", "owner": "root"}, 400, "Unknown key(s) in the request body: 'owner'"),
        ({"name": "x", "size": "1Gi", "class": "<script>"}, 400, "Unknown access class '<script>'"),
    ]:
        r = datasets(hub, "alice", "POST", json=body)
        assert r.status_code == status and why in r.json()["message"], r.text
    r = datasets(hub, "carol", "POST", json={"name": "images", "size": "1Gi"})
    assert r.status_code == 403 and "not a member of team 'team-a'" in r.json()["message"], r.text
    assert dataset_claims(core) == []

    # alice creates it (only she may write: rule "creator")
    r = datasets(hub, "alice", "POST", json={"name": "images", "size": "1Gi", "write": "creator"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["name"], made["team"], made["creator"], made["write"], made["access_modes"]) == (
        "images", "team-a", "alice", "creator", ["ReadWriteMany"])
    pvc = core.read_namespaced_persistent_volume_claim("dataset-images", "default")
    assert pvc.metadata.labels["ptjaas.io/dataset"] == "images" and pvc.metadata.labels["ptjaas.io/team"] == "team-a"
    again = datasets(hub, "bob", "POST", json={"name": "images", "size": "1Gi"})
    assert again.status_code == 409 and "already has a dataset images" in again.json()["message"]
    # members list it, carol does not
    assert [d["name"] for d in datasets(hub, "bob").json()["datasets"]] == ["images"]
    r = datasets(hub, "carol")
    assert r.status_code == 403 and "images" not in r.text

    # a ReadWriteOnce one too (only one server at a time)
    r = datasets(hub, "alice", "POST", json={"name": "scratch", "size": "512Mi", "class": "single", "write": "team"})
    assert r.status_code == 201 and r.json()["access_modes"] == ["ReadWriteOnce"], r.text

    # alice mounts both read-write and writes a file
    start_ready(hub, "alice", {"image": "python", "size": "small", "datasets": {"images": "rw", "scratch": "rw"}})
    assert contents(hub, "alice", "data/images/labels.csv", "cat,1").status_code in (200, 201)
    # code in the notebook (the server's own token) cannot manage datasets
    env = core.read_namespaced_pod("jupyter-alice", "default").spec.containers[0].env
    server_token = next(e.value for e in env if e.name == "JUPYTERHUB_API_TOKEN")
    r = hub.api("POST", "/ptjaas/datasets/team-a", token=server_token, json={"name": "x", "size": "1Gi"})
    assert r.status_code == 403 and "lacks the 'servers' scope" in r.json()["message"], r.text

    # bob: the form offers it read-only only; read-write is refused, nothing started
    page = hub.session("bob").get(f"{hub.url}/hub/spawn", timeout=30).text
    images = page[page.index('name="dataset--images"'):]
    images = images[:images.index("</select>")]
    assert 'value="ro"' in images and 'value="rw"' not in images
    assert "Dataset scratch can be mounted by one server at a time and is in use by alice&#x27;s server" in page
    r = start(hub, "bob", {"image": "python", "size": "small", "datasets": {"images": "rw"}})
    assert r.status_code == 403 and "Only its creator (alice) may write dataset images" in r.json()["message"], r.text
    assert not core.list_namespaced_pod("default", label_selector="hub.jupyter.org/username=bob").items
    # the ReadWriteOnce one is in alice's server: 409, saying whose
    r = start(hub, "bob", {"image": "python", "size": "small", "datasets": {"scratch": "ro"}})
    assert r.status_code == 409 and "is in use by alice's server (pod jupyter-alice)" in r.json()["message"], r.text
    assert not core.list_namespaced_pod("default", label_selector="hub.jupyter.org/username=bob").items
    # read-only: reads alice's file, cannot write
    start_ready(hub, "bob", {"image": "python", "size": "small", "datasets": {"images": "ro"}})
    assert contents(hub, "bob", "data/images/labels.csv").json()["content"] == "cat,1"
    if os.geteuid() == 0 and namespaces_work():  # a read-only mount needs mount namespaces here
        assert contents(hub, "bob", "data/images/labels.csv", "dog,2").status_code >= 400
        assert contents(hub, "bob", "data/images/labels.csv").json()["content"] == "cat,1"

    # carol: a forged mount of another team's dataset is refused, nothing started
    r = start(hub, "carol", {"image": "python", "size": "small", "datasets": {"images": "ro"}})
    assert r.status_code == 400 and "There is no dataset images of your teams" in r.json()["message"], r.text
    assert not core.list_namespaced_pod("default", label_selector="hub.jupyter.org/username=carol").items
    assert not core.list_namespaced_persistent_volume_claim("default", label_selector="hub.jupyter.org/username=carol").items

    stop(hub, "alice")
    stop(hub, "bob")
    # delete: not by bob; not without the name typed again; then done
    r = datasets(hub, "bob", "DELETE", path="team-a/images", json={"confirm": "images"})
    assert r.status_code == 403 and "Only its creator (alice) or an admin" in r.json()["message"], r.text
    r = datasets(hub, "alice", "DELETE", path="team-a/images", json={"confirm": "image"})
    assert r.status_code == 400 and "Type the dataset's name (images)" in r.json()["message"], r.text
    assert dataset_claims(core) == ["dataset-images", "dataset-scratch"]
    for name in ("images", "scratch"):
        r = datasets(hub, "alice", "DELETE", path=f"team-a/{name}", json={"confirm": name})
        assert r.status_code == 200 and r.json()["snapshot"].startswith(f"dataset-{name}-before-delete-"), r.text
    # each was snapshotted first (snapshots are on for its StorageClass), and the snapshot is kept
    snaps = custom.list_namespaced_custom_object("snapshot.storage.k8s.io", "v1", "default", "volumesnapshots",
                                                 label_selector="ptjaas.io/dataset=images")["items"]
    assert len(snaps) == 1 and snaps[0]["status"]["readyToUse"], snaps
    wait_for(lambda: datasets(hub, "alice").json()["datasets"] == [], timeout=30, message="datasets deleted")
    r = datasets(hub, "alice", path="team-a/images")
    assert r.status_code == 404 and "has no dataset 'images'" in r.json()["message"], r.text

    lines = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
    acts = [(e["action"], e["user"]) for e in lines]
    assert ("dataset-create", "alice") in acts and ("dataset-delete", "alice") in acts
    refused = [e for e in lines if e["action"] == "refused-dataset"]
    assert len(refused) >= 8 and any(e["user"] == "carol" and "There is no dataset images" in e["message"] for e in refused)
    assert any(e["user"] == "alice" and e.get("dataset") == "images" and "has no dataset" in e["message"]
               for e in refused)
    started = {e["user"]: e for e in lines if e["action"] == "server-start"}
    assert started["bob"]["datasets"] == {"images": "ro"}
    assert {"kind": "dataset", "claim": "dataset-images", "mount_path": "/home/jovyan/data/images",
            "access": "read-only"} in started["bob"]["volumes"]
    assert started["alice"]["datasets"] == {"images": "rw", "scratch": "rw"}
    # the admin's audit page filters by dataset
    r = hub.api("GET", "/ptjaas/audit?dataset=scratch", token=hub.tokens["root"])
    assert r.status_code == 200, r.text
    about = {(e["action"], e["user"]) for e in r.json()["records"]}
    assert about == {("dataset-create", "alice"), ("server-start", "alice"), ("refused-dataset", "bob"),
                     ("dataset-delete", "alice")}, about


def test_datasets_page_lists_and_creates(hub, core):
    s = hub.session("bob")
    home = s.get(f"{hub.url}/hub/home", timeout=30).text
    assert 'id="ptjaas-datasets-link"' in home
    r = s.post(f"{hub.url}/hub/ptjaas/datasets", timeout=30, data={
        "action": "create", "team": "team-a", "name": "notes", "size": "512Mi", "class": "shared", "write": "team",
        "_xsrf": s.cookies["_xsrf"]})
    assert r.status_code == 200 and "Dataset notes of team team-a is made" in r.text, r.text[:2000]
    assert 'data-dataset="notes"' in r.text and "Delete notes" in r.text
    # carol's page shows her team only, not team-a's dataset
    page = hub.session("carol").get(f"{hub.url}/hub/ptjaas/datasets", timeout=30).text
    assert 'data-team="team-b"' in page and "notes" not in page
    # a name with markup is refused and shown escaped
    r = s.post(f"{hub.url}/hub/ptjaas/datasets", timeout=30, data={
        "action": "create", "team": "team-a", "name": "<b>x</b>", "size": "1Gi", "_xsrf": s.cookies["_xsrf"]})
    assert "is not a DNS label" in r.text and "<b>x</b>" not in r.text
    assert dataset_claims(core) == ["dataset-notes"]


def snapshots_of(hub, user, name):
    return datasets(hub, user, path=f"team-a/{name}/snapshots")


def test_dataset_snapshot_and_restore_without_loss(hub, core):
    """alice (the creator; rule "creator") snapshots her dataset, changes a file, restores: the
    earlier file is back and the changed content is kept; bob (read-only for him) may list but
    not act, but opens a snapshot read-only at his next start (~/data/models@<time>); carol
    (team-b) gets 404; a restore while a server mounts it is a 409 saying whose.
    "Same as last time" mounts the last start's datasets again, those still allowed (bob's part
    relies on his start with "images" in test_team_dataset_create_mount_and_delete, run first)."""
    r = datasets(hub, "alice", "POST", json={"name": "models", "size": "256Mi", "write": "creator"})
    assert r.status_code == 201, r.text
    start_ready(hub, "alice", {"image": "python", "size": "small", "datasets": {"models": "rw"}})
    assert contents(hub, "alice", "data/models/weights.txt", "v1").status_code in (200, 201)

    r = datasets(hub, "bob", "POST", path="team-a/models/snapshots", json={})
    assert r.status_code == 403 and "Only its creator (alice) may write dataset models" in r.json()["message"], r.text
    for method in ("GET", "POST"):
        r = datasets(hub, "carol", method, path="team-a/models/snapshots", **({"json": {}} if method == "POST" else {}))
        assert r.status_code == 404 and "has no dataset 'models' you can see" in r.json()["message"], r.text
    r = datasets(hub, "alice", "POST", path="team-a/models/snapshots", json={})
    assert r.status_code == 201 and r.json()["reason"] == "manual", r.text
    snap = r.json()["name"]
    wait_for(lambda: [s["ready"] for s in snapshots_of(hub, "bob", "models").json()["snapshots"]
                      if s["name"] == snap] == [True], timeout=60, message="the dataset snapshot ready")
    assert contents(hub, "alice", "data/models/weights.txt", "v2").status_code in (200, 201)

    r = datasets(hub, "alice", "POST", path="team-a/models/restore", json={"snapshot": snap})
    assert r.status_code == 409 and "is mounted by alice's server (pod jupyter-alice)" in r.json()["message"], r.text
    stop(hub, "alice")
    wait_for(lambda: not core.list_namespaced_pod("default", label_selector="hub.jupyter.org/username=alice").items,
             timeout=60, message="alice's pod gone")
    r = datasets(hub, "bob", "POST", path="team-a/models/restore", json={"snapshot": snap})
    assert r.status_code == 403, r.text
    r = datasets(hub, "carol", "POST", path="team-a/models/restore", json={"snapshot": snap})
    assert r.status_code == 404, r.text
    r = datasets(hub, "alice", "POST", path="team-a/models/restore", json={"snapshot": snap})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["previous_claim"] == "dataset-models" and out["claim"].startswith("dataset-models-restored-"), out
    # the previous content is kept: its claim (no longer the dataset) and a snapshot of it
    old = core.read_namespaced_persistent_volume_claim("dataset-models", "default")
    assert "ptjaas.io/dataset" not in old.metadata.labels and old.metadata.labels["ptjaas.io/replaced-dataset"] == "models"
    reasons = {s["name"]: s["reason"] for s in snapshots_of(hub, "alice", "models").json()["snapshots"]}
    assert reasons[out["before_restore_snapshot"]] == "before-restore" and reasons[snap] == "manual", reasons
    listed = [d for d in datasets(hub, "alice").json()["datasets"] if d["name"] == "models"]
    assert [d["claim"] for d in listed] == [out["claim"]] and listed[0]["creator"] == "alice", listed

    # "same as last time" mounts the datasets of the last start again (now the restored claim)
    start_ready(hub, "alice", {"same_as_last": True})
    assert contents(hub, "alice", "data/models/weights.txt").json()["content"] == "v1"
    assert contents(hub, "alice", "data/models/weights.txt", "v3").status_code in (200, 201)  # still read-write
    stop(hub, "alice")
    # bob (read-only for him) opens the first snapshot read-only at his next start; carol cannot
    r = datasets(hub, "carol", "POST", path=f"team-a/models/snapshots/{snap}/open", json={})
    assert r.status_code == 404, r.text
    r = datasets(hub, "bob", "POST", path="team-a/models/snapshots/nope/open", json={})
    assert r.status_code == 404 and "has no snapshot 'nope'" in r.json()["message"], r.text
    r = datasets(hub, "bob", "POST", path=f"team-a/models/snapshots/{snap}/open", json={})
    folder = [s["folder"] for s in snapshots_of(hub, "bob", "models").json()["snapshots"] if s["name"] == snap][0]
    assert r.status_code == 202 and r.json()["folder"] == f"~/data/models@{folder}", r.text
    page = hub.session("bob").get(f"{hub.url}/hub/ptjaas/datasets", timeout=30).text
    assert f"opens read-only at ~/data/models@{folder} at your next start" in page
    # ... and "same as last time" while still allowed: bob's last start mounted "images", deleted
    # since: left out, the server starts
    start_ready(hub, "bob", {"same_as_last": True})
    volumes = core.read_namespaced_pod("jupyter-bob", "default").spec.volumes
    assert not [v for v in volumes if v.persistent_volume_claim and v.persistent_volume_claim.claim_name.startswith("dataset-")]
    assert contents(hub, "bob", f"data/models@{folder}/weights.txt").json()["content"] == "v1"
    assert contents(hub, "bob", f"data/models@{folder}/weights.txt", "mine").status_code >= 400
    views = core.list_namespaced_persistent_volume_claim("default", label_selector="ptjaas.io/purpose=snapshot-view")
    assert [(v.spec.data_source.name, v.metadata.annotations["ptjaas.io/dataset"]) for v in views.items] == [(snap, "models")]
    stop(hub, "bob")
    wait_for(lambda: not core.list_namespaced_persistent_volume_claim(
        "default", label_selector="ptjaas.io/purpose=snapshot-view").items, timeout=30, message="view claim deleted")
    # the page shows the snapshots, with the buttons to those who may use them
    page = hub.session("alice").get(f"{hub.url}/hub/ptjaas/datasets", timeout=30).text
    assert "Snapshot models now" in page and f'data-snapshot="{snap}"' in page and "Restore models to" in page
    page = hub.session("bob").get(f"{hub.url}/hub/ptjaas/datasets", timeout=30).text
    assert f'data-snapshot="{snap}"' in page and "Snapshot models now" not in page and "Restore models to" not in page
    assert "Open read-only at my next start" in page and "opens read-only at" not in page  # opened: asked no more

    lines = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
    acts = {(e["action"], e["user"], e.get("dataset")) for e in lines}
    assert {("dataset-snapshot", "alice", "models"), ("dataset-restore", "alice", "models"),
            ("dataset-open", "bob", "models"), ("snapshot-open", "bob", "models")} <= acts
    refused = [e for e in lines if e["action"] == "refused-dataset" and e.get("dataset") == "models"]
    assert {e["user"] for e in refused} == {"alice", "bob", "carol"}


def test_scheduled_dataset_snapshots(hub, module_cluster):
    """The ptjaas-snapshots service's pass for a team with a datasets schedule (no home
    schedule: no hub call), on the cluster: one snapshot when due, none when not, and only its
    own beyond ``keep`` pruned (alice's manual and before-restore ones stay). Members list it."""
    import asyncio

    from ptjaas_spawner.kube import Kube
    from ptjaas_spawner import snapshotservice
    from ptjaas_spawner.snapshots import scheduler

    def one_pass(every):
        async def run():
            kube = Kube("default", kubeconfig=str(module_cluster.kubeconfig_path))
            try:
                return await snapshotservice.one_pass(None, kube, scheduler.check_groups(
                    {"team-a": {"datasets": {"every": every, "keep": 1}}}), {"standard": "csi-local"},
                    str(hub.audit_path))
            finally:
                await kube.close()
        return asyncio.run(run())

    names = sorted(d["name"] for d in datasets(hub, "alice").json()["datasets"])  # models, and the page's
    before = {s["name"]: s["reason"] for s in snapshots_of(hub, "bob", "models").json()["snapshots"]}
    first = one_pass(3600)
    assert [n.split("-schedule-")[0] for n in first["taken"]] == [f"dataset-{n}" for n in names], first
    assert one_pass(3600) == {"taken": [], "pruned": []}  # not due yet
    again = one_pass(0)  # due at once: a new one each, the older scheduled ones pruned (keep 1)
    assert len(again["taken"]) == len(names) and again["pruned"] == first["taken"], again
    listed = {s["name"]: s["reason"] for s in snapshots_of(hub, "bob", "models").json()["snapshots"]}
    (new,) = [n for n in again["taken"] if n.startswith("dataset-models-")]
    assert listed == dict(before, **{new: "schedule"}), listed
    lines = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
    assert [e["snapshot"] for e in lines if e["action"] == "dataset-snapshot" and e.get("by") == "ptjaas-snapshots"] \
        == first["taken"] + again["taken"]


def test_the_hub_never_lacked_a_right(hub, module_cluster):
    """Real backend: of every request the hub's account made in this module (dataset claims
    created, listed and deleted, the snapshot before a delete), RBAC refused none (run last)."""
    if not getattr(module_cluster, "real", False):
        pytest.skip("the real control plane's audit log: real backend only")
    events = []

    def hub_requests_logged():
        with open(module_cluster.audit_log_path) as f:  # written in batches: wait for the module's last
            events[:] = [e for e in map(json.loads, filter(str.strip, f))
                         if (e.get("user") or {}).get("username") == module_cluster.account
                         and e.get("stage") == "ResponseComplete"
                         and datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")) >= hub.since]
        verbs = {(e["verb"], (e.get("objectRef") or {}).get("resource")) for e in events}
        return {("create", "persistentvolumeclaims"), ("delete", "persistentvolumeclaims"),
                ("list", "persistentvolumeclaims"), ("create", "volumesnapshots"),
                ("patch", "persistentvolumeclaims")} <= verbs

    wait_for(hub_requests_logged, timeout=30, message="the hub's dataset requests in the audit log")
    refused = [(e["verb"], e["requestURI"]) for e in events if e["responseStatus"]["code"] == 403
               and (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"]
    assert refused == []
