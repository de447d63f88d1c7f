"""Home claims against the embedded cluster, driven through the spawner's own claim step.

No hub here (the hub tests are in test_spawner_hub.py): a PtjaasSpawner for a stand-in
JupyterHub user finds, creates and grows claims on a real (embedded) Kubernetes API.
"""

import logging
from types import SimpleNamespace

import kubernetes
import pytest
from traitlets.config import Config


from tests.hubutil import spawner_owner
from tests.waiting import wait_for

from ptjaas_spawner.spawner import PtjaasSpawner  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def kube(module_cluster):
    api_client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield SimpleNamespace(core=kubernetes.client.CoreV1Api(api_client),
                          storage=kubernetes.client.StorageV1Api(api_client))
    api_client.close()


def make_spawner(module_cluster, monkeypatch, username, servername="", groups=(), **config):
    # kubernetes_asyncio reads $KUBECONFIG when imported; point it at this cluster
    import kubernetes_asyncio.config.kube_config as kc

    monkeypatch.setattr(kc, "KUBE_CONFIG_DEFAULT_LOCATION", str(module_cluster.kubeconfig_path))
    # KubeSpawner loads the client configuration once per process: not across clusters (another
    # module's tests may have loaded another cluster's)
    from kubespawner.clients import load_config

    load_config.cache_clear()
    c = Config()
    c.PtjaasSpawner.namespace = "default"
    c.PtjaasSpawner.audit_log_file = ""  # the record to the log only: never a file in the checkout
    for key, value in config.items():
        setattr(c.PtjaasSpawner, key, value)
    orm_spawner = SimpleNamespace(name=servername, user_options={}, server=None, state=None)
    spawner = PtjaasSpawner(config=c, orm_spawner=orm_spawner, **spawner_owner(username, groups))
    spawner.pvc_name = spawner._expand_user_properties(spawner.pvc_name_template)
    return spawner


def claim_names(kube):
    return sorted(c.metadata.name for c in kube.core.list_namespaced_persistent_volume_claim("default").items)


def make_claim(kube, name, owner, size="1Gi", storage_class=None):
    # as KubeSpawner makes it: the owner's real name in the hub.jupyter.org/username annotation
    body = {"metadata": {"name": name, "annotations": {"hub.jupyter.org/username": owner}}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                 "resources": {"requests": {"storage": size}}}}
    if storage_class:
        body["spec"]["storageClassName"] = storage_class
    kube.core.create_namespaced_persistent_volume_claim("default", body)
    read = kube.core.read_namespaced_persistent_volume_claim
    wait_for(lambda: read(name, "default").status.phase == "Bound", timeout=30, message=f"{name} bound")


def requested(kube, name):
    claim = kube.core.read_namespaced_persistent_volume_claim(name, "default")
    return claim.spec.resources.requests["storage"]


async def test_first_claim_and_remembered_name(module_cluster, monkeypatch, kube):
    s = make_spawner(module_cluster, monkeypatch, "first")
    await s.ensure_home_claim()
    assert "claim-first" in claim_names(kube)
    assert s.get_state()["ptjaas"]["home"] == {"claim": "claim-first", "size": "10Gi"}
    # a later template change does not orphan the claim: the state remembers it
    s2 = make_spawner(module_cluster, monkeypatch, "first", pvc_name_template="home-{username}")
    s2.load_state(s.get_state())
    await s2.ensure_home_claim()
    assert s2.pvc_name == "claim-first" and "home-first" not in claim_names(kube)


async def test_legacy_claims_are_reused(module_cluster, monkeypatch, kube):
    # KubeSpawner < 7 ('escape' scheme) name of user "dana@example.org"
    make_claim(kube, "claim-dana-40example-2eorg", "dana@example.org")
    s = make_spawner(module_cluster, monkeypatch, "dana@example.org")
    assert s._expand_user_properties(s.pvc_name_template) != "claim-dana-40example-2eorg"
    await s.ensure_home_claim()
    assert s.pvc_name == "claim-dana-40example-2eorg"
    assert not [n for n in claim_names(kube) if n.startswith("claim-dana") and n != s.pvc_name]
    # a named server's own KubeSpawner-default claim is kept for that server
    make_claim(kube, "claim-erik--project", "erik")
    s = make_spawner(module_cluster, monkeypatch, "erik", servername="project")
    await s.ensure_home_claim()
    assert s.pvc_name == "claim-erik--project" and "claim-erik" not in claim_names(kube)


async def test_claim_of_a_kubespawner_state_deleted_behind_our_back_is_recreated(
        module_cluster, monkeypatch, kube, caplog):
    # the state a plain KubeSpawner left (a hub switching to ptjaas) names a claim that is gone
    state = {"kubespawner_version": "7.1.0", "pod_name": "jupyter-gone", "pvc_name": "claim-gone-old"}
    s = make_spawner(module_cluster, monkeypatch, "gone")
    s.load_state(state)
    with caplog.at_level(logging.WARNING):
        await s.ensure_home_claim()
    assert "claim-gone-old" in claim_names(kube) and "claim-gone" not in claim_names(kube)
    assert "deleted outside ptjaas" in caplog.text
    assert any("recreated" in n for n in s._notes)


