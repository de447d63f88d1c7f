"""Issue 23, credentials by reference: data connections name a Secret that the pod gets from
the kubelet; the hub never reads it. Pure parts here; the start through a real hub in
tests/test_environments.py (its shared hub)."""

import subprocess
import sys

import pytest
import yaml

from ptjaas_spawner import connections
from ptjaas_spawner.catalog import ChoiceError, resolve_choice
from ptjaas_spawner.startfailure import container_problem

CONNECTIONS = {
    "warehouse": {"display_name": "Warehouse", "groups": ["vision"], "secret": "warehouse-creds",
                  "env": {"PGPASSWORD": "password", "PGUSER": "user"}},
    "bucket": {"secret": "bucket-creds", "env_from": True, "files_at": "/etc/ptjaas/bucket"},
}
IMAGES = {"python": {"versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {"small": {"cpu_guarantee": 0.1, "cpu_limit": 1, "mem_guarantee": "64Mi", "mem_limit": "1Gi"}}


@pytest.mark.parametrize("groups, names, result", [
    (["vision"], ["warehouse", "bucket"], ["warehouse", "bucket"]),
    ([], ["bucket", "bucket"], ["bucket"]),
    ([], ["warehouse"], "'warehouse' is not available to you. Connections you may use: bucket."),
    ([], ["nope"], "'nope' is not available"),
    ([], "bucket", "must be a list"),
    ([], [1], "must be a list"),
    ([], ["bucket"] * 21, "Too many data connections (21, at most 20)"),
])
def test_a_user_ticks_only_the_connections_their_groups_allow(groups, names, result):
    try:
        choice = resolve_choice(IMAGES, SIZES, groups, {"connections": names}, connections=CONNECTIONS)
    except ChoiceError as e:
        assert isinstance(result, str) and result in str(e), str(e)
        return
    assert choice.connections == result
    assert choice.as_state()["connections"] == result


def test_same_as_last_repeats_the_connections_while_allowed():
    first = resolve_choice(IMAGES, SIZES, ["vision"], {"connections": ["warehouse"]}, connections=CONNECTIONS)
    again = resolve_choice(IMAGES, SIZES, ["vision"], {"same_as_last": True}, last=first.as_state(),
                           connections=CONNECTIONS)
    assert again.connections == ["warehouse"]
    with pytest.raises(ChoiceError, match="not available to you"):
        resolve_choice(IMAGES, SIZES, [], {"same_as_last": True}, last=first.as_state(), connections=CONNECTIONS)


def test_the_pod_gets_the_secret_by_name_only():
    parts = connections.pod_parts(CONNECTIONS, ["warehouse", "bucket"])
    assert parts["env"] == [
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "warehouse-creds", "key": "password"}}},
        {"name": "PGUSER", "valueFrom": {"secretKeyRef": {"name": "warehouse-creds", "key": "user"}}}]
    assert parts["env_from"] == [{"secretRef": {"name": "bucket-creds"}}]
    assert parts["volumes"] == [{"name": "connection-bucket", "secret": {"secretName": "bucket-creds",
                                                                      "defaultMode": 0o440}}]
    assert parts["volume_mounts"] == [{"name": "connection-bucket", "mountPath": "/etc/ptjaas/bucket",
                                       "readOnly": True}]


