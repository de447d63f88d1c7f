"""The ptjaas spawner through a real JupyterHub on the embedded cluster.

Each test starts a real hub (real configurable-http-proxy) whose pods run a real
jupyterhub-singleuser; the cluster is inspected with the official Kubernetes client.
"""

import json
import re
import textwrap

import pytest
import requests


from tests.hubutil import server, start, start_ready, stop
from tests.waiting import wait_for

from ptjaas_spawner.quantity import parse_quantity  # noqa: E402

pytestmark = [pytest.mark.hub, pytest.mark.timeout(420)]  # a guard: several hub restarts on a loaded machine
# on the embedded cluster and on a real kube-apiserver with z2jh's hub rights (tests/conftest.py)
BACKENDS = ("embedded", "real")

CATALOG = {
    "python": {
        "display_name": "Python",
        "description": "Scientific Python",
        "versions": {
            "2024.05": {"image": "example.org/python:2024.05", "default": True},
            "2023.01": {"image": "example.org/python:2023.01", "deprecated": "ends in June"},
        },
    },
    "r": {"display_name": "R", "versions": {"4.4": {"image": "example.org/r:4.4"}}},
    "cuda": {
        "display_name": "CUDA",
        "sizes": ["gpu"],
        "groups": ["gpu-users"],
        "versions": {"12": {"image": "example.org/cuda:12"}},
    },
}
SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
              "mem_guarantee": "256Mi", "mem_limit": "1Gi"},
    "medium": {"display_name": "Medium", "cpu_guarantee": "500m", "cpu_limit": 2,
               "mem_guarantee": "512Mi", "mem_limit": "2Gi"},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 1, "cpu_limit": 4, "mem_guarantee": "1Gi",
            "mem_limit": "4Gi", "gpu": 1, "groups": ["gpu-users"],
            "node_selector": {"kubernetes.io/hostname": "ptjaas-node-1"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}


def hub_config(images=CATALOG, sizes=SIZES, extra=""):
    return textwrap.dedent(
        f"""
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.load_groups = {{"gpu-users": {{"users": ["gina"]}}}}
        c.PtjaasSpawner.images = {images!r}
        c.PtjaasSpawner.sizes = {sizes!r}
        """
    ) + textwrap.dedent(extra)


@pytest.fixture(scope="module")
def kube(module_cluster):
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield kubernetes.client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture(scope="module")
def hub(module_cluster, module_hub_factory):
    """The module's hub with the catalog as it is; the tests that need other settings start their
    own. The helm-upgrade test, last, restarts it with new settings."""
    return module_hub_factory(hub_config(), cluster=module_cluster)


def claims(kube):
    return {c.metadata.name: c for c in kube.list_namespaced_persistent_volume_claim("default").items}


def pods(kube):
    """Pods as plain JSON dicts (quantities compared by value: a real API server returns them as
    canonical strings, the embedded one may return the numbers KubeSpawner sent)."""
    r = kube.list_namespaced_pod("default", _preload_content=False)
    return {p["metadata"]["name"]: p for p in json.loads(r.data)["items"]}


def qty(value):
    return parse_quantity(value)


def add_users(hub, *names):
    r = hub.api("POST", "/users", json={"usernames": list(names)})
    assert r.status_code in (201, 409), r.text


def user_token(hub, user):
    r = hub.api("POST", f"/users/{user}/tokens", json={"note": "test"})
    r.raise_for_status()
    return r.json()["token"]


def contents(hub, user, token, path, name="", content=None):
    url = hub.url.rstrip("/") + f"/user/{user}/" + (f"{name}/" if name else "") + f"api/contents/{path}"
    headers = {"Authorization": f"token {token}"}
    if content is None:
        return requests.get(url, headers=headers, timeout=30)
    return requests.put(url, headers=headers, timeout=30,
                        json={"type": "file", "format": "text", "content": content})