async def test_group_size_grows_claims_never_shrinks(module_cluster, monkeypatch, kube, caplog):
    make_claim(kube, "claim-grace", "grace", size="10Gi")
    s = make_spawner(module_cluster, monkeypatch, "grace", groups=["big"],
                     home_volume_size_by_group={"big": "25Gi", "small": "1Gi"})
    await s.ensure_home_claim()
    assert requested(kube, "claim-grace") == "25Gi"
    assert any("Growing your home volume from 10Gi to 25Gi" in n for n in s._notes)
    s = make_spawner(module_cluster, monkeypatch, "grace", groups=["small"])
    await s.ensure_home_claim()
    assert requested(kube, "claim-grace") == "25Gi"  # never shrinks

    # a class without expansion: the user keeps the old size, and is told why
    kube.storage.create_storage_class({
        "metadata": {"name": "fixed"}, "provisioner": "ptjaas.io/local-path", "allowVolumeExpansion": False})
    make_claim(kube, "claim-hugo", "hugo", size="10Gi", storage_class="fixed")
    s = make_spawner(module_cluster, monkeypatch, "hugo", groups=["big"],
                     home_volume_size_by_group={"big": "25Gi"})
    with caplog.at_level(logging.WARNING):
        await s.ensure_home_claim()
    assert requested(kube, "claim-hugo") == "10Gi"
    assert any("stays at 10Gi" in n for n in s._notes)
    assert "does not allow volume expansion" in caplog.text


async def test_refused_options_create_nothing_and_valid_ones_set_the_pod(module_cluster, monkeypatch, kube):
    from tornado import web

    images = {"py": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
    sizes = {"s": {"display_name": "S", "cpu_guarantee": "250m", "cpu_limit": 1, "mem_guarantee": "1Gi",
                   "mem_limit": "2Gi"},
             "gpu": {"display_name": "GPU", "cpu_guarantee": 1, "cpu_limit": 2, "mem_guarantee": "1Gi",
                     "mem_limit": "2Gi", "gpu": 2, "groups": ["ml"]}}
    s = make_spawner(module_cluster, monkeypatch, "ivy", images=images, sizes=sizes)
    s.user_options = {"image": "py", "size": "gpu"}
    with pytest.raises(web.HTTPError) as e:
        await s.load_user_options()
    assert e.value.status_code == 400 and "'gpu' is not available to you" in e.value.jupyterhub_message
    assert "claim-ivy" not in claim_names(kube)
    assert s.orm_spawner.user_options == {}  # the refused options are not kept as defaults

    s = make_spawner(module_cluster, monkeypatch, "ivy", groups=["ml"], images=images, sizes=sizes)
    s.user_options = {"size": "gpu"}
    await s.load_user_options()
    assert (s.image, s.cpu_guarantee, s.mem_limit) == ("example.org/py:1", 1.0, 2 * 2**30)
    assert s.extra_resource_limits == {"nvidia.com/gpu": "2"}
    # the running server holds the resolved choice (the culler and the quota read it there); the
    # hub's database keeps what the user asked for (a new choice on the form starts from it)
    assert s.user_options == {"image": "py", "version": "1", "size": "gpu"}
    assert s.orm_spawner.user_options == {}
    assert "claim-ivy" in claim_names(kube)


async def test_without_a_catalog_kubespawner_profiles_still_apply(module_cluster, monkeypatch, kube):
    profiles = [{"display_name": "Big", "slug": "big", "kubespawner_override": {"image": "example.org/big:1"}}]
    s = make_spawner(module_cluster, monkeypatch, "jon", profile_list=profiles, image="example.org/base:1")
    s.user_options = {"profile": "big"}
    await s.load_user_options()
    assert s.image == "example.org/big:1" and "claim-jon" in claim_names(kube)
    assert await s.get_options_form() != ""  # KubeSpawner's profile form


async def test_home_is_deleted_only_when_the_admin_asked(module_cluster, monkeypatch, kube):
    s = make_spawner(module_cluster, monkeypatch, "kim", delete_pvc=True)  # KubeSpawner's knob: ignored
    await s.ensure_home_claim()
    await s.delete_forever()
    assert "claim-kim" in claim_names(kube)
    s = make_spawner(module_cluster, monkeypatch, "kim", delete_home_volume=True)
    s.load_state({"ptjaas": {"home": {"claim": "claim-kim", "size": "10Gi"}}})
    await s.delete_forever()
    wait_for(lambda: "claim-kim" not in claim_names(kube), timeout=30, message="claim deleted")


async def test_a_refused_start_saves_no_team_placement(module_cluster, monkeypatch):
    """Issue 19: dave's start, refused before he joined team vision, saved the hub's namespace
    as where his home lives, and his first start in the team then made his home there. A
    refused start saves no placement; a user with no home anywhere gets it in the team's
    namespace."""
    from tornado import web

    from tests.test_start_failures import IMAGES, SIZES

    teams = {"vision": "jhub-team-{group}"}
    dave = make_spawner(module_cluster, monkeypatch, "dave", team_namespaces=teams, images=IMAGES, sizes=SIZES)
    dave.user_options = {"size": "enormous"}
    with pytest.raises(web.HTTPError):
        await dave.plan_start()
    state = dave.get_state()
    assert "ptjaas_team" not in state and "home" not in state.get("ptjaas", {}), state
    assert dave.namespace == "default"

    # the hub restarts (the state comes from its database); dave has joined vision meanwhile
    dave = make_spawner(module_cluster, monkeypatch, "dave", groups=["vision"], team_namespaces=teams,
                        images=IMAGES, sizes=SIZES)
    dave.load_state(state)
    await dave.place_in_team_namespace()
    assert dave.namespace == "jhub-team-vision"