def test_an_identity_connection_mounts_a_projected_token_and_names_no_secret():
    """Issue 23, workload identity: only a connection with ``identity_token`` gives the pod a
    token: audience-bound, short-lived, projected from the server's ServiceAccount."""
    lake = {"lake": {"identity_token": {"audience": "sts.amazonaws.com", "path_env": "AWS_WEB_IDENTITY_TOKEN_FILE"}}}
    parts = connections.pod_parts(dict(CONNECTIONS, **lake), ["lake"])
    assert parts["volumes"] == [{"name": "identity-lake", "projected": {"defaultMode": 0o440, "sources": [
        {"serviceAccountToken": {"audience": "sts.amazonaws.com", "path": "token", "expirationSeconds": 3600}}]}}]
    assert parts["volume_mounts"] == [{"name": "identity-lake", "mountPath": "/var/run/secrets/ptjaas/lake",
                                       "readOnly": True}]
    assert parts["env"] == [{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/ptjaas/lake/token"}]
    assert parts["env_from"] == []
    assert not any("projected" in v for v in connections.pod_parts(CONNECTIONS, ["warehouse", "bucket"])["volumes"])
    assert connections.check(lake) == []
    assert connections.check({"x": {"identity_token": {"audience": "a"}, "env_from": True}}) == [
        ("data_connections.x", "env_from, env and files_at read a Secret: set secret")]


def test_team_manifests_make_the_servers_service_account_without_an_automounted_token():
    from ptjaas_spawner.teammanifests import Site, team_objects

    values = {"singleuser": {"serviceAccountName": "servers"},
              "hub": {"config": {"PtjaasSpawner": {"team_namespaces": {"vision": "team-vision"}}}}}
    (_, _, objects), = team_objects(values, Site(hub_namespace="ptjaas"))
    accounts = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert accounts == [{"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
                         "metadata": {"name": "servers", "namespace": "team-vision",
                                      "labels": {"app.kubernetes.io/managed-by": "ptjaas"}}}]
    del values["singleuser"]
    (_, _, objects), = team_objects(values, Site(hub_namespace="ptjaas"))
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]


def test_a_missing_secret_fails_the_start_in_plain_words():
    pod = {"spec": {"containers": [{"name": "notebook", "image": "x:1"}]}, "status": {"containerStatuses": [
        {"name": "notebook", "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                   "message": 'secret "warehouse-creds" not found'}}}]}}
    kind, words = container_problem(pod)
    assert kind == "config" and "the Secret 'warehouse-creds'" in words and "--secret-stubs" in words
    assert connections.check({"x": {"secret": "s"}}) == [("data_connections.x", "gives the pod nothing: set "
                                                                                "env_from, env or files_at")]


def test_team_manifests_prints_secret_stubs_for_admins_to_fill(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"hub": {"config": {"PtjaasSpawner": {"data_connections": CONNECTIONS}}}}))
    out = subprocess.run([sys.executable, "-m", "ptjaas_spawner.cli", "team-manifests", "-f", str(values),
                          "--secret-stubs"], capture_output=True, text=True, check=True).stdout
    stubs = list(yaml.safe_load_all(out))
    assert sorted((s["metadata"]["name"], s["metadata"]["namespace"], s["stringData"]) for s in stubs) == [
        ("bucket-creds", "ptjaas", {}), ("warehouse-creds", "ptjaas", {"password": "", "user": ""})]


@pytest.mark.parametrize("setting, value, problem", [
    ("data_connections", {"x": {"secret": "s"}}, "data_connections.x: gives the pod nothing"),
    ("data_connections", {"x": {"secret": "Not A Name", "env_from": True}}, "secret"),
    ("data_connections", {"x": {"secret": "s", "env_from": True, "colour": 1}}, "colour"),
    ("data_connections", {"x": {"identity_token": {"audience": "a", "expiration_seconds": 60}}}, "60"),
    ("data_connections", {"x": {"identity_token": {}}}, "audience"),
    ("custom_images", {"groups": []}, "allowed"),
    ("custom_images", {"allowed": ["a/*"], "sizes": ["huge"]}, "unknown size(s) 'huge'"),
])
def test_bad_connection_and_custom_image_settings_are_refused_naming_them(setting, value, problem):
    from ptjaas_spawner.configcheck import ConfigError, check_all

    with pytest.raises(ConfigError) as e:
        check_all(IMAGES, SIZES, **{setting: value})
    assert problem in str(e.value) and setting in str(e.value), str(e.value)


def test_an_unknown_interface_is_refused_at_start_up():
    from ptjaas_spawner.configcheck import ConfigError, check_all

    images = {"python": {"interface": "emacs", "versions": {"1": {"image": "example.org/py:1"}}}}
    with pytest.raises(ConfigError, match="interface"):
        check_all(images, SIZES)


def test_the_form_offers_the_connections_and_an_image_of_ones_own_and_reads_them_back():
    from ptjaas_spawner.form import options_from_formdata, render_form

    images = {"python": {"display_name": "Python", "interface": "vscode",
                         "versions": {"1": {"image": "example.org/py:1", "notes": "Python 3.13",
                                            "deprecated": "use 2"}, "2": {"image": "example.org/py:2"}}}}
    custom = {"groups": [], "allowed": ["example.org/team/*"]}
    html = render_form(images, SIZES, ["vision"], custom_images=custom, connections=CONNECTIONS,
                       last={"image": "python", "version": "2", "size": "small", "connections": ["bucket"]})
    assert "Opens VS Code" in html
    assert html.count("deprecated: use 2") == 1 and "1: Python 3.13; deprecated: use 2" in html
    assert 'name="custom_image"' in html and "Allowed: example.org/team/*" in html
    assert 'value="warehouse"' in html and 'value="bucket" id="connection-bucket" checked' in html.replace(
        "ptjaas-connection", "connection")
    assert "warehouse" not in render_form(images, SIZES, [], connections=CONNECTIONS)  # not in the group
    assert 'id="ptjaas-custom-image-ref"' not in render_form(images, SIZES, [])  # not permitted: not offered
    posted = {"choice": ["new"], "image": ["custom"], "custom_image": [" example.org/team/x:1 "], "size": ["small"],
              "connections-shown": ["1"], "connections": ["warehouse"]}
    assert options_from_formdata(posted) == {"image": "custom", "custom_image": "example.org/team/x:1",
                                             "size": "small", "connections": ["warehouse"]}
    none = {"choice": ["new"], "image": ["python"], "size": ["small"], "connections-shown": ["1"]}
    assert options_from_formdata(none)["connections"] == []  # boxes shown, none ticked: none
    choice = resolve_choice(IMAGES, SIZES, ["vision"], options_from_formdata(posted), connections=CONNECTIONS,
                            custom_images=custom)
    assert choice.image_ref == "example.org/team/x:1" and choice.connections == ["warehouse"]
