"""Point-in-time homes through a real JupyterHub, and the audit record; on the embedded cluster
and on a real kube-apiserver (namespace ``default``) where the hub has exactly z2jh's rights plus
helm-values/manifests/rbac-hub.yaml and the audit log shows none of its requests refused.

A file written, a snapshot taken on demand (rate-limited), the file changed; the snapshot
opened read-only at the next start shows the old file under ~/snapshots/<time> and cannot be
written, and its claim is gone after the stop; a whole-home restore brings the old file back
while the previous home claim stays (labelled); nobody lists, opens or restores another user's
snapshots (REST, form, forged names); snapshots are off where the StorageClass has no snapshot
class; the audit record holds one line per action with the right fields and no token.
"""

import json
import os
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests


from ptjaas_sandbox.cluster.server import free_port  # noqa: E402
from tests.clusterutil import ensure_snapshot_class
from tests.hubutil import server, start_ready, stop
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]
# on the embedded cluster and on a real kube-apiserver with z2jh's hub rights (tests/conftest.py)
BACKENDS = ("embedded", "real")

SNAPCLASS = "csi-local"
IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/python:1"}}}}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "128Mi",
              "mem_limit": "1Gi"},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "128Mi",
            "mem_limit": "1Gi", "gpu": 1},
}


SCHED_TOKEN = "snapshot-scheduler-test-token-0123"


def config(tmp, snapshot_classes):
    return textwrap.dedent(f"""
        import json
        c.Authenticator.admin_users = {{"root"}}
        c.JupyterHub.load_groups = {{"team": {{"users": ["dora"]}}}}
        c.PtjaasSpawner.images = {IMAGES!r}
        c.PtjaasSpawner.sizes = {SIZES!r}
        c.PtjaasSpawner.quota_default = {{"gpus": 0}}
        c.PtjaasSpawner.port = {free_port()}
        c.PtjaasSpawner.snapshot_classes = {snapshot_classes!r}
        c.PtjaasSpawner.snapshot_min_interval = 3600
        c.PtjaasSpawner.audit_log_file = {str(tmp / "audit.jsonl")!r}
        from ptjaas_spawner.pages import install
        install(c)
        # the scheduled-snapshot service, run by the test one pass at a time with its own role
        from ptjaas_spawner.snapshots.scheduler import service_config
        ext = service_config({{"team": {{"every": 0, "keep": 2}}}}, snapshot_classes=c.PtjaasSpawner.snapshot_classes,
                             name="snapshots-once", audit_file={str(tmp / "audit.jsonl")!r})
        with open({str(tmp / "snapshots-once.json")!r}, "w") as f:
            json.dump(ext["services"][0], f)
        c.JupyterHub.services.append({{"name": "snapshots-once", "api_token": {SCHED_TOKEN!r}}})
        c.JupyterHub.load_roles.extend(ext["load_roles"])
    """)


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory, tmp_path_factory):
    ensure_snapshot_class(module_cluster.kubeconfig_path, SNAPCLASS)
    tmp = tmp_path_factory.mktemp("snaphub")
    h = module_hub_factory(config(tmp, {"standard": SNAPCLASS}), cluster=module_cluster)
    h.audit_path = tmp / "audit.jsonl"
    h.since = datetime.now(timezone.utc)   # the real cluster's audit log: this module's requests
    h.tmp = tmp
    r = h.api("POST", "/users", json={"usernames": ["alice", "bob", "root", "dora"]})
    assert r.status_code == 201, r.text
    return h


def page_text(markup):
    """The snapshot page's text as a user reads it (tags out, spaces folded)."""
    import html
    import re

    section = markup[markup.index('<section id="ptjaas-snapshots">'):]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())


def token(hub, user):
    r = hub.api("POST", f"/users/{user}/tokens", json={"note": "snapshot test"})
    r.raise_for_status()
    return r.json()["token"]


