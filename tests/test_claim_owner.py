"""Whose home is a claim: a claim is mounted only when its owner is proven (issue 9, point 1).

KubeSpawner's slug schemes give different users the same claim names (its old ``escape`` name of
``dr.who`` is ``dr-2ewho``, the ``safe`` name of a user called ``dr-2ewho``). ptjaas looks for
legacy names, so it must never adopt a claim by its name alone. Each row below runs in its own
namespace of the embedded cluster, with claims made exactly as plain KubeSpawner 7 makes them
(its own ``get_pvc_manifest``), in each slug scheme, and starts the two users in both orders.
"""

import logging
from types import SimpleNamespace

import kubernetes
import pytest
from kubespawner import KubeSpawner
from traitlets.config import Config


from ptjaas_spawner.homeclaim import ClaimOwnerError
from ptjaas_spawner.homevolume import claim_owner, home_claim_verdict
from ptjaas_spawner.spawner import PtjaasSpawner

from tests.hubutil import spawner_owner

pytestmark = pytest.mark.timeout(180)

# (pvc_name_template, slug_scheme) of the KubeSpawner that made the legacy claim
SCHEMES = {
    # KubeSpawner 6.x: escaped names, template claim-{username}--{servername}
    "kubespawner-6": ("claim-{username}--{servername}", "escape"),
    # KubeSpawner 7.x defaults, and 7.x kept on the old scheme (slug_scheme = "escape")
    "kubespawner-7-safe": ("claim-{user_server}", "safe"),
    "kubespawner-7-escape": ("claim-{user_server}", "escape"),
}
# pairs of users whose names collide in one scheme or another, or differ only in characters
# that the slug schemes replace
PAIRS = [
    ("dr.who", "dr-2ewho"),  # escape("dr.who") == safe("dr-2ewho")
    ("mAry", "m-41ry"),  # upper case: escape("mAry") == "m-41ry"
    ("josé", "jos-c3-a9"),  # unicode: escape("josé") == "jos-c3-a9"
    ("dr.who", "dr_who"),  # differ only in a character both schemes replace
]


@pytest.fixture(scope="module")
def kube(module_cluster):
    api_client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    yield kubernetes.client.CoreV1Api(api_client)
    api_client.close()


_namespaces = iter(range(10**6))


@pytest.fixture
def ns(kube):
    name = f"owners-{next(_namespaces)}"
    kube.create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def kubeconfig(module_cluster, monkeypatch):
    # kubernetes_asyncio reads $KUBECONFIG when imported; point it at this cluster
    import kubernetes_asyncio.config.kube_config as kc
    from kubespawner.clients import load_config

    monkeypatch.setattr(kc, "KUBE_CONFIG_DEFAULT_LOCATION", str(module_cluster.kubeconfig_path))
    # KubeSpawner loads the client configuration once per process: not across clusters
    load_config.cache_clear()
    yield
    load_config.cache_clear()


def _spawner(cls, ns, username, state=None, **config):
    c = Config()
    section = getattr(c, cls.__name__)
    section.namespace = ns
    if hasattr(cls, "audit_log_file"):
        section.audit_log_file = ""  # the record (a refused claim is on it) to the log only: no file in the checkout
    for key, value in config.items():
        setattr(section, key, value)
    orm_spawner = SimpleNamespace(name="", user_options={}, server=None, state=None)
    spawner = cls(config=c, orm_spawner=orm_spawner, **spawner_owner(username))
    spawner.pvc_name = spawner._expand_user_properties(spawner.pvc_name_template)
    if state is not None:
        spawner.load_state(state)
    return spawner


def kubespawner_claim(kube, ns, username, scheme):
    """The home claim plain KubeSpawner makes for ``username`` (its own manifest); its name."""
    template, slug_scheme = SCHEMES[scheme]
    ks = _spawner(KubeSpawner, ns, username, pvc_name_template=template, slug_scheme=slug_scheme,
                  storage_capacity="1Gi")
    body = ks.api.api_client.sanitize_for_serialization(ks.get_pvc_manifest())
    kube.create_namespaced_persistent_volume_claim(ns, body)
    return ks.pvc_name


def claims(kube, ns):
    return {c.metadata.name: c for c in kube.list_namespaced_persistent_volume_claim(ns).items}