def spawner_state(hub, user, name=""):
    r = hub.api("GET", f"/users/{user}", params={"include_stopped_servers": "1"})
    r.raise_for_status()
    return (r.json()["servers"].get(name) or {}).get("state") or {}


def test_home_claim_pod_spec_and_data_survive_image_and_size_changes(module_cluster, hub_factory, kube):
    shared = [{"claim": "datasets", "mount_path": "/data/datasets", "read_only": True},
              {"claim": "team-gpu", "mount_path": "/data/team", "groups": ["gpu-users"]}]
    kube.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "datasets"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    hub = hub_factory(hub_config(extra=f"c.PtjaasSpawner.shared_volumes = {shared!r}\n"), cluster=module_cluster)
    add_users(hub, "alice")
    start_ready(hub, "alice", {"image": "python", "version": "2023.01", "size": "small"})

    claim = claims(kube)["claim-alice"]
    assert claim.spec.resources.requests["storage"] == "10Gi"
    assert claim.spec.access_modes == ["ReadWriteOnce"]
    assert claim.metadata.annotations["ptjaas.io/username"] == "alice"
    pod = pods(kube)["jupyter-alice"]
    nb = pod["spec"]["containers"][0]
    assert nb["image"] == "example.org/python:2023.01"
    limits, requests_ = nb["resources"]["limits"], nb["resources"]["requests"]
    assert (qty(limits["cpu"]), qty(limits["memory"])) == (1, 2**30)
    assert (qty(requests_["cpu"]), qty(requests_["memory"])) == (qty("100m"), 256 * 2**20)
    labels = pod["metadata"]["labels"]
    assert labels["ptjaas.io/image"] == "python" and labels["ptjaas.io/version"] == "2023.01"
    assert labels["ptjaas.io/size"] == "small" and labels["ptjaas.io/user"] == "alice"
    psc, csc = pod["spec"]["securityContext"], nb["securityContext"]
    assert psc["fsGroup"] == 100 and psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert csc["runAsUser"] == 1000 and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]} and csc["runAsNonRoot"] is True
    home = next(v for v in pod["spec"]["volumes"] if v["name"] == "home")
    assert home["persistentVolumeClaim"]["claimName"] == "claim-alice"
    assert {"name": "home", "mountPath": "/home/jovyan"} in nb["volumeMounts"]
    shared_claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                     if v["name"].startswith("shared-")]
    assert shared_claims == ["datasets"]  # team-gpu is for another group
    assert {"name": "shared-0", "mountPath": "/data/datasets", "readOnly": True} in nb["volumeMounts"]

    token = user_token(hub, "alice")
    wait_for(lambda: contents(hub, "alice", token, "").status_code == 200, timeout=30, message="alice")
    r = contents(hub, "alice", token, "kept.txt", content="data that must survive")
    assert r.status_code in (200, 201), r.text
    stop(hub, "alice")
    assert "claim-alice" in claims(kube)  # stop never deletes the home

    # another image and size: same home
    start_ready(hub, "alice", {"image": "r", "size": "medium"})
    nb = pods(kube)["jupyter-alice"]["spec"]["containers"][0]
    assert nb["image"] == "example.org/r:4.4" and qty(nb["resources"]["limits"]["cpu"]) == 2
    r = contents(hub, "alice", token, "kept.txt")
    assert r.status_code == 200 and r.json()["content"] == "data that must survive"

    # the server model records the resolved choice, the state the exact image the pod ran
    model = server(hub, "alice")
    assert model["user_options"] == {"image": "r", "version": "4.4", "size": "medium"}
    last = model["state"]["ptjaas"]["last"]
    assert last["image_ref"] == "example.org/r:4.4" and last["size"] == "medium"
    assert last["image_digest"].startswith("example.org/r@sha256:")

    # a named server mounts the same home
    start_ready(hub, "alice", {"image": "python"}, name="second")
    r = contents(hub, "alice", token, "kept.txt", name="second")
    assert r.status_code == 200 and r.json()["content"] == "data that must survive"
    assert sorted(n for n in claims(kube) if "alice" in n) == ["claim-alice"]

    # a claim deleted behind ptjaas's back is recreated at the next start, not left to hang
    stop(hub, "alice", "second")
    stop(hub, "alice")
    kube.delete_namespaced_persistent_volume_claim("claim-alice", "default")
    wait_for(lambda: "claim-alice" not in claims(kube), timeout=30, message="claim deleted")
    start_ready(hub, "alice", {"image": "python", "size": "small"})
    assert claims(kube)["claim-alice"].status.phase == "Bound"
    assert "claim-alice of alice was deleted outside ptjaas" in hub.logs()