def contents(hub, user, tok, path, content=None):
    url = f"{hub.url}/user/{user}/api/contents/{path}"
    headers = {"Authorization": f"token {tok}"}
    if content is None:
        return requests.get(url, headers=headers, timeout=30)
    return requests.put(url, headers=headers, timeout=30, json={"type": "file", "format": "text", "content": content})


def snaps_api(hub, user, tok, method="GET", suffix="", **kw):
    return hub.api(method, f"/ptjaas/snapshots/{user}{suffix}", token=tok, **kw)


def wait_snapshot_ready(hub, user, tok, name):
    def ready():
        listed = snaps_api(hub, user, tok).json()["snapshots"]
        return next((s for s in listed if s["name"] == name and s["ready"]), None)

    return wait_for(ready, timeout=30, interval=0.2, message=f"snapshot {name} ready")


def audit_lines(hub):
    return [json.loads(line) for line in hub.audit_path.read_text().splitlines()]


@pytest.fixture(scope="module")
def alice_snapshot(hub):
    """alice's home with results.txt 'v1' in a snapshot, then changed to 'v2'; server stopped."""
    tok = token(hub, "alice")
    start_ready(hub, "alice", {})
    assert contents(hub, "alice", tok, "results.txt", "v1").status_code in (200, 201)
    # "Snapshot my home now" on the page
    s = hub.session("alice")
    r = s.post(f"{hub.url}/hub/ptjaas/snapshots", data={"action": "take", "_xsrf": s.cookies["_xsrf"]}, timeout=60)
    assert r.status_code == 200 and "taken=" in r.url, r.text[:500]
    (made,) = snaps_api(hub, "alice", tok).json()["snapshots"]
    assert made["reason"] == "manual" and made["claim"] == "claim-alice"
    # rate limited: a second one at once is refused, saying when to come back
    again = snaps_api(hub, "alice", tok, "POST")
    assert again.status_code == 429 and "try again in" in again.json()["message"], again.text
    snap = wait_snapshot_ready(hub, "alice", tok, made["name"])
    assert snap["size"] == "10Gi" and snap["reason"] == "manual" and snap["by"] == "alice"
    # the page agrees with itself: the message after the take says what the row says (ready);
    # the list's time is the folder an opened snapshot appears in
    page = page_text(s.get(r.url, timeout=30).text)
    assert f"Snapshot {made['name']} ({snap['folder']} UTC) is ready." in page and "being taken" not in page
    assert snap["folder"] == datetime.fromisoformat(snap["time"].replace("Z", "+00:00")).strftime("%Y-%m-%d_%H-%M-%S")
    assert f"{snap['folder']} manual 10Gi yes" in page
    assert contents(hub, "alice", tok, "results.txt", "v2").status_code in (200, 201)
    stop(hub, "alice")
    return {"name": made["name"], "token": tok}