async def start_home(ns, username):
    """ptjaas's claim step for a user with no remembered claim (a hub just switched to
    ptjaas, or a first start): the claim name it mounts, or the refusal."""
    s = _spawner(PtjaasSpawner, ns, username)
    try:
        await s.ensure_home_claim()
    except ClaimOwnerError as e:
        return e
    return s.pvc_name


def ptjaas_name(ns, username):
    s = _spawner(PtjaasSpawner, ns, username)
    return s._expand_user_properties(s.pvc_name_template)


@pytest.mark.parametrize("first", ["a", "b"])
@pytest.mark.parametrize("a,b", PAIRS + [(b, a) for a, b in PAIRS])
async def test_fresh_ptjaas_hub_gives_each_user_their_own_claim(kube, ns, kubeconfig, a, b, first):
    order = [a, b] if first == "a" else [b, a]
    got = {}
    for user in order:
        got[user] = await start_home(ns, user)
        assert isinstance(got[user], str), (user, got[user])
    assert got[a] != got[b]
    found = claims(kube, ns)
    assert sorted(found) == sorted(got.values())
    for user, name in got.items():
        assert found[name].metadata.annotations["hub.jupyter.org/username"] == user
    # and again (a second start of each, state not remembered): still their own
    for user in reversed(order):
        assert await start_home(ns, user) == got[user]


@pytest.mark.parametrize("first", ["legacy", "new"])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("legacy,new", PAIRS + [(b, a) for a, b in PAIRS])
async def test_upgrade_from_kubespawner_keeps_each_user_on_their_own_claim(
        kube, ns, kubeconfig, caplog, legacy, new, scheme, first):
    """``legacy`` has a home made by plain KubeSpawner (whose state remembered no claim name,
    as before KubeSpawner 7); ``new`` is a user whose names may collide with it."""
    old = kubespawner_claim(kube, ns, legacy, scheme)
    uid = claims(kube, ns)[old].metadata.uid
    new_name = ptjaas_name(ns, new)
    order = [legacy, new] if first == "legacy" else [new, legacy]
    got = {}
    with caplog.at_level(logging.INFO):
        for user in order:
            before = set(claims(kube, ns))
            got[user] = await start_home(ns, user)
            if isinstance(got[user], ClaimOwnerError):
                assert set(claims(kube, ns)) == before  # nothing created (or deleted)
    assert got[legacy] == old  # the legacy user keeps their home
    if new_name == old:
        # the new user's home name is taken by the legacy user's claim: refused, not adopted
        err = got[new]
        assert isinstance(err, ClaimOwnerError), got
        assert old in str(err) and legacy not in str(err)  # names the claim, not its owner
        assert f"Refusing to start a server of {new!r}: existing claim {old}" in caplog.text
        assert f"hub.jupyter.org/username={legacy!r}" in caplog.text
    else:
        assert got[new] == new_name
        assert claims(kube, ns)[new_name].metadata.annotations["hub.jupyter.org/username"] == new
    found = claims(kube, ns)
    assert found[old].metadata.uid == uid  # never replaced
    assert found[old].metadata.annotations["hub.jupyter.org/username"] == legacy


async def test_claim_without_owner_annotation_is_never_mounted(kube, ns, kubeconfig, caplog):
    name = ptjaas_name(ns, "olga")
    kube.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    with caplog.at_level(logging.WARNING):
        err = await start_home(ns, "olga")
    assert isinstance(err, ClaimOwnerError)
    assert name in err.jupyterhub_message and "contact your administrator" in err.jupyterhub_message
    assert f"existing claim {name} is not mounted as their home: it has no owner annotation" in caplog.text
    assert "kubectl annotate pvc claim-olga hub.jupyter.org/username=olga" in caplog.text
    assert sorted(claims(kube, ns)) == [name]
    # the admin follows the advice: now it is her home
    kube.patch_namespaced_persistent_volume_claim(
        name, ns, {"metadata": {"annotations": {"hub.jupyter.org/username": "olga"}}})
    assert await start_home(ns, "olga") == name

    # a legacy-named claim without annotation: not mounted either (its owner cannot be told)
    legacy = "claim-pe-2eter"  # KubeSpawner's escape name of pe.ter
    kube.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": legacy},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    err = await start_home(ns, "pe.ter")
    assert isinstance(err, ClaimOwnerError) and legacy in str(err)
    assert sorted(claims(kube, ns)) == sorted([name, legacy])


