"""The embedded API server authenticates like a real one with anonymous access switched off:
the kubeconfig's bearer token on every request but health and version, else 401 with a Status.
Its state is the cluster owner's alone (0700 directory, 0600 files holding tokens)."""

import os
import stat

import pytest
import requests

from tests.cluster.k8s_conformance import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _embedded_only(module_cluster):
    """What the embedded server answers (a real one's anonymous access is a setting of its own)."""

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/namespaces"),
    ("GET", "/api/v1/namespaces/default/secrets"),
    ("POST", "/api/v1/namespaces/default/pods"),
    ("GET", "/api"),
    ("GET", "/apis"),
    ("GET", "/openapi/v2"),
    ("GET", "/_ptjaas/faults"),
    ("POST", "/_ptjaas/faults"),
])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic YWRtaW46YWRtaW4="])
def test_request_without_the_token_is_401(kube, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = requests.request(method, kube.cluster.url + path, headers=headers, timeout=10, verify=kube.cluster.ca_file,
                         json={"metadata": {"name": "x"}} if method == "POST" else None)
    assert r.status_code == 401, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == UNAUTHORIZED


def test_unauthorized_request_changes_nothing(kube, ns):
    r = requests.post(f"{kube.cluster.url}/api/v1/namespaces/{ns}/configmaps", timeout=10, verify=kube.cluster.ca_file,
                      json={"metadata": {"name": "sneaky"}, "data": {"a": "b"}})
    assert r.status_code == 401
    # (the namespace's own kube-root-ca.crt, made by the cluster, is there as on a real cluster)
    assert "sneaky" not in [c.metadata.name for c in kube.core.list_namespaced_config_map(ns).items]


@pytest.mark.parametrize("path", ["/version", "/healthz", "/readyz", "/livez"])
def test_health_and_version_need_no_token_but_a_wrong_one_is_refused(kube, path):
    r = requests.get(kube.cluster.url + path, timeout=10, verify=kube.cluster.ca_file)
    assert r.status_code == 200, r.text
    wrong = requests.get(kube.cluster.url + path, timeout=10, verify=kube.cluster.ca_file,
                         headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 401 and wrong.json() == UNAUTHORIZED   # as kube-apiserver: authentication first


def test_the_api_is_served_over_tls_only(kube):
    assert kube.cluster.url.startswith("https://")
    with pytest.raises(requests.ConnectionError):
        requests.get(kube.cluster.url.replace("https://", "http://") + "/version", timeout=10)


def test_kubeconfig_token_is_accepted(kube):
    assert kube.raw("GET", "/api/v1/namespaces").status_code == 200
    assert kube.raw("GET", "/_ptjaas/faults").status_code == 200


def test_state_is_private_to_the_cluster_owner(cluster):
    state = cluster.state_dir
    objects = os.path.join(state, "objects.json")
    wait_for(lambda: os.path.exists(objects), timeout=10, message="objects.json written")
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    pki = os.path.join(state, "tls")
    assert stat.S_IMODE(os.stat(pki).st_mode) == 0o700
    for path in (objects, cluster.kubeconfig_path, os.path.join(pki, "ca.key"), os.path.join(pki, "apiserver.key")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    with open(objects) as f:
        assert cluster.token in f.read()   # the token it holds is why it must be 0600


def test_token_survives_a_restart_and_old_state_is_locked_down(tmp_path):
    from ptjaas_sandbox.cluster import EmbeddedCluster
    state = tmp_path / "k8s"
    state.mkdir(mode=0o755)
    first = EmbeddedCluster(state_dir=state)
    first.start_in_thread()
    token = first.token
    first.stop_thread()
    os.chmod(state, 0o755)
    os.chmod(state / "objects.json", 0o644)
    again = EmbeddedCluster(state_dir=state)
    again.start_in_thread()
    try:
        assert again.token == token
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        r = requests.get(f"{again.url}/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}, timeout=10, verify=again.ca_file)
        assert r.status_code == 200
        again.call(again.save)
        assert stat.S_IMODE(os.stat(state / "objects.json").st_mode) == 0o600
    finally:
        again.stop_thread()
