"""The z2jh Helm values in helm-values/: schema-valid alone and composed, and sensible.

Helm validates the *merged* values (chart defaults, then each ``-f`` file in order) against the
chart's values.schema.json; these tests do the same with the schema of the chart version the
values target (shared reference data, see tests/deploy_support.py).
"""

import copy
import ipaddress
import re

import jsonschema
import pytest

from ptjaas_spawner import configcheck

from tests.deploy_support import (
    ALL_VALUES,
    BASE,
    CHART_APP_VERSION,
    CHART_VERSION,
    MANIFESTS,
    OVERLAYS,
    compose,
    compositions,
    load_yaml,
    load_yaml_docs,
    require_schema,
)


@pytest.fixture(scope="module")
def z2jh():
    schema = load_yaml(require_schema("z2jh", "values.schema.yaml"))
    defaults = load_yaml(require_schema("z2jh", "values.yaml"))
    validator = jsonschema.Draft7Validator(schema)
    return validator, defaults


def _errors(validator, values):
    return sorted(
        f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
        for e in validator.iter_errors(values)
    )


@pytest.mark.parametrize("name,files", compositions(), ids=[n for n, _ in compositions()])
def test_values_validate_against_the_chart_schema(z2jh, name, files):
    validator, defaults = z2jh
    values = compose(*files, chart_defaults=defaults)
    assert _errors(validator, values) == []


def test_schema_check_catches_a_misspelt_key(z2jh):
    """The validation above is not vacuous: a typo in a values file is reported."""
    validator, defaults = z2jh
    values = compose(BASE, OVERLAYS["metallb"], chart_defaults=defaults)
    bad = copy.deepcopy(values)
    bad["proxy"]["service"]["anotations"] = bad["proxy"]["service"].pop("annotations")
    assert any("anotations" in e for e in _errors(validator, bad))
    bad = copy.deepcopy(values)
    bad["singleuser"]["storage"]["type"] = "nfs"
    assert any(e.startswith("singleuser.storage.type") for e in _errors(validator, bad))


def test_values_name_the_pinned_chart_version():
    text = BASE.read_text()
    assert f"version {CHART_VERSION}" in text and f'appVersion "{CHART_APP_VERSION}"' in text
    assert f"--version {CHART_VERSION}" in text
    base = load_yaml(BASE)
    assert base["hub"]["image"]["tag"].endswith(f"-z2jh{CHART_VERSION}")


WITH_BASE = [(n, f) for n, f in compositions() if BASE in f]


@pytest.mark.parametrize("name,files", WITH_BASE, ids=[n for n, _ in WITH_BASE])
def test_z2jh_storage_does_not_fight_ptjaas_home_volumes(z2jh, name, files):
    _, defaults = z2jh
    values = compose(*files, chart_defaults=defaults)
    assert values["singleuser"]["storage"]["type"] == "none"
    # ptjaas, not KubeSpawner's delete_pvc, decides whether a home claim may ever be deleted
    assert values["hub"]["config"]["KubeSpawner"]["delete_pvc"] is False
    assert values["hub"]["config"]["PtjaasSpawner"]["delete_home_volume"] is False


def test_spawner_and_authenticator_selected_by_entry_point_name():
    hub_config = load_yaml(BASE)["hub"]["config"]
    assert hub_config["JupyterHub"]["spawner_class"] == "ptjaas"
    assert hub_config["JupyterHub"]["authenticator_class"] == "ptjaas"


