"""Team namespaces through a real JupyterHub on the embedded cluster.

The team namespaces are made the way an admin makes them: from ``ptjaas team-manifests``'s
objects (Namespace, ResourceQuota, LimitRange, Role, RoleBinding, NetworkPolicy). The hub's own
namespace is ``default``. The key scenarios run on the real kube-apiserver too, with only the
generated RBAC, in ``test_teams_real.py`` (which imports this module's helpers).
"""

import html
import json
import re
import textwrap

import pytest
import requests

from ptjaas_spawner.teammanifests import Site, team_objects

from tests.hubutil import failure_message, server, start, start_ready, stop, usage
from tests.pageparse import table_rows
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(400)]

HUB_NS = "default"
IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 0.1, "cpu_limit": 1,
            "mem_guarantee": "64Mi", "mem_limit": "1Gi", "gpu": 1},
}
GROUPS = {
    "vision": {"users": ["vera", "tom", "lea", "leo", "vic"]},
    "nlp": {"users": ["tom", "nick"]},
    "staff": {"users": ["nobody"]},
    "ghost": {"users": ["gus"]},
}
TEAMS = {"vision": "jhub-team-{group}", "nlp": "jhub-team-{group}", "ghost": "jhub-team-{group}"}
QUOTA_GROUPS = {"vision": {"gpus": 4}, "nlp": {"gpus": 1}}


def hub_config(teams=True):
    return textwrap.dedent(
        f"""
        c.JupyterHub.spawner_class = "ptjaas"
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.load_groups = {json.dumps(GROUPS)}
        c.JupyterHub.extra_handlers = __import__("ptjaas_spawner.usagepages", fromlist=["x"]).usage_handlers
        c.Authenticator.admin_users = {{"boss"}}
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        c.PtjaasSpawner.quota_groups = {json.dumps(QUOTA_GROUPS)}
        """
    ) + (f"c.PtjaasSpawner.team_namespaces = {json.dumps(TEAMS)}\n" if teams else "")


@pytest.fixture(scope="module")
def api_client(module_cluster):
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield client
    client.close()


@pytest.fixture(scope="module")
def kube(api_client):
    import kubernetes

    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def team_namespaces(api_client):
    """Apply what ``ptjaas team-manifests`` prints for these teams."""
    import kubernetes

    values = {"hub": {"config": {"PtjaasSpawner": {"team_namespaces": TEAMS, "quota_groups": QUOTA_GROUPS,
                                                   "sizes": SIZES}}}}
    made = []
    for namespace, _, objects in team_objects(values, Site(hub_namespace=HUB_NS), only_teams=["vision", "nlp"]):
        for obj in objects:
            kubernetes.utils.create_from_dict(api_client, obj)
        made.append(namespace)
    return made


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory, team_namespaces):
    return module_hub_factory(hub_config(), cluster=module_cluster)


def user_pods(kube, user):
    """{namespace: pod names} of the user's live server pods, in every namespace."""
    raw = json.loads(kube.list_pod_for_all_namespaces(_preload_content=False).data)
    out = {}
    for p in raw["items"]:
        meta = p["metadata"]
        if (meta.get("annotations") or {}).get("hub.jupyter.org/username") == user and not meta.get("deletionTimestamp"):
            out.setdefault(meta["namespace"], []).append(meta["name"])
    return out


def user_claims(kube, user):
    """{namespace: claim names} of claims named after the user, in every namespace."""
    out = {}
    for c in kube.list_persistent_volume_claim_for_all_namespaces().items:
        if c.metadata.name == f"claim-{user}":
            out.setdefault(c.metadata.namespace, []).append(c.metadata.name)
    return out


def spawn_page(hub, user):
    """The spawn form's text (entities decoded)."""
    return html.unescape(hub.session(user).get(hub.url.rstrip("/") + f"/hub/spawn/{user}").text)


