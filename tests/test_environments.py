"""Issue 25, the environments people use.

- Fail fast, free the share: a start whose image cannot be pulled, or whose server keeps
  exiting, ends within seconds with the reason in plain words (KubeSpawner waits for
  ``start_timeout``: kubespawner#795), its pod deleted, its quota share free again and the
  failure on the audit record. The embedded node agent pulls only the images it is told exist
  (``kubelet.images``) and reports the kubelet's waiting reasons and events.
- What a choice opens: an image declaring ``interface: vscode`` starts at ``/vscode/``.
- Images of one's own: a permitted user starts an image matching an allowed pattern; any other
  reference is refused with the patterns named, and nothing starts.
"""

import base64
import html
import http.server
import threading
import os
import json
import re
import textwrap
from pathlib import Path

import kubernetes
import pytest
import requests

from ptjaas_sandbox.cluster.images import ImageRegistry
from ptjaas_spawner.imageref import normalized
from ptjaas_spawner import customimages
from ptjaas_spawner.catalog import ChoiceError, resolve_choice
from ptjaas_spawner.registrydigest import manifest_url
from ptjaas_spawner.interfaces import collaboration_args, describe, interface_of
from ptjaas_spawner.startfailure import container_problem

from tests.hubutil import server, stop
from tests.test_start_failures import add_user, start_outcome
from tests.waiting import wait_for

IMAGE = "example.org/py:1"
MISSING = "example.org/py:gone"

# the hub tests on the embedded cluster and on a real kube-apiserver (tests/conftest.py), one
# shared hub per backend; on the real one only the fail-fast starts run (the rest read the
# embedded node's processes, or add nothing the API server decides)
BACKENDS = ("embedded", "real")


@pytest.fixture
def embedded_only(cluster_backend):
    if cluster_backend == "real":
        pytest.skip("runs on the embedded cluster only (what it checks is not the API server's)")


# ---- the node's registry (pure) ------------------------------------------------------------

@pytest.mark.parametrize("image, available, reason", [
    ("example.org/py:1", None, None),
    ("example.org/py:gone", None, None),                       # no list: every image exists
    ("example.org/py:1", ["example.org/py:1"], None),
    ("example.org/py:gone", ["example.org/py:1"], "ErrImagePull"),
    ("quay.io/jupyter/base-notebook:2025", ["quay.io/jupyter/*"], None),
    ("python", ["docker.io/library/python:*"], None),          # as containerd names it
    ("Bad Image:1", None, "InvalidImageName"),
    ("example.org/Py:1", None, "InvalidImageName"),             # repository path must be lowercase
])
def test_the_node_pulls_what_its_registry_holds(image, available, reason):
    problem = ImageRegistry(available).problem(image)
    assert (problem[0] if problem else None) == reason
    if reason == "ErrImagePull":
        assert problem[1].endswith(f"{normalized(image)}: not found")


def test_normalized_names_are_containerds():
    assert normalized("python") == "docker.io/library/python:latest"
    assert normalized("jupyter/base:1") == "docker.io/jupyter/base:1"
    assert normalized("localhost:5000/x") == "localhost:5000/x:latest"
    assert normalized("quay.io/a/b@sha256:" + "0" * 64) == "quay.io/a/b@sha256:" + "0" * 64


# ---- what the start makes of the kubelet's report (pure) -----------------------------------

def pod(reason, message="", image=MISSING, restarts=0, exit_code=None):
    cs = {"name": "notebook", "image": image, "restartCount": restarts,
          "state": {"waiting": {"reason": reason, "message": message}}}
    if exit_code is not None:
        cs["lastState"] = {"terminated": {"exitCode": exit_code}}
    return {"spec": {"containers": [{"name": "notebook", "image": image}]}, "status": {"containerStatuses": [cs]}}


NOT_FOUND = f'rpc error: code = NotFound desc = failed to pull and unpack image "{MISSING}": not found'
PULL_EVENT = {"reason": "Failed", "message": f'Failed to pull image "{MISSING}": {NOT_FOUND}'}


