"""Every refusal ptjaas makes is on the audit record, and every ptjaas JSON endpoint is strict
(issue 20, points 2, 3 and 4), through one real JupyterHub on the embedded cluster.

A table drives each refusal path (a start with a forged, oversized or unknown option or over
quota; the spawn form with a bogus choice, a foreign version field or a forged team; a home
claim that is not the user's; a snapshot not yours, malformed, or asked for with another
user's token; the admin pages without the right; a bad body or query) and checks that exactly
one line was written, saying who asked, whose data, what and why. Then each JSON endpoint is
sent an unknown key and an oversized value (400, naming it, nothing changed), and a server
the user stops themselves is recorded as stopped by them.
"""

import html
import json
import textwrap

import pytest

from tests.hubutil import server
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]

IMAGES = {
    "python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}},
    "secret": {"display_name": "Secret", "groups": ["vision"], "versions": {"1": {"image": "example.org/s:1"}}},
}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "64Mi", "mem_limit": "1Gi",
            "gpu": 1},
}
USERS = ["ann", "bob", "zed", "vic"]
NOT_ANNS = "claim-bob-manual-20261206-120000-000000"


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refusals")
    h = module_hub_factory(textwrap.dedent(f"""
        c.JupyterHub.load_groups = {{"vision": {{"users": ["vic"]}}}}
        c.Authenticator.admin_users = {{"boss"}}
        c.PtjaasSpawner.images = {IMAGES!r}
        c.PtjaasSpawner.sizes = {SIZES!r}
        c.PtjaasSpawner.quota_default = {{"gpus": 0}}
        c.PtjaasSpawner.team_namespaces = {{"vision": "jhub-team-{{group}}"}}
        c.PtjaasSpawner.audit_log_file = {str(tmp / "audit.jsonl")!r}
        from ptjaas_spawner.pages import install
        install(c)
        """), cluster=module_cluster)
    h.audit_path = tmp / "audit.jsonl"
    assert h.api("POST", "/users", json={"usernames": USERS}).status_code == 201
    h.tokens = {u: h.api("POST", f"/users/{u}/tokens", json={"note": "t"}).json()["token"] for u in USERS}
    return h


def audit_lines(hub):
    if not hub.audit_path.exists():
        return []
    return [json.loads(line) for line in hub.audit_path.read_text().splitlines()]


def api(hub, user, method, path, **kw):
    return hub.api(method, path, token=hub.tokens[user], **kw)


def form_post(hub, user, data):
    s = hub.session(user)
    s.get(f"{hub.url}/hub/spawn/{user}", timeout=60)
    return s.post(f"{hub.url}/hub/spawn/{user}", data=dict(data, _xsrf=s.cookies.get("_xsrf") or ""), timeout=60)


def snapshot_page_post(hub, user, data):
    s = hub.session(user)
    s.get(f"{hub.url}/hub/ptjaas/snapshots", timeout=60)
    return s.post(f"{hub.url}/hub/ptjaas/snapshots", data=dict(data, _xsrf=s.cookies.get("_xsrf") or ""),
                  allow_redirects=False, timeout=60)


