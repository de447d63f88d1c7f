"""``ptjaas team-manifests``: per team namespace, valid Kubernetes objects equivalent to what z2jh
gives the hub in its own namespace (Role, singleuser NetworkPolicy), with quotas from the values.

The z2jh reference is the chart itself (../shared/charts/jupyterhub) rendered by the real
``helm template``; tests needing it skip where it is absent.
"""

import copy
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_support import BASE, HELM_VALUES, KUBERNETES_MIN, MANIFESTS, OVERLAYS, PROJECT, compose, load_yaml_docs
from ptjaas_spawner.cli import main as ptjaas

TEAMS = HELM_VALUES / "values-teams.yaml"
FILES = [BASE, OVERLAYS["gpu"], TEAMS]


def run(capsys, *args):
    code = ptjaas(["team-manifests", *args])
    out, err = capsys.readouterr()
    return code, out, err


def objects(capsys, *args):
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return [d for d in yaml.safe_load_all(out) if d is not None]


def values_args(*paths):
    return [a for p in paths for a in ("-f", str(p))]


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def chart_dir():
    shared = Path(os.environ.get("PTJAAS_SHARED_DIR") or PROJECT.parent / "shared")
    chart = shared / "charts" / "jupyterhub"
    if not (chart / "Chart.yaml").exists():
        pytest.skip(f"z2jh chart not found at {chart} (set PTJAAS_SHARED_DIR)")
    return chart


def helm_template(helm, chart, values_files, show_only, namespace="ptjaas"):
    cmd = [helm, "template", "ptjaas", str(chart), "--namespace", namespace]
    for f in values_files:
        cmd += ["-f", str(f)]
    if show_only:
        cmd += ["--show-only", show_only]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d is not None]


@pytest.fixture(scope="module")
def kube_versions():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    root = Path(kv.__file__).parent / "kubernetes-json-schema"
    versions = []
    for entry in root.glob("v*-local-strict"):
        major, minor = (int(x) for x in entry.name[1:].split("-")[0].split(".")[:2])
        if (major, minor) >= KUBERNETES_MIN:
            versions.append(f"{major}.{minor}.0")
    if not versions:
        pytest.skip(f"kubernetes-validate ships no schema for Kubernetes >= {KUBERNETES_MIN}")
    return kv, versions


def test_each_team_namespace_gets_its_objects(capsys):
    docs = objects(capsys, *values_args(*FILES))
    assert [(d["kind"], d["metadata"].get("namespace", d["metadata"]["name"])) for d in docs] == [
        ("Namespace", "jhub-team-vision"),
        ("ResourceQuota", "jhub-team-vision"),
        ("LimitRange", "jhub-team-vision"),
        ("Role", "jhub-team-vision"),
        ("RoleBinding", "jhub-team-vision"),
        ("NetworkPolicy", "jhub-team-vision"),
    ]
    assert not any(d["kind"].startswith("Cluster") for d in docs), "nothing cluster-wide"


def test_all_objects_validate_strictly_for_supported_kubernetes_versions(capsys, tmp_path, kube_versions):
    kv, versions = kube_versions
    many = write(tmp_path, "many.yaml", {"hub": {"config": {"PtjaasSpawner": {
        "team_namespaces": {"vision": "jhub-team-{group}", "nlp": "jhub-team-{group}"},
        "quota_groups": {"nlp": {"gpus": 2, "cpu": 16, "memory": "64Gi", "servers": 10}}}}},
        "singleuser": {"networkPolicy": {"interNamespaceAccessLabels": "accept", "allowedIngressPorts": [9000],
                                         "egressAllowRules": {"privateIPs": True, "cloudMetadataServer": True}}}})
    docs = objects(capsys, *values_args(*FILES, many))
    assert len(docs) == 12
    for doc in docs:
        for version in versions:
            kv.validate(doc, version, strict=True)
    bad = copy.deepcopy(docs[1])
    bad["spec"]["hardd"] = bad["spec"].pop("hard")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, versions[0], strict=True)


def test_the_example_manifest_is_the_generators_output(capsys):
    """helm-values/manifests/rbac-team-namespace.yaml is generated: never out of date."""
    assert load_yaml_docs(MANIFESTS / "rbac-team-namespace.yaml") == objects(capsys, *values_args(*FILES))


def test_the_teams_overlay_carries_the_network_policy_additions(capsys):
    code, out, err = run(capsys, *values_args(*FILES), "--helm-values")
    assert code == 0, err
    overlay = yaml.safe_load(out)
    teams = yaml.safe_load(TEAMS.read_text())
    assert teams["hub"]["networkPolicy"] == overlay["hub"]["networkPolicy"]
    assert teams["proxy"] == overlay["proxy"]


def test_quota_and_limits_come_from_quota_groups(capsys, tmp_path):
    shared = write(tmp_path, "shared.yaml", {"hub": {"config": {"PtjaasSpawner": {
        "team_namespaces": {"vision": "research", "nlp": "research", "bio": "jhub-team-{group}"},
        "quota_groups": {"nlp": {"gpus": 2, "cpu": 16, "servers": 10, "per_user": {"gpus": 1}},
                         "bio": {"cpu": 8}}}}}})
    docs = objects(capsys, *values_args(*FILES, shared))
    by = {(d["kind"], d["metadata"].get("namespace")): d for d in docs}
    # vision (4 GPUs) and nlp (2 GPUs, cpu, servers) share "research": the GPUs add up; cpu and
    # servers stay unlimited because vision's pool does not limit them
    assert by[("ResourceQuota", "research")]["spec"]["hard"] == {"requests.nvidia.com/gpu": "6"}
    assert by[("ResourceQuota", "jhub-team-bio")]["spec"]["hard"] == {"requests.cpu": "8"}
    # a container may hold at most one member's GPU budget (vision: 2 per user, nlp: 1)
    (limits,) = by[("LimitRange", "research")]["spec"]["limits"]
    assert limits["max"] == {"nvidia.com/gpu": "2"}
    # a container asking for no GPU gets none (the API server defaults the limit to max otherwise)
    assert limits["default"] == {"nvidia.com/gpu": "0"}
    # containers without requests get the catalog's smallest size, so the quota counts them
    assert limits["defaultRequest"] == {"cpu": "500m", "memory": "2Gi"}
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert names == ["jhub-team-bio", "research"]
    research = next(d for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == "research")
    assert research["metadata"]["annotations"]["ptjaas.io/teams"] == "nlp,vision"