def post_form(hub, user, data):
    session = hub.session(user)
    url = hub.url.rstrip("/") + f"/hub/spawn/{user}"
    session.get(url)
    return session.post(url, data={"_xsrf": session.cookies.get("_xsrf") or "", **data})


def page_table(hub, table_id, admin="boss"):
    """{first cell: {column header: cell}} of a table of the admin usage page."""
    r = hub.session(admin).get(hub.url.rstrip("/") + "/hub/ptjaas/usage", timeout=30)
    assert r.status_code == 200, r.text[:2000]
    header, *rows = table_rows(r.text, table_id)
    return {row[0]: dict(zip(header, row)) for row in rows}


def namespace_metrics(hub):
    """{namespace: {metric name: value}} of the hub's per-namespace gauges."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(hub.url.rstrip("/") + "/hub/metrics", headers={"Authorization": f"token {hub.token}"},
                     timeout=30)
    assert r.status_code == 200, r.text[:2000]
    out = {}
    for family in text_string_to_metric_families(r.text):
        if family.name.startswith("ptjaas_namespace_"):
            for sample in family.samples:
                out.setdefault(sample.labels["namespace"], {})[sample.name] = sample.value
    return out


def assert_usage_by_namespace(hub, expected):
    """The usage page, its JSON and the metrics agree on ``expected``:
    {namespace: (servers, GPUs, users)}."""
    page = page_table(hub, "ptjaas-namespaces")
    assert {ns: (int(row["servers"]), int(row["GPUs"]), row["users"]) for ns, row in page.items()} == {
        ns: (n, g, ", ".join(users)) for ns, (n, g, users) in expected.items()}
    data = usage(hub)["namespaces"]
    assert {ns: (row["servers"], row["gpus"], tuple(row["users"])) for ns, row in data.items()} == {
        ns: (n, g, tuple(users)) for ns, (n, g, users) in expected.items()}
    metrics = namespace_metrics(hub)
    assert {ns: (m["ptjaas_namespace_servers_in_use"], m["ptjaas_namespace_gpus_in_use"])
            for ns, m in metrics.items()} == {ns: (n, g) for ns, (n, g, _) in expected.items()}
    for ns, m in metrics.items():
        assert m["ptjaas_namespace_cpu_guaranteed_cores"] == pytest.approx(0.1 * expected[ns][0])
        assert m["ptjaas_namespace_memory_guaranteed_bytes"] == 64 * 2**20 * expected[ns][0]
    servers = page_table(hub, "ptjaas-servers")
    assert {user: row["namespace"] for user, row in servers.items()} == {
        u: ns for ns, (_, _, users) in expected.items() for u in users}


def test_a_vision_member_lands_in_the_vision_namespace(hub, kube):
    page = spawn_page(hub, "vera")
    assert "Team vision: server and home volume claim-vera in namespace jhub-team-vision" in page
    assert "A new 10Gi home volume, claim-vera, will be made in namespace jhub-team-vision" in page
    assert 'type="radio" name="team"' not in page  # one team: nothing to choose
    try:
        start_ready(hub, "vera", {"image": "python", "size": "small"})
        assert user_pods(kube, "vera") == {"jhub-team-vision": ["jupyter-vera"]}
        assert user_claims(kube, "vera") == {"jhub-team-vision": ["claim-vera"]}
        assert server(hub, "vera")["user_options"]["team"] == "vision"
    finally:
        stop(hub, "vera")
    assert user_pods(kube, "vera") == {}
    assert user_claims(kube, "vera") == {"jhub-team-vision": ["claim-vera"]}  # the home stays


def test_a_member_of_two_teams_chooses(hub, kube):
    page = spawn_page(hub, "tom")
    assert 'name="team" value="nlp"' in page and 'name="team" value="vision"' in page
    assert "namespace jhub-team-nlp" in page and "namespace jhub-team-vision" in page
    try:
        r = post_form(hub, "tom", {"choice": "new", "image": "python", "version--python": "1", "size": "small",
                                   "team": "vision"})
        assert r.status_code == 200, r.text
        wait_for(lambda: (server(hub, "tom") or {}).get("ready"), timeout=120, interval=0.2, message="tom ready")
        assert user_pods(kube, "tom") == {"jhub-team-vision": ["jupyter-tom"]}
        stop(hub, "tom")
        # by the API, the other team; the home there is the team's own
        start_ready(hub, "tom", {"image": "python", "size": "small", "team": "nlp"})
        assert user_pods(kube, "tom") == {"jhub-team-nlp": ["jupyter-tom"]}
        assert user_claims(kube, "tom") == {"jhub-team-nlp": ["claim-tom"], "jhub-team-vision": ["claim-tom"]}
        stop(hub, "tom")
        # the form pre-selects the last team
        assert 'value="nlp" id="ptjaas-team-nlp" checked' in spawn_page(hub, "tom")
    finally:
        stop(hub, "tom")


def test_a_forged_team_is_a_400_and_creates_nothing(hub, kube):
    for user, team, words in [
        ("vic", "nlp", "You are not a member of team 'nlp'. Your teams: vision."),
        ("nobody", "vision", "You are not a member of team 'vision', nor of any team"),
        ("vic", "<script>" * 100, "Server option 'team' is too long (800 characters, at most 256)"),
        ("vic", ["vision"], "Server option 'team' must be a string"),
    ]:
        r = start(hub, user, {"image": "python", "size": "small", "team": team})
        assert r.status_code == 400, (user, team, r.status_code, r.text)
        assert words in r.json()["message"], r.text
        assert len(r.json()["message"]) < 300  # bounded, whatever was posted
    r = post_form(hub, "vic", {"choice": "new", "image": "python", "version--python": "1", "size": "small",
                               "team": "nlp"})
    assert "You are not a member of team &#39;nlp&#39;" in r.text or "You are not a member of team 'nlp'" in r.text
    assert 'name="image"' in r.text  # the form again, with the error
    r = post_form(hub, "vic", {"choice": "new", "image": "python", "version--python": "1", "size": "small",
                               "team": "<script>alert(1)</script>"})
    assert "You are not a member of team" in r.text and "<script>alert(1)" not in r.text
    for user in ("vic", "nobody"):
        assert user_pods(kube, user) == {} and user_claims(kube, user) == {}
        assert server(hub, user) is None


def test_a_user_in_no_team_runs_in_the_hub_namespace(hub, kube):
    assert "You are in no team: your server and home volume claim-nobody live in the hub's namespace default" \
        in spawn_page(hub, "nobody")
    try:
        start_ready(hub, "nobody", {"image": "python", "size": "small"})
        assert user_pods(kube, "nobody") == {HUB_NS: ["jupyter-nobody"]}
        assert "team" not in server(hub, "nobody")["user_options"]
    finally:
        stop(hub, "nobody")


def test_a_home_made_before_teams_keeps_being_used_until_migrated(hub, kube):
    """leo's home exists in the hub's namespace (made before team namespaces; the hub has no
    state about it): his server runs there, with that home, until an admin marks a migrated
    copy in the team namespace. The old claim is never touched."""
    from ptjaas_spawner.teams import MIGRATED_FROM

    # made by KubeSpawner, which writes the owner's name on it (an unowned claim is never mounted)
    kube.create_namespaced_persistent_volume_claim(HUB_NS, {
        "metadata": {"name": "claim-leo", "annotations": {"hub.jupyter.org/username": "leo"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    page = spawn_page(hub, "leo")
    assert "namespace default (the hub's)" in page
    assert "Your home: claim-leo in namespace default, 1Gi (grown to 10Gi" in page
    try:
        start_ready(hub, "leo", {"image": "python", "size": "small"})
        assert user_pods(kube, "leo") == {HUB_NS: ["jupyter-leo"]}
        assert user_claims(kube, "leo") == {HUB_NS: ["claim-leo"]}
        pod = kube.read_namespaced_pod("jupyter-leo", HUB_NS)
        assert "claim-leo" in [v.persistent_volume_claim.claim_name for v in pod.spec.volumes
                               if v.persistent_volume_claim]
        stop(hub, "leo")
        # the admin copies the home into the team namespace and marks the copy
        kube.create_namespaced_persistent_volume_claim("jhub-team-vision", {
            "metadata": {"name": "claim-leo", "annotations": {MIGRATED_FROM: f"{HUB_NS}/claim-leo",
                                                              "hub.jupyter.org/username": "leo"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        start_ready(hub, "leo", {"image": "python", "size": "small"})
        assert user_pods(kube, "leo") == {"jhub-team-vision": ["jupyter-leo"]}
        assert user_claims(kube, "leo") == {HUB_NS: ["claim-leo"], "jhub-team-vision": ["claim-leo"]}
        stop(hub, "leo")
        page = spawn_page(hub, "leo")
        assert "Team vision: server and home volume claim-leo in namespace jhub-team-vision" in page
        assert "Your home: claim-leo in namespace jhub-team-vision" in page
    finally:
        stop(hub, "leo")


def test_a_legacy_home_with_hub_state_survives_switching_teams_on(module_cluster, hub_factory, kube,
                                                                  team_namespaces):
    """lea started before team namespaces were configured; after the upgrade her home (and the
    file in it) stays in use in the hub's namespace."""
    hub = hub_factory(hub_config(teams=False), cluster=module_cluster)
    try:
        start_ready(hub, "lea", {"image": "python", "size": "small"})
        token = hub.api("POST", "/users/lea/tokens", json={"note": "t"}).json()["token"]
        url = hub.url.rstrip("/") + "/user/lea/api/contents/notes.txt"
        r = requests.put(url, headers={"Authorization": f"token {token}"}, timeout=30,
                         json={"type": "file", "format": "text", "content": "kept"})
        assert r.status_code in (200, 201), r.text
        stop(hub, "lea")
        hub.restart(hub_config(teams=True))
        assert "namespace default (the hub's)" in spawn_page(hub, "lea")
        start_ready(hub, "lea", {"image": "python", "size": "small"})
        assert user_pods(kube, "lea") == {HUB_NS: ["jupyter-lea"]}
        assert user_claims(kube, "lea") == {HUB_NS: ["claim-lea"]}
        r = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == 200 and r.json()["content"] == "kept", r.text
    finally:
        if server(hub, "lea"):
            stop(hub, "lea")