def test_open_read_only_then_restore_whole_home(hub, core, alice_snapshot):
    name, tok = alice_snapshot["name"], alice_snapshot["token"]
    # open the snapshot read-only at the next start
    start_ready(hub, "alice", {"image": "python", "size": "small", "snapshots": [name]})
    listing = contents(hub, "alice", tok, "snapshots").json()
    (folder,) = [i["name"] for i in listing["content"]]
    # the folder is named as the page lists the snapshot; while the server runs nothing is opened
    page = hub.session("alice").get(f"{hub.url}/hub/ptjaas/snapshots", timeout=30).text
    assert f'<td class="ptjaas-snapshot-time">{folder}</td>' in page
    boxes = [line for line in page.splitlines() if 'name="snapshot"' in line or "disabled>" in line]
    assert page.count('type="checkbox" name="snapshot"') == page.count("disabled></td>") >= 1, boxes
    assert "Your server is running: stop it to open or restore a snapshot." in page_text(page)
    assert 'value="open"' not in page and "Restore whole home" not in page
    assert contents(hub, "alice", tok, "results.txt").json()["content"] == "v2"
    assert contents(hub, "alice", tok, f"snapshots/{folder}/results.txt").json()["content"] == "v1"
    for path in (f"snapshots/{folder}/results.txt", f"snapshots/{folder}/new.txt"):
        assert contents(hub, "alice", tok, path, "overwrite").status_code >= 400
    assert contents(hub, "alice", tok, f"snapshots/{folder}/results.txt").json()["content"] == "v1"
    views = core.list_namespaced_persistent_volume_claim("default", label_selector="ptjaas.io/purpose=snapshot-view")
    assert len(views.items) == 1 and views.items[0].spec.data_source.name == name
    # the page offers no restore while the server runs; the API refuses it
    r = snaps_api(hub, "alice", tok, "POST", "/restore", json={"snapshot": name})
    assert r.status_code == 409 and "Stop your server" in r.json()["message"]
    # the hub restarts meanwhile: the opened snapshot's claim is in the server's state
    hub.restart()
    wait_for(lambda: (server(hub, "alice") or {}).get("ready"), timeout=60, message="alice's server after hub restart")
    stop(hub, "alice")
    wait_for(lambda: not core.list_namespaced_persistent_volume_claim(
        "default", label_selector="ptjaas.io/purpose=snapshot-view").items, timeout=30, message="view claim deleted")

    # restore the whole home: the current home is snapshotted first and kept
    r = snaps_api(hub, "alice", tok, "POST", "/restore", json={"snapshot": name})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["previous_claim"] == "claim-alice" and out["claim"].startswith("claim-alice-restored-")
    old = core.read_namespaced_persistent_volume_claim("claim-alice", "default")
    assert old.metadata.annotations["ptjaas.io/replaced-by"] == "alice"
    assert name in old.metadata.annotations["ptjaas.io/replaced-reason"]
    listed = {s["name"]: s for s in snaps_api(hub, "alice", tok).json()["snapshots"]}
    assert listed[out["before_restore_snapshot"]]["reason"] == "before-restore"
    start_ready(hub, "alice", {})
    assert contents(hub, "alice", tok, "results.txt").json()["content"] == "v1"
    pod = core.read_namespaced_pod("jupyter-alice", "default")
    claims = [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim]
    assert claims == [out["claim"]]  # one home, never two mounted as one
    stop(hub, "alice")
    # the previous home still exists, with the v2 file (a restore is never destructive)
    assert core.read_namespaced_persistent_volume_claim("claim-alice", "default").status.phase == "Bound"

    lines = audit_lines(hub)
    actions = [(e["action"], e.get("reason")) for e in lines if e["user"] == "alice"]
    for wanted in [("snapshot-take", "manual"), ("snapshot-take", "before-restore"), ("refused-snapshot", "manual"),
                   ("snapshot-open", None), ("snapshot-restore", None)]:
        assert actions.count(wanted) == 1, (wanted, actions)
    assert actions.count(("server-start", None)) == 3 and actions.count(("server-stop", None)) == 3
    # a second restore at once is rate-limited for the user (each one keeps a claim more)
    r = snaps_api(hub, "alice", tok, "POST", "/restore", json={"snapshot": name})
    assert r.status_code == 429 and "try again in" in r.json()["message"], r.text
    restore = next(e for e in lines if e["action"] == "snapshot-restore")
    assert restore["by"] == "alice" and restore["snapshot"] == name and restore["previous_claim"] == "claim-alice"
    starts = [e for e in lines if e["action"] == "server-start" and e["user"] == "alice"]
    opened = starts[1]
    assert opened["image"] == "python" and opened["size"] == "small" and opened["image_digest"]
    assert opened["by"] == "test-admin"  # who asked for the start (here the test's admin service)
    assert next(e for e in lines if e["action"] == "snapshot-open")["by"] == "test-admin"
    kinds = {(v["kind"], v["access"]) for v in opened["volumes"]}
    assert kinds == {("home", "read-write"), ("snapshot", "read-only")}, opened["volumes"]
    assert [v["claim"] for v in starts[2]["volumes"]] == [out["claim"]]
    text = hub.audit_path.read_text()
    assert tok not in text and hub.token not in text and "token" not in text.lower()
    # the same lines are in the hub log
    assert '"action":"snapshot-restore"' in hub.logs()