@pytest.mark.backends("embedded")  # refused by the hub before any API call: no API-server behaviour to check twice
def test_forged_requests_are_refused_and_create_nothing(hub, kube):
    add_users(hub, "mallory")
    for options, words in [
        ({"image": "cuda", "size": "gpu"}, "not available to you"),
        ({"image": "python", "size": "gpu"}, "not available to you"),
        ({"image": "python", "version": "1999.1"}, "does not exist"),
        ({"image": "python", "size": "small", "mem_limit": "1Ti"}, "Unknown server option"),
    ]:
        r = start(hub, "mallory", options)
        assert r.status_code == 400, (options, r.status_code, r.text)
        assert words in r.json()["message"], r.text

    session = hub.session("mallory")
    spawn_url = hub.url.rstrip("/") + "/hub/spawn/mallory"
    page = session.get(spawn_url)
    xsrf = session.cookies.get("_xsrf") or ""
    r = session.post(spawn_url, data={"_xsrf": xsrf, "choice": "new", "image": "python",
                                      "version--python": "2024.05", "size": "gpu"})
    assert "size &#39;gpu&#39; is not available to you" in r.text or "size 'gpu' is not available" in r.text
    assert 'name="image"' in r.text  # the form is shown again, with the error
    assert "mallory" not in "".join(claims(kube)) and "mallory" not in "".join(pods(kube))
    assert server(hub, "mallory") is None
    assert page.status_code == 200


@pytest.mark.backends("embedded")  # the form only: no API call
def test_entitled_and_other_users_see_different_forms(hub):
    plain = hub.session("paula").get(hub.url.rstrip("/") + "/hub/spawn").text
    gpu = hub.session("gina").get(hub.url.rstrip("/") + "/hub/spawn").text
    for page in (plain, gpu):
        assert 'value="python"' in page and 'value="small"' in page
        assert "ends in June" in page  # deprecation shown
    assert 'value="cuda"' not in plain and 'value="gpu"' not in plain
    assert 'value="cuda"' in gpu and 'value="gpu"' in gpu


def test_claim_that_cannot_bind_fails_fast_with_its_event(module_cluster, hub_factory, kube):
    hub = hub_factory(hub_config(extra='c.PtjaasSpawner.home_volume_storage_class = "gold"\n'),
                      cluster=module_cluster)
    add_users(hub, "erin")
    r = start(hub, "erin", {"image": "python"})
    message = r.text if r.status_code in (201, 202) else r.json()["message"]
    if r.status_code in (201, 202):  # still starting when the API answered: read the progress
        url = hub.url.rstrip("/") + "/hub/api/users/erin/server/progress"
        with requests.get(url, headers={"Authorization": f"token {user_token(hub, 'erin')}"},
                          stream=True, timeout=60) as resp:
            for line in resp.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("failed") or event.get("ready"):
                        message = event.get("message", "")
                        break
    assert 'storageclass.storage.k8s.io "gold" not found' in message, message
    wait_for(lambda: "jupyter-erin" not in pods(kube), timeout=30, message="failed pod removed")
    assert "claim-erin" not in claims(kube)  # it never bound and held no data