@pytest.mark.parametrize("the_pod, events, kind, words", [
    (pod("ContainerCreating"), [], None, None),
    (pod("ErrImagePull", NOT_FOUND), [], "image", f"the image {MISSING} could not be pulled: not found"),
    (pod("ErrImagePull", "rpc error: code = Unknown desc = 401 Unauthorized"), [], "image",
     "the registry refused access"),
    (pod("ErrImagePull", "rpc error: code = Unknown desc = something odd"), [], None, None),   # one more try
    (pod("ErrImagePull", "dial tcp: lookup example.org: no such host"), [], None, None),      # may pass
    (pod("ImagePullBackOff", f'Back-off pulling image "{MISSING}"'), [PULL_EVENT], "image", "could not be pulled: not found"),
    (pod("ImagePullBackOff", f'Back-off pulling image "{MISSING}"'), [], "image", "the pull kept failing"),
    (pod("InvalidImageName", "couldn't parse image reference"), [], "image", "it is not a valid image name"),
    (pod("CrashLoopBackOff", "back-off", image=IMAGE, restarts=2, exit_code=1), [], "crash",
     "keeps exiting as soon as it starts (exit code 1, restarted 2 times)"),
])
def test_container_problems_in_plain_words(the_pod, events, kind, words):
    problem = container_problem(the_pod, events)
    if kind is None:
        assert problem is None
        return
    assert problem[0] == kind and words in problem[1], problem
    assert "Nothing is left running and your quota share is free again" in problem[1]


# ---- what a choice opens, images of one's own (pure) -----------------------------------------

CATALOG = {"python": {"display_name": "Python", "launchers": ["TensorBoard"], "versions": {
    "1": {"image": IMAGE, "default": True},
    "code": {"image": "example.org/code:1", "interface": "vscode"},
    "tool": {"image": "example.org/tool:1", "interface": {"name": "Tool", "default_url": "/tool/"},
             "launchers": []}}}}
SIZES = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                   "mem_guarantee": "64Mi", "mem_limit": "1Gi"},
         "big": {"display_name": "Big", "cpu_guarantee": 1, "cpu_limit": 2, "mem_guarantee": "1Gi",
                 "mem_limit": "2Gi", "groups": ["big"]}}
CUSTOM = {"groups": ["ml"], "allowed": ["example.org/team/*", "quay.io/jupyter/*"], "sizes": ["small", "big"],
          "pull_secret": "team-registry"}


def test_collaboration_is_declared_per_image_or_version():
    image = {"collaboration": True, "versions": {"1": {"image": IMAGE}, "2": {"image": IMAGE, "collaboration": False}}}
    on, off = (interface_of(image, image["versions"][v]) for v in ("1", "2"))
    assert describe(on) == "Opens the default interface, with real-time collaboration" and describe(off) == ""
    assert collaboration_args(on["collaboration"]) == ["--YDocExtension.disable_rtc=False"]
    assert collaboration_args(off["collaboration"]) == ["--YDocExtension.disable_rtc=True"]
    assert collaboration_args(interface_of({"versions": {}}, {})["collaboration"]) == []


@pytest.mark.parametrize("version, name, url, launchers", [
    ("1", "", "", ["TensorBoard"]),
    ("code", "VS Code", "/vscode/", ["TensorBoard"]),
    ("tool", "Tool", "/tool/", []),
])
def test_a_choice_opens_what_its_image_or_version_declares(version, name, url, launchers):
    choice = resolve_choice(CATALOG, SIZES, [], {"version": version})
    assert (choice.interface, choice.default_url, choice.launchers) == (name, url, launchers)
    assert "interface" not in choice.as_state()
    assert describe(interface_of(CATALOG["python"], CATALOG["python"]["versions"]["code"])) == \
        "Opens VS Code (also: TensorBoard)"