def bare_claim(module_cluster, name):
    """A claim at a home-claim name that nothing proves to be its user's (no ptjaas annotation)."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    kubernetes.client.CoreV1Api(api).create_namespaced_persistent_volume_claim("default", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    api.close()


def snap(hub, user, as_user, suffix="", method="POST", **kw):
    return api(hub, as_user, method, f"/ptjaas/snapshots/{user}{suffix}", **kw)


# (what, request, status, expected line: action, user, by and fields; message contains 'why')
REFUSALS = [
    ("start: forged team", lambda h: api(h, "ann", "POST", "/users/ann/server", json={"team": "vision"}),
     400, {"action": "refused-option", "user": "ann", "by": "ann", "options": {"team": "vision"}},
     "You are not a member of team 'vision'"),
    ("start: oversized team", lambda h: api(h, "ann", "POST", "/users/ann/server", json={"team": "v" * 5000}),
     400, {"action": "refused-option", "user": "ann", "by": "ann"}, "'team' is too long (5000 characters"),
    ("start: unknown option", lambda h: api(h, "ann", "POST", "/users/ann/server", json={"profile": "big"}),
     400, {"action": "refused-option", "user": "ann", "by": "ann"}, "Unknown server option(s): 'profile'"),
    ("start: over quota", lambda h: api(h, "ann", "POST", "/users/ann/server", json={"size": "gpu"}),
     (400, 403), {"action": "refused-quota", "user": "ann", "by": "ann", "options": {"size": "gpu"}},
     "cannot be started"),
    ("form: bogus choice", lambda h: form_post(h, "ann", {"choice": "bogus", "image": "python", "size": "small"}),
     400, {"action": "refused-option", "user": "ann", "by": "ann", "options": {"choice": "bogus", "image": "python",
                                                                              "size": "small"}},
     "Form field 'choice' must be 'last' or 'new', not 'bogus'"),
    ("form: version of an image not offered",
     lambda h: form_post(h, "ann", {"choice": "new", "image": "python", "size": "small", "version--secret": "1"}),
     400, {"action": "refused-option", "user": "ann", "by": "ann"},
     "'version--secret' is the version of an image that is not available to you"),
    ("form: forged team", lambda h: form_post(h, "ann", {"choice": "new", "image": "python", "size": "small",
                                                        "team": "vision"}),
     400, {"action": "refused-option", "user": "ann", "by": "ann", "options": {"team": "vision"}},
     "You are not a member of team 'vision'"),
    ("home claim not the user's", lambda h: api(h, "zed", "POST", "/users/zed/server", json={}),
     409, {"action": "refused-claim", "user": "zed", "by": "zed", "claim": "claim-zed"},
     "a storage claim named claim-zed exists where your home volume belongs"),
    ("snapshot restore: not yours", lambda h: snap(h, "ann", "ann", "/restore", json={"snapshot": NOT_ANNS}),
     404, {"action": "refused-snapshot", "user": "ann", "by": "ann", "snapshot": NOT_ANNS},
     f"You have no snapshot named {NOT_ANNS}"),
    ("snapshot open: not yours", lambda h: snap(h, "ann", "ann", "/open", json={"snapshots": [NOT_ANNS]}),
     404, {"action": "refused-snapshot", "user": "ann", "by": "ann", "snapshot": NOT_ANNS},
     f"You have no snapshot named {NOT_ANNS}"),
    ("snapshot restore: malformed name", lambda h: snap(h, "ann", "ann", "/restore", json={"snapshot": "../claim-bob"}),
     400, {"action": "refused-snapshot", "user": "ann", "by": "ann", "snapshot": "../claim-bob"},
     "is not a snapshot name"),
    ("snapshot restore: unknown key", lambda h: snap(h, "ann", "ann", "/restore", json={"snapshot": NOT_ANNS, "evil": 1}),
     400, {"action": "refused-request", "user": "ann", "by": "ann",
           "request": "POST /hub/api/ptjaas/snapshots/ann/restore"}, "Unknown key(s) in the request body: 'evil'"),
    ("snapshot list: another user's token", lambda h: snap(h, "bob", "ann", method="GET"),
     (403, 404), {"action": "refused-access", "user": "bob", "by": "ann", "request": "GET /hub/api/ptjaas/snapshots/bob"},
     ""),
    ("snapshot restore: another user's token", lambda h: snap(h, "bob", "ann", "/restore", json={"snapshot": NOT_ANNS}),
     (403, 404), {"action": "refused-access", "user": "bob", "by": "ann"}, ""),
    ("snapshot page: another user's", lambda h: h.session("ann").get(f"{h.url}/hub/ptjaas/snapshots?user=bob", timeout=60),
     403, {"action": "refused-access", "user": "bob", "by": "ann"}, "You may only see your own snapshots"),
    ("snapshot page: unknown form field", lambda h: snapshot_page_post(h, "ann", {"action": "take", "image": "x"}),
     400, {"action": "refused-request", "user": "ann", "by": "ann"}, "Unknown form field(s): 'image'"),
    ("snapshot page: oversized form field",
     lambda h: snapshot_page_post(h, "ann", {"restore": "s" * 5000}),
     400, {"action": "refused-request", "user": "ann", "by": "ann"}, "Form field 'restore' is too long"),
    ("usage: not an admin", lambda h: api(h, "ann", "GET", "/ptjaas/usage"),
     403, {"action": "refused-access", "user": "", "by": "ann"}, "Only administrators"),
    ("audit record: not an admin", lambda h: api(h, "ann", "GET", "/ptjaas/audit"),
     403, {"action": "refused-access", "user": "", "by": "ann"}, "Only administrators"),
    ("audit record: bad filter", lambda h: h.api("GET", "/ptjaas/audit", params={"since": "yesterday"}),
     400, {"action": "refused-request", "user": "", "by": "test-admin"}, "since must be a date"),
]


def test_every_refusal_writes_one_line_saying_who_what_why(hub, module_cluster):
    bare_claim(module_cluster, "claim-zed")
    for what, request, status, fields, why in REFUSALS:
        before = len(audit_lines(hub))
        r = request(hub)
        assert r.status_code in (status if isinstance(status, tuple) else (status,)), (what, r.status_code, r.text[:500])
        if why and r.headers.get("Content-Type", "").startswith("text/html"):
            assert why in html.unescape(r.text), (what, r.text[-2000:])  # the message is in the page
        elif why:
            assert why in r.json()["message"], (what, r.text)
        new = audit_lines(hub)[before:]
        assert len(new) == 1, (what, new)
        line = new[0]
        assert {k: line.get(k) for k in fields} == fields, (what, line)
        assert why in line["message"] and line["message"], (what, line)
    # nothing was started, and the refused requests changed nothing
    assert all(server(hub, u) is None for u in USERS)
    assert not [e for e in audit_lines(hub) if not e["action"].startswith("refused-")]
    text = hub.audit_path.read_text()
    assert all(tok not in text for tok in hub.tokens.values()) and hub.token not in text
    assert "v" * 1001 not in text  # values bounded in the record


# (endpoint, method, path, an unknown key's request, an oversized value's request)
ENDPOINTS = [
    ("snapshot restore", "POST", "/ptjaas/snapshots/ann/restore",
     {"json": {"snapshot": NOT_ANNS, "image": "x"}}, {"json": {"snapshot": "s" * 5000}}),
    ("snapshot open", "POST", "/ptjaas/snapshots/ann/open",
     {"json": {"snapshots": [NOT_ANNS], "image": "x"}}, {"json": {"snapshots": ["s" * 5000]}}),
    ("snapshot take", "POST", "/ptjaas/snapshots/ann", {"json": {"reason": "x"}}, {"data": "x" * 20000}),
    ("snapshot list", "GET", "/ptjaas/snapshots/ann", {"params": {"evil": "1"}}, {"params": {"evil": "s" * 5000}}),
    ("usage", "GET", "/ptjaas/usage", {"params": {"evil": "1"}}, {"params": {"evil": "s" * 5000}}),
    ("audit record", "GET", "/ptjaas/audit", {"params": {"evil": "1"}}, {"params": {"user": "s" * 5000}}),
]


@pytest.mark.parametrize("name,method,path,unknown,oversized", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_every_endpoint_refuses_unknown_keys_and_oversized_values(hub, name, method, path, unknown, oversized):
    as_user = "boss" if path in ("/ptjaas/usage", "/ptjaas/audit") else "ann"
    token = hub.api("POST", f"/users/{as_user}/tokens", json={"note": "t"}).json()["token"] if as_user == "boss" \
        else hub.tokens["ann"]
    r = hub.api(method, path, token=token, **unknown)
    assert r.status_code == 400, (name, r.text)
    assert "evil" in r.json()["message"] or "image" in r.json()["message"] or "reason" in r.json()["message"], r.text
    r = hub.api(method, path, token=token, **oversized)
    assert r.status_code == 400, (name, r.text[:300])
    message = r.json()["message"]
    assert "too long" in message or "too large" in message or "evil" in message, message
    assert "s" * 100 not in message and len(r.content) < 500
    assert server(hub, "ann") is None


def test_a_user_who_stops_their_server_is_recorded_as_who_stopped_it(hub):
    r = api(hub, "bob", "POST", "/users/bob/server", json={"image": "python", "size": "small"})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (server(hub, "bob") or {}).get("ready"), timeout=120, message="bob's server ready")
    r = api(hub, "bob", "DELETE", "/users/bob/server")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server(hub, "bob") is None, timeout=60, message="bob's server stopped")
    stops = [e for e in audit_lines(hub) if e["action"] == "server-stop" and e["user"] == "bob"]
    assert [e.get("by") for e in stops] == ["bob"], stops