def test_nobody_reaches_another_users_snapshots(hub, core, alice_snapshot):
    name = alice_snapshot["name"]
    bob = token(hub, "bob")
    # REST: bob's token cannot list, take or restore alice's, whatever the name
    assert snaps_api(hub, "alice", bob).status_code in (403, 404)
    assert snaps_api(hub, "alice", bob, "POST").status_code in (403, 404)
    assert snaps_api(hub, "alice", bob, "POST", "/restore", json={"snapshot": name}).status_code in (403, 404)
    # forged: alice's snapshot name on bob's own endpoints
    r = snaps_api(hub, "bob", bob, "POST", "/restore", json={"snapshot": name})
    assert r.status_code == 404 and r.json()["message"] == f"You have no snapshot named {name}."
    r = snaps_api(hub, "bob", bob, "POST", "/open", json={"snapshots": [name]})
    assert r.status_code == 404, r.text
    assert "alice" not in json.dumps(snaps_api(hub, "bob", bob).json())
    for forged in ["../claim-alice", "x" * 300, {"name": name}]:
        r = snaps_api(hub, "bob", bob, "POST", "/restore", json={"snapshot": forged})
        assert r.status_code == 400, r.text
    # as a server option: refused, nothing started, no claim made from alice's snapshot
    r = hub.api("POST", "/users/bob/server", token=bob, json={"snapshots": [name]})
    wait_for(lambda: server(hub, "bob") is None, timeout=30, message="bob's refused start to end")
    if r.status_code not in (400, 404):
        assert f"You have no snapshot named {name}" in hub.logs()
    views = core.list_namespaced_persistent_volume_claim("default", label_selector="ptjaas.io/purpose=snapshot-view")
    assert not [c for c in views.items if c.spec.data_source and c.spec.data_source.name == name]
    # the form: bob's page never shows alice's; asking for alice's page is forbidden; a posted
    # name of alice's is "not yours"
    s = hub.session("bob")
    page = s.get(f"{hub.url}/hub/ptjaas/snapshots", timeout=30)
    assert page.status_code == 200 and name not in page.text
    assert s.get(f"{hub.url}/hub/ptjaas/snapshots?user=alice", timeout=30).status_code == 403
    r = s.post(f"{hub.url}/hub/ptjaas/snapshots", data={"restore": name, "_xsrf": s.cookies["_xsrf"]}, timeout=60)
    assert f"You have no snapshot named {name}" in r.text
    r = s.post(f"{hub.url}/hub/ptjaas/snapshots", data={"action": "open", "snapshot": name,
                                                        "_xsrf": s.cookies["_xsrf"]}, timeout=60)
    assert f"You have no snapshot named {name}" in r.text and server(hub, "bob") is None
    assert s.post(f"{hub.url}/hub/ptjaas/snapshots?user=alice", data={"action": "take", "_xsrf": s.cookies["_xsrf"]},
                  timeout=30).status_code == 403
    # an admin may list alice's
    assert name in [x["name"] for x in snaps_api(hub, "alice", None).json()["snapshots"]]
    refused = [e for e in audit_lines(hub) if e["action"] == "refused-snapshot" and e["user"] == "bob"]
    # each refusal on record with the name asked for (issue 20: restore of a name not yours too)
    assert refused and all(e.get("snapshot") in (name, "../claim-alice", None) for e in refused)
    asked = [(e.get("request"), e.get("snapshot")) for e in refused]
    assert ("POST /hub/api/ptjaas/snapshots/bob/restore", name) in asked
    assert ("POST /hub/api/ptjaas/snapshots/bob/restore", "../claim-alice") in asked
    access = [e for e in audit_lines(hub) if e["action"] == "refused-access" and e["by"] == "bob"]
    assert {e["user"] for e in access} == {"alice"} and len(access) == 5, access


