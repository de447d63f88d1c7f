"""Unmodified KubeSpawner, through a real JupyterHub, on the embedded cluster."""

import requests
from kubernetes import client, config

from tests.waiting import wait_for


def _core(cluster):
    return client.CoreV1Api(config.new_client_from_config(cluster.kubeconfig_path))


def test_plain_kubespawner_spawns_serves_stops_and_respawns_with_its_claim(cluster, hub_factory):
    hub = hub_factory("""
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
""", cluster=cluster)
    core = _core(cluster)
    assert hub.api("POST", "/users", json={"usernames": ["alice"]}).status_code == 201
    r = hub.api("POST", "/users/alice/server")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")

    pod = core.read_namespaced_pod("jupyter-alice", "default")
    assert pod.status.phase == "Running" and pod.status.pod_ip.startswith("127.")
    claim = core.read_namespaced_persistent_volume_claim("claim-alice", "default")
    assert claim.status.phase == "Bound"

    # a real jupyterhub-singleuser answers through the real proxy, with the user's token
    token = hub.api("POST", "/users/alice/tokens", json={"note": "test"}).json()["token"]
    put = requests.put(f"{hub.url}/user/alice/api/contents/kept.txt", headers={"Authorization": f"token {token}"},
                       json={"type": "file", "format": "text", "content": "still here"}, timeout=30)
    assert put.status_code in (200, 201), put.text

    assert hub.api("DELETE", "/users/alice/server").status_code in (202, 204)
    hub.wait_stopped("alice")
    wait_for(lambda: not core.list_namespaced_pod("default", label_selector="hub.jupyter.org/username=alice").items,
             message="the pod to be gone")
    assert core.read_namespaced_persistent_volume_claim("claim-alice", "default").status.phase == "Bound"

    assert hub.api("POST", "/users/alice/server").status_code in (201, 202)
    hub.wait_ready("alice")
    got = requests.get(f"{hub.url}/user/alice/api/contents/kept.txt", headers={"Authorization": f"token {token}"},
                       timeout=30)
    assert got.status_code == 200 and got.json()["content"] == "still here"