def test_hub_restart_rebuilds_usage_from_three_namespaces(hub, kube):
    try:
        start_ready(hub, "vera", {"image": "python", "size": "gpu"})
        start_ready(hub, "tom", {"image": "python", "size": "gpu", "team": "nlp"})
        start_ready(hub, "nobody", {"image": "python", "size": "small"})
        assert {ns for u in ("vera", "tom", "nobody") for ns in user_pods(kube, u)} == {
            HUB_NS, "jhub-team-vision", "jhub-team-nlp"}
        by_namespace = {HUB_NS: (1, 0, ["nobody"]), "jhub-team-nlp": (1, 1, ["tom"]),
                        "jhub-team-vision": (1, 1, ["vera"])}
        assert_usage_by_namespace(hub, by_namespace)
        before = usage(hub)
        # tom's GPU is charged to the team he chose, whose namespace quota counts it
        assert before["groups"]["nlp"]["holders"] == ["tom"] and before["groups"]["vision"]["holders"] == ["vera"]
        hub.restart()
        after = usage(hub)
        assert after["servers"] == before["servers"] and after["groups"] == before["groups"]
        assert after["namespaces"] == before["namespaces"]
        assert_usage_by_namespace(hub, by_namespace)
        # one pod watch per namespace in use, never one over the whole cluster (KubeSpawner's log)
        logs = hub.logs()
        for ns in (HUB_NS, "jhub-team-vision", "jhub-team-nlp"):
            assert re.search(rf"watching for pods .* in namespace {ns}\b", logs), ns
        assert "in all namespaces" not in logs
        # and decisions after the restart count the other namespaces: nlp's only GPU is taken
        r = start(hub, "nick", {"image": "python", "size": "gpu"})
        msg = r.json()["message"] if r.status_code >= 400 else failure_message(hub, "nick")
        assert "0 of 1 nlp GPUs free" in msg or "group 'nlp' holds 1 of its 1 GPUs" in msg, msg
        assert user_pods(kube, "nick") == {}
    finally:
        for u in ("vera", "tom", "nobody", "nick"):
            if server(hub, u):
                stop(hub, u)