def test_production_defaults(z2jh):
    _, defaults = z2jh
    values = compose(*ALL_VALUES, chart_defaults=defaults)
    assert values["hub"]["networkPolicy"]["enabled"] is True
    assert values["singleuser"]["networkPolicy"]["enabled"] is True
    assert values["singleuser"]["networkPolicy"]["egressAllowRules"]["cloudMetadataServer"] is False
    assert values["singleuser"]["cloudMetadata"]["blockWithIptables"] is True
    assert 0 < values["hub"]["concurrentSpawnLimit"] <= 64
    resources = values["hub"]["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    assert values["proxy"]["service"]["type"] == "LoadBalancer"
    # z2jh's jupyterhub-idle-culler is off; ptjaas's culler (fragment 50) replaces it
    assert values["cull"]["enabled"] is False
    assert values["custom"]["ptjaas"]["culler"]["enabled"] is True


def _catalog_refs(values):
    images = values["hub"]["config"]["PtjaasSpawner"]["images"]
    return {v["image"] for image in images.values() for v in image["versions"].values()}


def _prepulled(values):
    refs = {f"{values['singleuser']['image']['name']}:{values['singleuser']['image']['tag']}"}
    for entry in (values["prePuller"].get("extraImages") or {}).values():
        refs.add(f"{entry['name']}:{entry['tag']}")
    return refs


@pytest.mark.parametrize("files", [[BASE], ALL_VALUES, [BASE, OVERLAYS["gpu"]]], ids=["base", "all", "gpu"])
def test_every_catalog_image_is_pre_pulled(z2jh, files):
    _, defaults = z2jh
    values = compose(*files, chart_defaults=defaults)
    assert values["prePuller"]["hook"]["enabled"] and values["prePuller"]["continuous"]["enabled"]
    assert _catalog_refs(values) <= _prepulled(values)
    # and the image z2jh starts when no choice is made is the catalog's default version
    images = values["hub"]["config"]["PtjaasSpawner"]["images"]
    defaults_refs = {
        v["image"] for image in images.values() for v in image["versions"].values() if v.get("default")
    }
    singleuser = values["singleuser"]["image"]
    assert f"{singleuser['name']}:{singleuser['tag']}" in defaults_refs


def test_catalog_passes_the_spawners_own_config_check(z2jh):
    _, defaults = z2jh
    for name, files in compositions():
        values = compose(*files, chart_defaults=defaults)
        spawner = (values["hub"].get("config") or {}).get("PtjaasSpawner") or {}
        if "images" not in spawner or "sizes" not in spawner:
            continue  # an overlay alone carries no complete catalog
        configcheck.check_sizes(spawner["sizes"])
        configcheck.check_images(spawner["images"], spawner["sizes"])


def test_gpu_sizes_land_on_gpu_nodes(z2jh):
    _, defaults = z2jh
    values = compose(BASE, OVERLAYS["gpu"], chart_defaults=defaults)
    spawner = values["hub"]["config"]["PtjaasSpawner"]
    gpu_sizes = {k: s for k, s in spawner["sizes"].items() if s.get("gpu", 0) > 0}
    assert gpu_sizes, "the GPU overlay adds GPU sizes"
    for key, size in gpu_sizes.items():
        assert size["node_selector"], key
        assert any(t["key"] == size.get("gpu_resource", "nvidia.com/gpu") for t in size["tolerations"]), key
        assert size["cull_idle_timeout"] <= 3600, f"{key}: GPUs should be freed within the hour"
    # CPU sizes from the base are kept (Helm merges maps), and the CUDA image is GPU-only
    assert {"small", "medium"} <= set(spawner["sizes"])
    cuda = spawner["images"]["pytorch-cuda"]
    assert set(cuda["sizes"]) <= set(gpu_sizes)
    # the pre-puller reaches the tainted GPU nodes
    tolerated = {t["key"] for t in values["prePuller"]["extraTolerations"]}
    assert all(t["key"] in tolerated for s in gpu_sizes.values() for t in s["tolerations"])


def test_metallb_annotation_points_into_the_pool(z2jh):
    _, defaults = z2jh
    values = compose(BASE, OVERLAYS["metallb"], chart_defaults=defaults)
    annotations = values["proxy"]["service"]["annotations"]
    # the metallb.io/ prefix matches the metallb.io/v1beta1 CRDs the manifests use
    assert "metallb.io/loadBalancerIPs" in annotations
    assert not any(k.startswith("metallb.universe.tf/") for k in annotations)
    assert not values["proxy"]["service"].get("loadBalancerIP"), "deprecated field left unset"
    (pool,) = load_yaml_docs(MANIFESTS / "metallb-ipaddresspool.yaml")
    assert annotations["metallb.io/address-pool"] == pool["metadata"]["name"]
    wanted = [ipaddress.ip_address(a.strip()) for a in annotations["metallb.io/loadBalancerIPs"].split(",")]
    ranges = []
    for entry in pool["spec"]["addresses"]:
        if "-" in entry:
            lo, hi = (ipaddress.ip_address(x.strip()) for x in entry.split("-"))
        else:
            net = ipaddress.ip_network(entry, strict=False)
            lo, hi = net[0], net[-1]
        ranges.append((lo, hi))
    for address in wanted:
        assert any(lo <= address <= hi for lo, hi in ranges), f"{address} is outside the pool"
    (l2,) = load_yaml_docs(MANIFESTS / "metallb-l2advertisement.yaml")
    assert pool["metadata"]["name"] in l2["spec"]["ipAddressPools"]
    # the pool only serves the hub's namespace, and only on request
    assert pool["spec"]["autoAssign"] is False


def test_pure_storage_overlay_uses_the_example_storage_class(z2jh):
    _, defaults = z2jh
    values = compose(BASE, OVERLAYS["pure-storage"], chart_defaults=defaults)
    spawner = values["hub"]["config"]["PtjaasSpawner"]
    (storage_class,) = load_yaml_docs(MANIFESTS / "storageclass-pure-file.yaml")
    assert spawner["home_volume_storage_class"] == storage_class["metadata"]["name"] == "pure-file"
    assert spawner["home_volume_size"] == "10Gi"
    assert storage_class["allowVolumeExpansion"] is True  # ptjaas grows homes
    assert storage_class["reclaimPolicy"] == "Retain"  # a deleted claim keeps its data
    # a bigger size for a group is still a valid quantity and never smaller than the default
    for group, size in spawner["home_volume_size_by_group"].items():
        assert re.fullmatch(r"\d+Gi", size) and int(size[:-2]) >= 10, group


def test_values_are_merged_like_helm_merges_several_files():
    """Maps merge key by key, lists are replaced, null removes a key (as `helm -f a -f b`)."""
    from ptjaas_spawner.helmvalues import deep_merge

    base = {"hub": {"config": {"PtjaasSpawner": {"sizes": {"small": {"cpu_limit": 1}}, "groups": ["a", "b"]}}},
            "cull": {"enabled": True, "timeout": 3600}}
    overlay = {"hub": {"config": {"PtjaasSpawner": {"sizes": {"gpu-1": {"gpu": 1}}, "groups": ["c"]}}},
               "cull": {"timeout": None}}
    merged = deep_merge(base, overlay)
    assert merged["hub"]["config"]["PtjaasSpawner"]["sizes"] == {"small": {"cpu_limit": 1}, "gpu-1": {"gpu": 1}}
    assert merged["hub"]["config"]["PtjaasSpawner"]["groups"] == ["c"]
    assert merged["cull"] == {"enabled": True}
    assert base["cull"]["timeout"] == 3600, "the inputs are not modified"
    # so the GPU overlay adds to the base catalog instead of replacing it
    composed = compose(BASE, OVERLAYS["gpu"])["hub"]["config"]["PtjaasSpawner"]
    assert {"python", "pytorch-cuda"} <= set(composed["images"])
    assert composed["quota_default"]["servers"] == 2 and composed["quota_default"]["gpus"] == 0