def test_home_page_lists_snapshots_and_admin_audit_page(hub, alice_snapshot):
    s = hub.session("alice")
    home = s.get(f"{hub.url}/hub/home", timeout=30)
    assert home.status_code == 200 and 'id="ptjaas-home-snapshots"' in home.text
    frag = s.get(f"{hub.url}/hub/ptjaas/snapshots?embed=1", timeout=30)
    assert alice_snapshot["name"] in frag.text and "Snapshot my home now" in frag.text
    forged = s.get(f"{hub.url}/hub/ptjaas/snapshots", params={"message": "<script>x()</script>"}, timeout=30)
    assert "<script>x()" not in forged.text and "&lt;script&gt;x()" in forged.text
    # the audit page: admins only, filtered by user and time
    assert s.get(f"{hub.url}/hub/ptjaas/audit", timeout=30).status_code == 403
    r = hub.api("GET", "/ptjaas/audit", params={"user": "alice", "action": "snapshot-take"})
    records = r.json()["records"]
    assert records and {e["user"] for e in records} == {"alice"}
    first = records[-1]["time"]
    later = hub.api("GET", "/ptjaas/audit", params={"user": "alice", "since": "2100-01-01"}).json()["records"]
    assert later == []
    until = hub.api("GET", "/ptjaas/audit", params={"user": "alice", "until": first}).json()["records"]
    assert all(e["time"] <= first for e in until) and until
    assert hub.api("GET", "/ptjaas/audit", params={"since": "yesterday"}).status_code == 400
    root = hub.session("root")
    page = root.get(f"{hub.url}/hub/ptjaas/audit?user=alice", timeout=30)
    assert page.status_code == 200 and "snapshot-take" in page.text


def test_refusals_are_on_record(hub):
    bob = token(hub, "bob")
    r = hub.api("POST", "/users/bob/server", token=bob, json={"size": "huge<script>"})
    assert r.status_code == 400, r.text
    r = hub.api("POST", "/users/bob/server", token=bob, json={"size": "gpu"})
    assert r.status_code in (400, 403), r.text
    lines = [e for e in audit_lines(hub) if e["user"] == "bob"]
    option = [e for e in lines if e["action"] == "refused-option"]
    quota = [e for e in lines if e["action"] == "refused-quota"]
    assert len(option) == 1 and option[0]["options"] == {"size": "huge<script>"}
    assert len(quota) == 1 and quota[0]["options"] == {"size": "gpu"} and "cannot be started" in quota[0]["message"]


def test_snapshots_off_without_a_snapshot_class(module_cluster, hub_factory, tmp_path):
    h = hub_factory(config(tmp_path, {"other-class": SNAPCLASS}), cluster=module_cluster)
    h.api("POST", "/users", json={"usernames": ["carol"]})
    tok = token(h, "carol")
    body = snaps_api(h, "carol", tok).json()
    assert body["enabled"] is False and "Snapshots are off" in body["why"]
    r = snaps_api(h, "carol", tok, "POST")
    assert r.status_code == 409 and "Snapshots are off" in r.json()["message"]
    page = h.session("carol").get(f"{h.url}/hub/ptjaas/snapshots", timeout=30)
    assert 'id="ptjaas-snapshots-off"' in page.text and "Snapshot my home now" not in page.text