def test_the_hub_role_is_z2jhs_hub_role_plus_ptjaas_needs(capsys, helm, chart_dir):
    (z2jh_role,) = [d for d in helm_template(helm, chart_dir, [BASE], "templates/hub/rbac.yaml")
                    if d["kind"] == "Role"]
    docs = objects(capsys, *values_args(*FILES), "--hub-namespace", "jhub", "--service-account", "hub-sa")
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert role["rules"][: len(z2jh_role["rules"])] == z2jh_role["rules"]
    extra = role["rules"][len(z2jh_role["rules"]):]
    assert extra == [
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["patch"]},
        {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"],
         "verbs": ["create", "get", "list", "delete"]},
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub-sa", "namespace": "jhub"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ptjaas-hub"}


def _as_team_namespace(policy, hub_namespace):
    """z2jh's singleuser policy, moved to another namespace: peers that z2jh selects by pod
    labels in its own namespace are the hub namespace's pods."""
    spec = copy.deepcopy(policy["spec"])
    for rule in spec.get("ingress", []):
        for peer in rule.get("from", []):
            if "podSelector" in peer and "namespaceSelector" not in peer:
                peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": hub_namespace}}
    for rule in spec.get("egress", []):
        for peer in rule.get("to", []):
            if "podSelector" in peer and "namespaceSelector" not in peer:
                peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": hub_namespace}}
    return spec


@pytest.mark.parametrize("netpol", [
    {},
    {"interNamespaceAccessLabels": "accept", "allowedIngressPorts": [9000],
     "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}],
     "egress": [{"to": [{"ipBlock": {"cidr": "10.2.0.0/16"}}], "ports": [{"port": 5432}]}],
     "egressAllowRules": {"privateIPs": True, "nonPrivateIPs": False, "dnsPortsPrivateIPs": False,
                          "dnsPortsKubeSystemNamespace": False}},
], ids=["defaults", "customised"])
def test_network_policy_is_z2jhs_singleuser_policy(capsys, tmp_path, helm, chart_dir, netpol):
    site = write(tmp_path, "site.yaml", {"singleuser": {"networkPolicy": netpol,
                                                         "cloudMetadata": {"ip": "169.254.169.254"}}})
    files = [BASE, OVERLAYS["gpu"], TEAMS, site]
    (z2jh,) = helm_template(helm, chart_dir, files, "templates/singleuser/netpol.yaml", namespace="jhub")
    docs = objects(capsys, *values_args(*files), "--hub-namespace", "jhub")
    ours = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert ours["spec"] == _as_team_namespace(z2jh, "jhub")


def test_values_without_team_namespaces_or_with_a_bad_one_are_refused(capsys, tmp_path):
    code, out, err = run(capsys, "-f", str(BASE))
    assert code == 2 and "hub.config.PtjaasSpawner.team_namespaces is not set" in err and out == ""
    bad = write(tmp_path, "bad.yaml", {"hub": {"config": {"PtjaasSpawner": {"team_namespaces": {"Vision": "t-{group}"}}}}})
    code, out, err = run(capsys, "-f", str(BASE), "-f", str(bad))
    assert code == 2 and "hub.config.PtjaasSpawner.team_namespaces['Vision']: 't-Vision' is not a valid" in err
    code, out, err = run(capsys, *values_args(*FILES), "--team", "nlp")
    assert code == 2 and "--team nlp: not in hub.config.PtjaasSpawner.team_namespaces (teams: vision)" in err
    code, out, err = run(capsys, "-f", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml: No such file" in err


def test_chart_overlay_renders_the_same_objects(capsys, tmp_path, helm):
    chart = tmp_path / "ptjaas-teams"
    code, out, err = run(capsys, *values_args(*FILES), "--chart", str(chart))
    assert code == 0, err
    lint = subprocess.run([helm, "lint", str(chart)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run([helm, "template", "ptjaas-teams", str(chart), "--namespace", "ptjaas"],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d is not None]

    def key(d):  # helm orders objects by kind for installation
        return d["kind"], d["metadata"]["name"]

    expected = objects(capsys, *values_args(*FILES))
    for d in expected:
        if d["kind"] == "Namespace":  # helm never deletes a namespace (with the homes in it)
            d["metadata"]["annotations"]["helm.sh/resource-policy"] = "keep"
    assert sorted(docs, key=key) == sorted(expected, key=key)


def test_values_with_the_teams_overlay_compose(tmp_path):
    values = compose(BASE, OVERLAYS["gpu"], TEAMS)
    assert values["hub"]["config"]["PtjaasSpawner"]["team_namespaces"] == {"vision": "jhub-team-{group}"}
    assert values["hub"]["config"]["PtjaasSpawner"]["quota_groups"]["vision"]["gpus"] == 4
