"""Kubernetes manifests in helm-values/manifests/: valid, and least-privilege but sufficient.

* MetalLB objects validate against the openAPIV3Schema of MetalLB's own CRDs (shared
  reference data), strictly: an unknown field is an error, as with ``kubectl --validate=strict``.
* Built-in kinds (StorageClass, Role, RoleBinding, ClusterRole, ...) validate strictly against
  the OpenAPI schemas of every Kubernetes version the chart supports (kubeVersion >= 1.32) that
  the ``kubernetes-validate`` package ships (it works offline: the schemas are in the wheel).
* RBAC: every Kubernetes API call ptjaas's own code makes (found by reading its source) is
  allowed by z2jh's hub Role plus these manifests, and the manifests grant nothing broad.
"""

import copy
import re
from pathlib import Path

import jsonschema
import pytest

from tests.deploy_support import KUBERNETES_MIN, MANIFESTS, PROJECT, load_yaml, load_yaml_docs, require_schema
from ptjaas_spawner.objects import SNAPSHOT_PLURAL

METALLB_CRDS = {
    "IPAddressPool": "metallb.io_ipaddresspools.yaml",
    "L2Advertisement": "metallb.io_l2advertisements.yaml",
}

# z2jh's hub Role (chart 4.x, templates/hub/rbac.yaml), bound to the hub's ServiceAccount in
# the release namespace.
Z2JH_HUB_RULES = [
    {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
     "verbs": ["get", "watch", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]
HUB_NAMESPACE, HUB_SERVICE_ACCOUNT = "ptjaas", "hub"


def all_manifests():
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [(path.name, doc) for doc in load_yaml_docs(path)]
    return docs


def _strict(schema):
    """Reject unknown fields where the schema lists properties (kubectl --validate=strict)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def metallb_validator(kind, api_version):
    crd = load_yaml(require_schema("metallb", METALLB_CRDS[kind]))
    group, _, version = api_version.partition("/")
    assert crd["spec"]["group"] == group, f"{kind}: CRD group is {crd['spec']['group']}, not {group}"
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert entry["served"], f"{api_version} {kind} is not served by this MetalLB"
    schema = _strict(entry["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is checked by the API server
    return jsonschema.Draft7Validator(schema)


def metallb_objects():
    return [(n, d) for n, d in all_manifests() if d["apiVersion"].startswith("metallb.io/")]


def test_metallb_manifests_exist():
    kinds = {d["kind"] for _, d in metallb_objects()}
    assert kinds == {"IPAddressPool", "L2Advertisement"}


@pytest.mark.parametrize("name,doc", metallb_objects(), ids=[n for n, _ in metallb_objects()])
def test_metallb_manifests_validate_against_their_crds(name, doc):
    validator = metallb_validator(doc["kind"], doc["apiVersion"])
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert doc["metadata"]["namespace"] == "metallb-system"


def test_metallb_validation_rejects_mistakes():
    (pool,) = [d for _, d in metallb_objects() if d["kind"] == "IPAddressPool"]
    validator = metallb_validator("IPAddressPool", pool["apiVersion"])
    missing = copy.deepcopy(pool)
    del missing["spec"]["addresses"]
    assert any("addresses" in e.message for e in validator.iter_errors(missing))
    typo = copy.deepcopy(pool)
    typo["spec"]["autoAsign"] = typo["spec"].pop("autoAssign")
    assert any("autoAsign" in e.message for e in validator.iter_errors(typo))


@pytest.fixture(scope="module")
def kube_versions():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    schema_root = Path(kv.__file__).parent / "kubernetes-json-schema"
    versions = []
    for entry in schema_root.glob("v*-local-strict"):
        major, minor = (int(x) for x in entry.name[1:].split("-")[0].split(".")[:2])
        if (major, minor) >= KUBERNETES_MIN:
            versions.append(f"{major}.{minor}.0")
    if not versions:
        pytest.skip(f"kubernetes-validate ships no schema for Kubernetes >= {KUBERNETES_MIN}")
    return kv, sorted(versions, key=lambda v: tuple(map(int, v.split("."))))


def builtin_objects():
    return [(n, d) for n, d in all_manifests() if not d["apiVersion"].startswith("metallb.io/")]


@pytest.mark.parametrize("name,doc", builtin_objects(), ids=[f"{n}:{d['kind']}" for n, d in builtin_objects()])
def test_kubernetes_manifests_validate_for_supported_versions(kube_versions, name, doc):
    kv, versions = kube_versions
    for version in versions:
        kv.validate(doc, version, strict=True)


def test_kubernetes_validation_rejects_mistakes(kube_versions):
    kv, versions = kube_versions
    (storage_class,) = [d for _, d in builtin_objects() if d["kind"] == "StorageClass"]
    bad = copy.deepcopy(storage_class)
    bad["allowVolumeExpanson"] = bad.pop("allowVolumeExpansion")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, versions[0], strict=True)


# ---------------------------------------------------------------- RBAC coverage

API_CALL = re.compile(
    r"\.(create|read|list|patch|replace|delete|delete_collection)_(namespaced_)?"
    r"([a-z_]+?)(_for_all_namespaces)?(?:_with_http_info)?\b(?=[(,)])"  # called, or passed to kube.call_json
)
# (its all-namespaces method serves only c.KubeSpawner.enable_user_namespaces, where the site
# grants the hub a ClusterRole, as for KubeSpawner's own pod and event watches)
REFLECTOR_LIST = re.compile(r"[\"'](list)_(namespaced_)([a-z_]+?)()[\"']")
KIND_RESOURCES = {
    "pod": ("", "pods"),
    "pod_log": ("", "pods/log"),
    "persistent_volume_claim": ("", "persistentvolumeclaims"),
    "secret": ("", "secrets"),
    "service": ("", "services"),
    "event": ("", "events"),
    "namespace": ("", "namespaces"),
    "resource_quota": ("", "resourcequotas"),
    "config_map": ("", "configmaps"),
    "storage_class": ("storage.k8s.io", "storageclasses"),
}
VERBS = {"create": "create", "read": "get", "list": "list", "patch": "patch",
         "replace": "update", "delete": "delete", "delete_collection": "deletecollection"}


def _api_classes():
    from kubernetes_asyncio import client

    return [client.CoreV1Api, client.StorageV1Api, client.CustomObjectsApi, client.RbacAuthorizationV1Api]


# run by an admin with the admin's own kubeconfig (docs/teams.md), never with the hub's account
ADMIN_COMMANDS = {"migratecli.py"}


def kubernetes_calls():
    """{(group, resource, verb, scope)} ptjaas's code (not the embedded cluster) asks for."""
    classes = _api_classes()
    needed = set()
    unknown = []
    for path in sorted((PROJECT / "ptjaas_spawner").rglob("*.py")):
        if "cluster" in path.relative_to(PROJECT / "ptjaas_spawner").parts:
            continue
        if path.name in ADMIN_COMMANDS:
            continue
        text = path.read_text()
        watches = "Watch(" in text or "watch=True" in text
        calls = list(API_CALL.finditer(text))
        # a KubeSpawner reflector (ptjaas_spawner/watches.py) names its list method as a string
        # and lists, then watches, with it
        reflects = "ResourceReflector" in text
        if reflects:
            calls += list(REFLECTOR_LIST.finditer(text))
            watches = True
        for m in calls:
            action, namespaced, kind, all_ns = m.groups()
            method = f"{action}_{namespaced or ''}{kind}{all_ns or ''}"
            if not any(hasattr(cls, method) for cls in classes):
                continue  # not a Kubernetes client call
            scope = "cluster" if (all_ns or not namespaced) else "namespace"
            if kind == "custom_object":
                plurals = set(re.findall(r"\"(volumesnapshots)\"", text))
                if "SNAPSHOT_PLURAL" in text:  # ptjaas_spawner/kube.py: the one constant
                    plurals.add(SNAPSHOT_PLURAL)
                if not plurals:
                    unknown.append(f"{path.name}: {method} on an unknown custom resource")
                    continue
                resources = [("snapshot.storage.k8s.io", p) for p in plurals]
            elif kind in KIND_RESOURCES:
                resources = [KIND_RESOURCES[kind]]
            else:
                unknown.append(f"{path.name}: {method} (add its resource to KIND_RESOURCES)")
                continue
            for group, resource in resources:
                needed.add((group, resource, VERBS[action], scope))
                if action == "list" and watches:
                    needed.add((group, resource, "watch", scope))
    assert not unknown, unknown
    return needed


def _grants(rules):
    return {
        (g, r, v)
        for rule in rules
        for g in rule.get("apiGroups", [])
        for r in rule.get("resources", [])
        for v in rule.get("verbs", [])
    }


def _hub_subject(subjects):
    return any(
        s["kind"] == "ServiceAccount" and s["name"] == HUB_SERVICE_ACCOUNT and s["namespace"] == HUB_NAMESPACE
        for s in subjects
    )


def rbac_grants():
    """(grants in the hub's namespace, cluster-wide grants, grants in a team namespace)."""
    docs = [d for _, d in all_manifests()]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"}
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    namespaced = {HUB_NAMESPACE: _grants(Z2JH_HUB_RULES)}
    cluster = set()
    for d in docs:
        if d["kind"] not in ("RoleBinding", "ClusterRoleBinding") or not _hub_subject(d["subjects"]):
            continue
        ref = d["roleRef"]
        if ref["kind"] == "Role":
            rules = roles[(d["metadata"]["namespace"], ref["name"])]["rules"]
        else:
            rules = cluster_roles[ref["name"]]["rules"]
        if d["kind"] == "ClusterRoleBinding":
            cluster |= _grants(rules)
        else:
            namespaced.setdefault(d["metadata"]["namespace"], set()).update(_grants(rules))
    teams = {ns: g for ns, g in namespaced.items() if ns != HUB_NAMESPACE}
    return namespaced[HUB_NAMESPACE], cluster, teams


def test_every_kubernetes_call_ptjaas_makes_is_allowed():
    needed = kubernetes_calls()
    assert ("", "persistentvolumeclaims", "patch", "namespace") in needed, "the scan finds ptjaas's calls"
    assert ("", "persistentvolumeclaims", "watch", "namespace") in needed, "the scan finds the claim watch"
    hub_ns, cluster, teams = rbac_grants()
    assert teams, "the team-namespace example binds the hub"
    missing = []
    for group, resource, verb, scope in sorted(needed):
        if (group, resource, verb) in cluster:
            continue
        if scope == "cluster":
            missing.append(f"cluster-wide {verb} {resource}")
            continue
        if (group, resource, verb) not in hub_ns:
            missing.append(f"{verb} {resource} in the hub's namespace")
        for ns, grants in teams.items():
            if (group, resource, verb) not in grants:
                missing.append(f"{verb} {resource} in team namespace {ns}")
    assert missing == []


def test_rbac_is_least_privilege():
    docs = [d for _, d in all_manifests() if d["kind"] in ("Role", "ClusterRole")]
    hub_ns, cluster, teams = rbac_grants()
    for d in docs:
        for rule in d["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{d['metadata']['name']}: wildcard {field}"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), d["metadata"]["name"]
            assert "nonResourceURLs" not in rule
    # cluster-wide, the hub may only read StorageClasses
    assert cluster == {("storage.k8s.io", "storageclasses", "get"), ("storage.k8s.io", "storageclasses", "list")}
    # beyond z2jh's Role, the hub's own namespace gains only claim patching and snapshots
    extra = hub_ns - _grants(Z2JH_HUB_RULES)
    assert extra == {("", "persistentvolumeclaims", "patch")} | {
        ("snapshot.storage.k8s.io", "volumesnapshots", v) for v in ("create", "get", "list", "delete")
    }
    # nobody may delete ResourceQuotas or namespaces through these grants
    for grants in [hub_ns, cluster, *teams.values()]:
        assert ("", "resourcequotas", "delete") not in grants
        assert not any(r == "namespaces" for _, r, _v in grants)