@pytest.mark.parametrize("groups, options, refused", [
    (["ml"], {"custom_image": "example.org/team/x:2"}, ""),
    (["ml"], {"custom_image": "quay.io/jupyter/scipy-notebook:2025-01-01", "size": "small"}, ""),
    (["ml"], {"image": "custom", "version": "2", "custom_image": "example.org/team/x:2"}, ""),  # as saved
    ([], {"custom_image": "example.org/team/x:2"}, "not available to you"),
    (["ml"], {"custom_image": "evil.example/x:1"}, "not allowed here. Allowed images: example.org/team/*, quay.io"),
    (["ml"], {"custom_image": "Example.org/Team/X"}, "not a valid image name"),
    (["ml"], {"custom_image": "example.org/team/" + "x" * 300}, "too long"),
    (["ml"], {"custom_image": "example.org/team/x:2", "image": "python"}, "not both"),
    (["ml"], {"custom_image": "example.org/team/x:2", "size": "big"}, "size 'big' is not available to you"),
    (["ml", "big"], {"custom_image": "example.org/team/x:2", "size": "big"}, ""),
])
def test_images_of_ones_own_only_as_allowed(groups, options, refused):
    try:
        choice = resolve_choice(CATALOG, SIZES, groups, options, custom_images=CUSTOM)
    except ChoiceError as e:
        assert refused and refused in str(e), str(e)
        return
    assert not refused, choice
    assert choice.custom and choice.image == customimages.CUSTOM and choice.image_ref == options["custom_image"]
    assert choice.pull_secret == "team-registry"


@pytest.mark.parametrize("reference, url", [
    ("python", "https://registry-1.docker.io/v2/library/python/manifests/latest"),
    ("quay.io/jupyter/base-notebook:2026-08-24", "https://quay.io/v2/jupyter/base-notebook/manifests/2026-08-24"),
    ("registry.local:5000/team/x:1", "http://registry.local:5000/v2/team/x/manifests/1"),   # plain http
    ("quay.io/a/b@sha256:" + "0" * 64, ""),                                                  # already pinned
])
def test_a_tag_is_resolved_at_its_registrys_manifest_url(reference, url):
    assert manifest_url(reference, plain_http=["registry.local:5000"]) == url


def test_same_as_last_repeats_a_custom_image():
    first = resolve_choice(CATALOG, SIZES, ["ml"], {"custom_image": "example.org/team/x:2"}, custom_images=CUSTOM)
    again = resolve_choice(CATALOG, SIZES, ["ml"], {"same_as_last": True}, last=first.as_state(),
                           custom_images=CUSTOM)
    assert again.image_ref == "example.org/team/x:2" and again.version == "2"
    with pytest.raises(ChoiceError, match="not available to you"):  # no longer permitted
        resolve_choice(CATALOG, SIZES, [], {"same_as_last": True}, last=first.as_state(), custom_images=CUSTOM)


# ---- through a real hub on the embedded cluster ---------------------------------------------

REGISTRY_DIGEST = "sha256:" + "ab" * 32