async def test_remembered_claim_is_used_without_a_look(kube, ns, kubeconfig):
    # the name in the user's own state is proof: KubeSpawner 7 state, and ptjaas state
    old = kubespawner_claim(kube, ns, "dr.who", "kubespawner-6")
    s = _spawner(PtjaasSpawner, ns, "dr.who",
                 state={"kubespawner_version": "7.1.0", "pvc_name": old})
    await s.ensure_home_claim()
    assert s.pvc_name == old
    s2 = _spawner(PtjaasSpawner, ns, "dr.who", state=s.get_state())
    await s2.ensure_home_claim()
    assert s2.pvc_name == old


def test_claim_owner_evidence():
    def pvc(annotations=None, labels=None):
        return {"metadata": {"name": "c", "annotations": annotations, "labels": labels}}

    assert claim_owner(pvc({"hub.jupyter.org/username": "dr.who"}), "dr.who")[0] == "mine"
    assert claim_owner(pvc({"hub.jupyter.org/username": "dr.who"}), "dr-2ewho")[0] == "other"
    assert claim_owner(pvc({"ptjaas.io/username": "Ann"}), "ann")[0] == "other"  # exact names
    both = {"hub.jupyter.org/username": "ann", "ptjaas.io/username": "bob"}
    assert claim_owner(pvc(both), "ann")[0] == "unknown" and claim_owner(pvc(both), "bob")[0] == "unknown"
    assert claim_owner(pvc(), "ann")[0] == "unknown"
    # ptjaas's label proves only what it cannot confuse: the name itself, not a hashed form
    assert claim_owner(pvc(labels={"ptjaas.io/user": "ann"}), "ann")[0] == "mine"
    assert claim_owner(pvc(labels={"ptjaas.io/user": "ann"}), "bob")[0] == "other"
    hashed = "dr-who-0a1b2c3d"  # label_value("dr.who") has this shape; a user may be named so
    assert claim_owner(pvc(labels={"ptjaas.io/user": hashed}), hashed)[0] == "unknown"
    # the KubeSpawner label is a slug: no proof
    assert claim_owner(pvc(labels={"hub.jupyter.org/username": "ann"}), "ann")[0] == "unknown"

    mine = pvc({"hub.jupyter.org/username": "ann"})
    theirs = pvc({"hub.jupyter.org/username": "bob"})
    assert home_claim_verdict("claim-x", theirs, "ann", "claim-x", "claim-ann")[0] == "use"  # remembered
    assert home_claim_verdict("claim-ann", mine, "ann", None, "claim-ann")[0] == "use"
    assert home_claim_verdict("claim-legacy", theirs, "ann", None, "claim-ann")[0] == "skip"
    assert home_claim_verdict("claim-ann", theirs, "ann", None, "claim-ann")[0] == "refuse"
    assert home_claim_verdict("claim-legacy", pvc(), "ann", None, "claim-ann")[0] == "refuse"


@pytest.mark.hub
async def test_hub_refuses_the_start_and_tells_user_and_admin(module_cluster, hub_factory, kube, kubeconfig):
    """Through a real hub: KubeSpawner 6 left dr.who's home at claim-dr-2ewho; the new user
    dr-2ewho is refused (409, a message naming the claim), and nothing changes."""
    images = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
    sizes = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                       "mem_guarantee": "64Mi", "mem_limit": "1Gi"}}
    old = kubespawner_claim(kube, "default", "dr.who", "kubespawner-6")
    hub = hub_factory(f"c.PtjaasSpawner.images = {images!r}\nc.PtjaasSpawner.sizes = {sizes!r}\n",
                      cluster=module_cluster)
    hub.api("POST", "/users", json={"usernames": ["dr-2ewho"]})
    before = {n: c.metadata.uid for n, c in claims(kube, "default").items()}
    r = hub.api("POST", "/users/dr-2ewho/server", json={})
    assert r.status_code == 409, r.text
    message = r.json()["message"]
    assert f"a storage claim named {old} exists where your home volume belongs" in message
    assert "dr.who" not in message
    assert f"Refusing to start a server of 'dr-2ewho': existing claim {old}" in hub.logs()
    assert {n: c.metadata.uid for n, c in claims(kube, "default").items()} == before
    assert not hub.api("GET", "/users/dr-2ewho").json()["servers"]