def test_a_team_namespace_the_admin_has_not_made_blocks_only_its_team(hub, kube):
    """jhub-team-ghost is configured but was never created: other users start as usual (usage
    is still counted), and ghost's member reads what is missing."""
    try:
        start_ready(hub, "nobody", {"image": "python", "size": "small"})
        r = start(hub, "gus", {"image": "python", "size": "small"})
        msg = r.json()["message"] if r.status_code >= 400 else failure_message(hub, "gus")
        assert "Team 'ghost''s namespace 'jhub-team-ghost' is not ready for servers yet, so your server was " \
            "not started" in msg, msg
        assert "Traceback" not in msg
        assert user_pods(kube, "gus") == {} and user_claims(kube, "gus") == {}
    finally:
        for u in ("nobody", "gus"):
            if server(hub, u):
                stop(hub, u)
    assert "Team namespace jhub-team-ghost (team ghost) cannot be used by the hub" in hub.logs()


def test_a_team_namespace_quota_refusal_is_readable(hub, kube):
    """The namespace's ResourceQuota (from team-manifests) agrees with the hub's budget; made
    smaller behind the hub's back, its 403 reads as clearly as the hub's own refusals."""
    quota = kube.read_namespaced_resource_quota("ptjaas-team", "jhub-team-vision")
    assert quota.spec.hard == {"requests.nvidia.com/gpu": str(QUOTA_GROUPS["vision"]["gpus"])}
    kube.patch_namespaced_resource_quota("ptjaas-team", "jhub-team-vision",
                                         {"spec": {"hard": {"requests.nvidia.com/gpu": "1"}}})
    try:
        start_ready(hub, "vera", {"image": "python", "size": "gpu"})
        r = start(hub, "vic", {"image": "python", "size": "gpu"})  # the hub's budget (4) allows it
        msg = r.json()["message"] if r.status_code >= 400 else failure_message(hub, "vic")
        assert "namespace 'jhub-team-vision' is at its resource quota" in msg and "ptjaas-team" in msg, msg
        assert "Traceback" not in msg and "HTTP response body" not in msg
        wait_for(lambda: server(hub, "vic") is None, timeout=60, message="vic's start to end")
        assert user_pods(kube, "vic") == {}
        assert [s["user"] for s in usage(hub)["servers"]] == ["vera"]
    finally:
        kube.patch_namespaced_resource_quota("ptjaas-team", "jhub-team-vision", {"spec": {"hard": quota.spec.hard}})
        for u in ("vera", "vic"):
            if server(hub, u):
                stop(hub, u)


@pytest.mark.parametrize("extra,expected", [
    ('c.PtjaasSpawner.team_namespaces = {"Vision Team": "jhub-team-{group}"}\n',
     "PtjaasSpawner.team_namespaces['Vision Team']: 'jhub-team-Vision Team' is not a valid namespace name"),
    ('c.PtjaasSpawner.team_namespaces = {"vision": "v"}\nc.KubeSpawner.enable_user_namespaces = True\n',
     "c.PtjaasSpawner.team_namespaces cannot be combined with c.KubeSpawner.enable_user_namespaces"),
], ids=["bad-name", "with-user-namespaces"])
def test_hub_refuses_to_start_with_invalid_team_namespaces(hub_factory, extra, expected):
    hub = hub_factory(hub_config(teams=False) + extra, start=False)
    hub.start(wait=False)
    assert hub.wait_exit(60) != 0
    assert expected in hub.logs()