def stub_registry():
    """A registry's Distribution API as far as the start asks it: the manifest of team/nb:3."""
    asked = []

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (http.server's name)
            asked.append(("HEAD", self.path, self.headers.get("Accept", "")))
            known = self.path == "/v2/team/nb/manifests/3"
            self.send_response(200 if known else 404)
            if known:
                self.send_header("Docker-Content-Digest", REGISTRY_DIGEST)
                self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.host, server.asked = f"127.0.0.1:{server.server_address[1]}", asked
    return server


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory, tmp_path_factory):
    # the node agent (embedded, or the real cluster's) pulls only these images
    kubelet = module_cluster.kubelet if hasattr(module_cluster, "kubelet") else module_cluster.cluster.kubelet
    kubelet.images = ImageRegistry([IMAGE, "example.org/code:*", "example.org/team/*", "127.0.0.1:*/team/*"])
    registry = stub_registry()
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    try:
        kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
            config_file=str(module_cluster.kubeconfig_path))).create_namespaced_service_account(
            "default", {"metadata": {"name": "servers"}, "automountServiceAccountToken": False})
    except kubernetes.client.ApiException as e:  # the real cluster's namespace outlives a module
        if e.status != 409:
            raise
    images = {"python": {"display_name": "Python", "versions": {
        "1": {"image": IMAGE, "default": True}, "gone": {"image": MISSING},
        "code": {"image": "example.org/code:1", "interface": "vscode", "collaboration": True}}}}
    sizes = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                       "mem_guarantee": "64Mi", "mem_limit": "1Gi"}}
    h = module_hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {images!r}
        c.PtjaasSpawner.sizes = {json.dumps(sizes)}
        c.PtjaasSpawner.quota_default = {{"servers": 1}}
        c.Authenticator.admin_users = {{"boss"}}
        c.PtjaasSpawner.audit_log_file = {str(audit)!r}
        c.PtjaasSpawner.custom_images = {{"groups": [], "allowed": ["example.org/team/*", "127.0.0.1:*/team/*"],
            "resolve_digest": True, "registry_timeout": 3, "plain_http_registries": [{registry.host!r}]}}
        c.PtjaasSpawner.data_connections = {{
            "store": {{"secret": "store-creds", "env": {{"STORE_KEY": "key"}}}},
            "gone": {{"secret": "gone-creds", "env_from": True}},
            "vision-only": {{"secret": "store-creds", "env_from": True, "groups": ["vision"]}},
            "lake": {{"identity_token": {{"audience": "sts.example.org", "path_env": "AWS_WEB_IDENTITY_TOKEN_FILE"}}}}}}
        c.PtjaasSpawner.service_account = "servers"  # workload identity: the servers' own account
        def crash_for_carl(spawner):  # carl's server program exits at once: a broken image
            if spawner.user.name == "carl":
                spawner.cmd = ["false"]
        c.Spawner.pre_spawn_hook = crash_for_carl
        from ptjaas_spawner.pages import install
        install(c)  # the hub pages (sharing), as fragment 60 does for z2jh
        c.PtjaasSharing.server_authorizer = "ptjaas_spawner.serverauth.ShareModeAuthorizer"
        """), cluster=module_cluster)
    h.audit_path = audit
    h.registry = registry
    yield h
    kubelet.images = ImageRegistry()
    registry.shutdown()


def failures(hub, user):
    if not hub.audit_path.exists():
        return []
    lines = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
    return [r for r in lines if r.get("action") == "server-start-failed" and r.get("user") == user]


@pytest.mark.hub
def test_a_missing_image_fails_in_seconds_and_frees_the_share(hub, module_cluster):
    add_user(hub, "pat")
    ready, message, _, seconds, _ = start_outcome(hub, "pat", {"version": "gone"})
    assert not ready
    assert f"the image {MISSING} could not be pulled: not found" in message, message
    assert seconds < 30, seconds
    wait_for(lambda: server(hub, "pat") is None, timeout=30, message="pat's server gone")
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        config_file=str(module_cluster.kubeconfig_path)))
    wait_for(lambda: "jupyter-pat" not in [p.metadata.name for p in core.list_namespaced_pod("default").items],
             timeout=30, message="the pod deleted")
    [record] = failures(hub, "pat")
    assert record["reason"] == "image-pull" and record["image"] == MISSING
    # the quota share (1 server) is free again: the good version starts
    ready, message, _, _, _ = start_outcome(hub, "pat", {"version": "1"}, timeout=120)
    assert ready, message
    stop(hub, "pat")


@pytest.mark.hub
def test_a_server_that_keeps_exiting_fails_in_seconds(hub):
    add_user(hub, "carl")
    ready, message, _, seconds, _ = start_outcome(hub, "carl", {"version": "1"})
    assert not ready
    assert "keeps exiting as soon as it starts (exit code 1" in message and IMAGE in message, message
    assert seconds < 30, seconds
    wait_for(lambda: server(hub, "carl") is None, timeout=30, message="carl's server gone")
    assert [r["reason"] for r in failures(hub, "carl")] == ["crash-loop"]


@pytest.mark.hub
def test_a_vs_code_image_opens_at_its_url(embedded_only, hub, module_cluster):
    """... and a version declaring collaboration: true starts with real-time collaboration on."""
    add_user(hub, "vic")
    ready, message, _, _, _ = start_outcome(hub, "vic", {"version": "code"}, timeout=120)
    assert ready, message
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        config_file=str(module_cluster.kubeconfig_path)))
    args = core.read_namespaced_pod("jupyter-vic", "default").spec.containers[0].args
    assert "--YDocExtension.disable_rtc=False" in args, args  # the server runs with it (jupyter-collaboration's switch)
    r = hub.session("vic").get(f"{hub.url}/user/vic/", allow_redirects=False, timeout=30)
    assert r.status_code in (301, 302) and r.headers["Location"].split("?")[0].endswith("/user/vic/vscode/"), \
        (r.status_code, r.headers.get("Location"))
    stop(hub, "vic")


@pytest.mark.hub
def test_an_image_of_ones_own_starts_if_allowed(embedded_only, hub, module_cluster):
    """... resolved to the digest its registry serves (the pod runs that digest, the audit
    records it); a registry that cannot be reached lets the start go on with the tag, and the
    audit says so."""
    add_user(hub, "ola")
    r = hub.api("POST", "/users/ola/server", json={"custom_image": "evil.example/miner:1"})
    assert r.status_code == 400 and "Allowed images: example.org/team/*" in r.json()["message"], r.text
    assert server(hub, "ola") is None
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        config_file=str(module_cluster.kubeconfig_path)))
    reference = f"{hub.registry.host}/team/nb:3"
    for ref, field, value in ((reference, "registry_digest", REGISTRY_DIGEST),
                              ("127.0.0.1:1/team/nb:3", "registry_digest_problem", "the registry was not reached")):
        ready, message, _, _, _ = start_outcome(hub, "ola", {"custom_image": ref}, timeout=120)
        assert ready, message
        starts = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
        start = [r for r in starts if r.get("action") == "server-start" and r.get("user") == "ola"][-1]
        assert start["image_ref"] == ref and start["image"] == "custom", start
        assert value in start[field], start
        image = core.read_namespaced_pod("jupyter-ola", "default").spec.containers[0].image
        assert image == (f"{ref}@{REGISTRY_DIGEST}" if field == "registry_digest" else ref), image
        stop(hub, "ola")
    # the registry was asked once, for the manifest of the tag, accepting image indexes
    assert [(m, path) for m, path, _ in hub.registry.asked] == [("HEAD", "/v2/team/nb/manifests/3")]
    assert "application/vnd.oci.image.index.v1+json" in hub.registry.asked[0][2]


@pytest.mark.hub
def test_a_data_connection_reaches_the_server_by_reference(embedded_only, hub, module_cluster):
    """Issue 23: the pod names the Secret, the kubelet resolves it; a foreign connection is
    refused; a connection whose Secret is missing fails the start at once."""
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(
        config_file=str(module_cluster.kubeconfig_path)))
    core.create_namespaced_secret("default", {"metadata": {"name": "store-creds"}, "stringData": {"key": "s3cr3t"}})
    add_user(hub, "dee")
    r = hub.api("POST", "/users/dee/server", json={"connections": ["vision-only"]})
    assert r.status_code == 400 and "'vision-only' is not available to you" in r.json()["message"], r.text
    ready, message, _, _, _ = start_outcome(hub, "dee", {"connections": ["store"]}, timeout=120)
    assert ready, message
    pod = core.read_namespaced_pod("jupyter-dee", "default").to_dict()
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["STORE_KEY"]["value"] is None
    assert env["STORE_KEY"]["value_from"]["secret_key_ref"] == {"name": "store-creds", "key": "key",
                                                                "optional": None}
    runtime = next(p for p in module_cluster.kubelet.pods.values() if p.name == "jupyter-dee")
    environ = open(f"/proc/{runtime.procs['notebook'].pid}/environ", "rb").read().split(b"\0")
    assert b"STORE_KEY=s3cr3t" in environ
    starts = [json.loads(line) for line in hub.audit_path.read_text().splitlines()]
    start = [r for r in starts if r.get("action") == "server-start" and r.get("user") == "dee"][-1]
    assert start["connections"] == ["store"] and "s3cr3t" not in hub.audit_path.read_text()
    assert "s3cr3t" not in hub.logs()
    assert not [v for v in pod["spec"]["volumes"] if v.get("projected")]  # no token without asking
    stop(hub, "dee")
    # workload identity: a connection that asks for a token gets one, for its audience, bound to the pod
    ready, message, _, _, _ = start_outcome(hub, "dee", {"connections": ["lake"]}, timeout=120)
    assert ready, message
    runtime = next(p for p in module_cluster.kubelet.pods.values() if p.name == "jupyter-dee")
    environ = open(f"/proc/{runtime.procs['notebook'].pid}/environ", "rb").read().split(b"\0")
    assert b"AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/ptjaas/lake/token" in environ
    token = open(os.path.join(runtime.launch.dir, "volumes", "identity-lake", "token")).read()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["aud"] == ["sts.example.org"] and payload["sub"] == "system:serviceaccount:default:servers"
    assert payload["kubernetes.io"]["pod"]["name"] == "jupyter-dee"
    stop(hub, "dee")
    ready, message, _, seconds, _ = start_outcome(hub, "dee", {"connections": ["gone"]})
    assert not ready and "the Secret 'gone-creds'" in message and seconds < 30, (message, seconds)
    wait_for(lambda: server(hub, "dee") is None, timeout=30, message="dee's server gone")


def server_call(session, method, path, **kwargs):
    """A request to alice's server's REST API as a browser's JupyterLab makes it (the server's
    own _xsrf cookie, set when the page was opened, echoed in X-XSRFToken)."""
    xsrf = next((c.value for c in session.cookies if c.name == "_xsrf" and c.path.startswith("/user/alice")), "")
    return session.request(method, path, headers={"X-XSRFToken": xsrf}, timeout=60, **kwargs)


@pytest.mark.hub
def test_alice_shares_her_server_with_bob_and_carol_cannot_open_it(embedded_only, hub):
    """Issue 25, sharing: from /hub/ptjaas/sharing alice shares her running server with bob,
    view only: he reads her notebook, his save and a new kernel are refused; shared to
    collaborate, he saves; carol (not shared) cannot open it; revoked, bob cannot either; each
    step on the record."""
    for name in ("alice", "bob", "carol"):
        add_user(hub, name)
    ready, message, _, _, _ = start_outcome(hub, "alice", {"version": "1"}, timeout=120)
    assert ready, message
    alice, bob, carol = (hub.session(n) for n in ("alice", "bob", "carol"))

    def post(session, **fields):
        page = f"{hub.url}/hub/ptjaas/sharing"
        session.get(page, timeout=30)
        return session.post(page, data=dict(fields, _xsrf=session.cookies.get("_xsrf", path="/hub/") or ""),
                            timeout=60)

    def opens(session):
        """GET alice's server's status as this user; JupyterHub asks a visitor to confirm the
        access (its OAuth authorization page): confirmed as a browser would."""
        r = session.get(f"{hub.url}/user/alice/", timeout=60)  # a page: the server's login goes through the hub
        if r.status_code == 200 and "oauth2/authorize" in r.url:
            form = re.search(r'<form[^>]*action="([^"]*)"(.*?)</form>', r.text, re.S)
            fields = [(k, html.unescape(v)) for k, v in
                      re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(2))]
            r = session.post(requests.compat.urljoin(r.url, html.unescape(form.group(1)) or r.url), data=fields,
                             timeout=60)
        r = session.get(f"{hub.url}/user/alice/api/status", timeout=60)
        opens.last = (r.status_code, r.url, r.text[:1000])
        return r.status_code == 200 and "started" in r.text

    api = f"{hub.url}/user/alice/api"
    notebook = {"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
    assert opens(alice), opens.last
    r = server_call(alice, "PUT", f"{api}/contents/shared.ipynb", json=notebook)  # the owner writes
    assert r.status_code in (200, 201), (r.status_code, r.text[:500])
    assert not opens(hub.session("bob"))
    r = post(alice, action="share", kind="group", name="nobodys-group")
    assert "only share with a group you belong to" in r.text, r.text[-2000:]
    r = post(alice, action="share", kind="user", name="bob", mode="view")
    assert "Your server is shared with user bob (view only)" in r.text and "<td>user bob</td><td>view only</td>" in r.text
    page = bob.get(f"{hub.url}/hub/ptjaas/sharing", timeout=30).text
    assert "alice" in page and "/user/alice/" in page, page[page.find('Shared with you'):][:500]
    viewer = hub.session("bob")  # a new login: JupyterHub grants the scopes a user has then
    assert opens(viewer), opens.last
    r = server_call(viewer, "GET", f"{api}/contents")
    assert r.status_code == 200 and "shared.ipynb" in [f["name"] for f in r.json()["content"]], r.text[:500]
    assert server_call(viewer, "GET", f"{api}/contents/shared.ipynb").json()["type"] == "notebook"
    assert server_call(viewer, "PUT", f"{api}/contents/shared.ipynb", json=notebook).status_code == 403
    assert server_call(viewer, "POST", f"{api}/kernels", json={}).status_code == 403
    assert not opens(carol)
    r = post(alice, action="share", kind="user", name="bob", mode="collaborate")
    assert "<td>user bob</td><td>collaborate</td>" in r.text
    collaborator = hub.session("bob")
    assert opens(collaborator), opens.last
    r = server_call(collaborator, "PUT", f"{api}/contents/shared.ipynb", json=notebook)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    post(alice, action="revoke", kind="user", name="bob")
    assert not opens(hub.session("bob"))
    actions = [(r["action"], r.get("share_with") or r.get("by"), r.get("mode"))
               for r in map(json.loads, hub.audit_path.read_text().splitlines())
               if r.get("user") == "alice" and "share" in r["action"]]
    # each of bob's logins to alice's server is one visit, however many requests it made
    assert actions == [("refused-share", "alice", None), ("share-grant", "user:bob", "view"),
                       ("share-visit", "bob", "view"), ("share-grant", "user:bob", "collaborate"),
                       ("share-visit", "bob", "collaborate"), ("share-revoke", "user:bob", None)], actions
    # only a server's own token may ask what its visitors may do: a narrower token is refused, on the record
    r = hub.api("POST", "/users/bob/tokens", json={"scopes": ["read:users!user=bob"], "note": "narrow"})
    assert r.status_code == 201, r.text
    r = hub.api("GET", "/ptjaas/sharing/mode/alice", token=r.json()["token"])
    assert r.status_code == 403, r.text
    assert any(e["action"] == "refused-access" and e.get("user") == "bob" and "server's own token" in e["message"]
               for e in map(json.loads, hub.audit_path.read_text().splitlines()))
    stop(hub, "alice")


@pytest.mark.browser
def test_ptjaas_pages_have_no_serious_accessibility_violation(embedded_only, hub):
    """Issue 25: axe-core in a real Chromium finds no serious or critical violation in what
    ptjaas adds to the hub's pages: the spawn form, the home page's sections, the sharing page,
    a user's usage page, and the admin's usage and audit pages."""
    from tests.axeutil import AXE, CHROMIUM, CHROMIUM_ARGS, violations

    if not Path(CHROMIUM).exists() or not AXE.exists():
        pytest.skip("needs Debian's chromium and npm's axe-core (./dev setup)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    for name in ("ada", "boss"):
        add_user(hub, name)
    pages = {
        "ada": [("/hub/spawn", [".ptjaas-options"]), ("/hub/home", ["#ptjaas-home-snapshots", "#ptjaas-sharing-link"]),
                ("/hub/ptjaas/sharing", ["#ptjaas-sharing"]), ("/hub/ptjaas/usage/me", ["main, .container"])],
        "boss": [("/hub/ptjaas/usage", ["main, .container"]), ("/hub/ptjaas/audit", ["main, .container"])],
    }
    found = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for user, urls in pages.items():
                page = browser.new_context().new_page()
                page.goto(f"{hub.url}/hub/login")
                page.fill("input[name=username]", user)
                page.locator("input[type=submit], button[type=submit]").first.click()
                page.wait_for_url(f"{hub.url}/hub/**")
                for url, parts in urls:
                    page.goto(f"{hub.url}{url}")
                    page.wait_for_load_state("networkidle")
                    found[url] = violations(page, parts)
        finally:
            browser.close()
    assert not any(found.values()), {url: v for url, v in found.items() if v}