def test_hub_refuses_to_start_with_an_invalid_catalog(hub_factory):
    bad = dict(SIZES, **{"gpu-large": dict(SIZES["gpu"], gpu_resource="")})
    hub = hub_factory(hub_config(sizes=bad), start=False)
    hub.start(wait=False)
    assert hub.wait_exit(60) != 0
    assert "PtjaasSpawner.sizes['gpu-large']: a GPU size needs gpu_resource" in hub.logs()


def test_same_as_last_time_and_a_helm_upgrade_keep_claims_and_servers(hub, kube):
    add_users(hub, "carol", "dave")
    start_ready(hub, "carol", {})  # defaults: python 2024.05, small
    token = user_token(hub, "carol")
    wait_for(lambda: contents(hub, "carol", token, "").status_code == 200, timeout=30, message="carol")
    assert contents(hub, "carol", token, "notes.txt", content="mine").status_code in (200, 201)
    stop(hub, "carol")
    start_ready(hub, "dave", {"image": "r", "size": "small"})
    dave_pod = pods(kube)["jupyter-dave"]["metadata"]["uid"]

    # upgrade 1: a new default version and bigger homes
    images = json.loads(json.dumps(CATALOG))
    images["python"]["versions"]["2024.05"].pop("default")
    images["python"]["versions"]["2025.01"] = {"image": "example.org/python:2025.01", "default": True}
    hub.restart(hub_config(images=images, extra='c.PtjaasSpawner.home_volume_size = "20Gi"\n'))
    assert server(hub, "dave")["ready"] and pods(kube)["jupyter-dave"]["metadata"]["uid"] == dave_pod

    session = hub.session("carol")
    spawn_url = hub.url.rstrip("/") + "/hub/spawn/carol"
    page = session.get(spawn_url).text
    assert "Same as last time: Python 2024.05, size Small" in page
    assert '<option value="2025.01" selected>' in page  # a new choice starts from the new default
    shown = dict(re.findall(r'<input type="hidden" name="(shown-[a-z]+)" value="([^"]*)">', page))
    assert shown == {"shown-image": "python", "shown-version": "2025.01", "shown-size": "small"}
    r = session.post(spawn_url, data={"_xsrf": session.cookies.get("_xsrf") or "", "choice": "last",
                                      "image": "python", "version--python": "2025.01", "size": "small",
                                      **shown})
    assert r.status_code == 200, r.text[:2000]
    wait_for(lambda: (server(hub, "carol") or {}).get("ready"), timeout=120, message="carol ready")
    assert pods(kube)["jupyter-carol"]["spec"]["containers"][0]["image"] == "example.org/python:2024.05"
    assert claims(kube)["claim-carol"].spec.resources.requests["storage"] == "20Gi"  # grown
    assert "Growing home claim claim-carol from 10Gi to 20Gi" in hub.logs()
    wait_for(lambda: contents(hub, "carol", token, "").status_code == 200, timeout=30, message="carol")
    assert contents(hub, "carol", token, "notes.txt").json()["content"] == "mine"
    stop(hub, "carol")

    # upgrade 2: the size carol used is renamed: she is told, and chooses again
    sizes = {("s" if k == "small" else k): v for k, v in SIZES.items()}
    hub.restart(hub_config(images=images, sizes=sizes, extra='c.PtjaasSpawner.home_volume_size = "20Gi"\n'))
    assert server(hub, "dave")["ready"] and pods(kube)["jupyter-dave"]["metadata"]["uid"] == dave_pod
    session = hub.session("carol")
    page = session.get(spawn_url).text
    assert "The size you used last time (&#x27;small&#x27;) no longer exists" in page
    assert 'value="last"' not in page
    r = start(hub, "carol", {"same_as_last": True})
    assert r.status_code == 400 and "no longer exists" in r.json()["message"]
    start_ready(hub, "carol", {"image": "python", "size": "s"})
    assert contents(hub, "carol", token, "notes.txt").json()["content"] == "mine"
    assert {"claim-carol", "claim-dave"} <= set(claims(kube))