def run_scheduler_once(hub):
    import subprocess

    svc = json.loads((hub.tmp / "snapshots-once.json").read_text())
    env = dict(os.environ, **svc["environment"])
    env.update(JUPYTERHUB_API_URL=f"{hub.url}/hub/api", JUPYTERHUB_API_TOKEN=SCHED_TOKEN,
               # it runs in the hub pod, with the hub's account
               KUBECONFIG=str(getattr(hub.cluster, "hub_kubeconfig_path", hub.cluster.kubeconfig_path)))
    out = subprocess.run(svc["command"] + ["--once"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_scheduled_snapshots_keep_exactly_n(hub, core, module_cluster):
    import kubernetes

    start_ready(hub, "dora", {})
    stop(hub, "dora")
    api = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    custom = kubernetes.client.CustomObjectsApi(api)

    def scheduled():
        items = custom.list_namespaced_custom_object(
            "snapshot.storage.k8s.io", "v1", "default", "volumesnapshots",
            label_selector="app.kubernetes.io/managed-by=ptjaas-snapshots")["items"]
        return sorted(i["metadata"]["name"] for i in items)

    names = []
    for i in range(3):
        log = run_scheduler_once(hub)
        (new,) = [n for n in scheduled() if n not in names]
        names.append(new)
        assert new.startswith("claim-dora-schedule-"), log
    api.close()
    # exactly the newest 2 are kept; only dora (the group's member) has scheduled ones
    wait_for(lambda: scheduled() == names[1:], timeout=30, message="the oldest scheduled snapshot pruned")
    tok = token(hub, "dora")
    listed = [s for s in snaps_api(hub, "dora", tok).json()["snapshots"] if s["reason"] == "schedule"]
    assert sorted(s["name"] for s in listed) == names[1:] and all(s["by"] == "ptjaas-snapshots" for s in listed)
    takes = [e for e in audit_lines(hub) if e["action"] == "snapshot-take" and e.get("reason") == "schedule"]
    assert [e["snapshot"] for e in takes] == names and {e["by"] for e in takes} == {"ptjaas-snapshots"}
    # the service's rights: the members of its group, nothing else
    assert hub.api("GET", "/users", token=SCHED_TOKEN).status_code == 403
    assert hub.api("GET", "/groups/team", token=SCHED_TOKEN).status_code == 200


@pytest.mark.browser
def test_browser_home_page_shows_the_users_snapshots(hub, alice_snapshot, tmp_path):
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"no Chromium at {chromium} (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("input[name=username]", "alice")
            page.click("#login_submit")
            page.wait_for_url(f"{hub.url}/hub/**")
            page.goto(f"{hub.url}/hub/home")
            row = page.locator(f'#ptjaas-snapshot-table tr[data-snapshot="{alice_snapshot["name"]}"]')
            row.wait_for(timeout=15000)
            assert "manual" in row.inner_text()
            assert page.get_by_text("Snapshot my home now").is_visible()
            page.screenshot(path=str(tmp_path / "home-snapshots.png"), full_page=True)
        finally:
            browser.close()


def test_the_hub_never_lacked_a_right(hub, module_cluster):
    """Real backend: of every request the hub's account made in this module (the hub and the
    scheduled-snapshot service), RBAC refused none, snapshots included (run last)."""
    if not getattr(module_cluster, "real", False):
        pytest.skip("the real control plane's audit log: real backend only")
    events = []

    def hub_requests_logged():
        # the audit log is written in batches: wait until the module's last snapshot requests are in
        with open(module_cluster.audit_log_path) as f:
            events[:] = [e for e in map(json.loads, filter(str.strip, f))
                         if (e.get("user") or {}).get("username") == module_cluster.account
                         and e.get("stage") == "ResponseComplete"
                         and datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")) >= hub.since]
        verbs = {(e["verb"], (e.get("objectRef") or {}).get("resource")) for e in events}
        return {("create", "volumesnapshots"), ("list", "volumesnapshots"), ("delete", "volumesnapshots")} <= verbs

    wait_for(hub_requests_logged, timeout=30, message="the hub's snapshot requests in the audit log")
    refused = [(e["verb"], e["requestURI"]) for e in events if e["responseStatus"]["code"] == 403
               and (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"]
    assert refused == []
