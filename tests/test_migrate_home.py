"""``ptjaas migrate-home`` on the embedded cluster, with a real hub: a file in a home made before
team namespaces is in the user's next server in the team namespace, the old claim is kept and
labelled; a running server, an unowned claim and a dry run change nothing."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests


from tests.test_teams_hub import GROUPS, IMAGES, SIZES, server, start_ready, stop, user_claims, user_pods

from ptjaas_spawner.teammanifests import Site, team_objects
from ptjaas_spawner.teams import MIGRATED_FROM

pytestmark = [pytest.mark.hub, pytest.mark.timeout(400)]

HUB_NS = "default"
TEAM_NS = "jhub-team-vision"
TEAMS = {"vision": "jhub-team-{group}"}
SNAPCLASS = "migrate-snapshots"


def hub_config(teams):
    return textwrap.dedent(f"""
        c.JupyterHub.spawner_class = "ptjaas"
        c.JupyterHub.load_groups = {json.dumps(GROUPS)}
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        """) + (f"c.PtjaasSpawner.team_namespaces = {json.dumps(TEAMS)}\n" if teams else "")


@pytest.fixture(scope="module")
def api_client(module_cluster):
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    values = {"hub": {"config": {"PtjaasSpawner": {"team_namespaces": TEAMS, "sizes": SIZES}}}}
    for _, _, objects in team_objects(values, Site(hub_namespace=HUB_NS)):
        for obj in objects:
            kubernetes.utils.create_from_dict(client, obj)
    kubernetes.client.CustomObjectsApi(client).create_cluster_custom_object(
        "snapshot.storage.k8s.io", "v1", "volumesnapshotclasses",
        {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": SNAPCLASS},
         "driver": "ptjaas.io/local-path", "deletionPolicy": "Delete"})
    yield client
    client.close()


@pytest.fixture(scope="module")
def kube(api_client):
    import kubernetes

    return kubernetes.client.CoreV1Api(api_client)


def migrate(cluster, *args):
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig_path))
    return subprocess.run([sys.executable, "-m", "ptjaas_spawner.cli", "migrate-home", "--hub-namespace", HUB_NS,
                           "--team-namespace", TEAM_NS, "--timeout", "120", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def claim(kube, ns, name):
    import kubernetes

    try:
        return kube.read_namespaced_persistent_volume_claim(name, ns)
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return None
        raise


def no_copy_pods(kube):
    return [f"{p.metadata.namespace}/{p.metadata.name}" for p in kube.list_pod_for_all_namespaces().items
            if (p.metadata.labels or {}).get("component") == "ptjaas-home-migration"]


def contents(hub, user, token, method="GET", **kwargs):
    url = hub.url.rstrip("/") + f"/user/{user}/api/contents/notes.txt"
    return requests.request(method, url, headers={"Authorization": f"token {token}"}, timeout=30, **kwargs)


def test_a_migrated_home_is_the_next_servers_home_and_the_old_claim_stays(module_cluster, module_hub_factory,
                                                                          kube):
    hub = module_hub_factory(hub_config(teams=False), cluster=module_cluster)
    try:
        # vera's home, made before team namespaces, with a file in it
        start_ready(hub, "vera", {"image": "python", "size": "small"})
        token = hub.api("POST", "/users/vera/tokens", json={"note": "t"}).json()["token"]
        r = contents(hub, "vera", token, "PUT", json={"type": "file", "format": "text", "content": "kept"})
        assert r.status_code in (200, 201), r.text
        # refused while the server runs: nothing made
        r = migrate(module_cluster, "--user", "vera", "--yes")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "vera's server is running or the home is in use (pods default/jupyter-vera): stop it first" in r.stderr
        assert claim(kube, TEAM_NS, "claim-vera") is None
        stop(hub, "vera")
        hub.restart(hub_config(teams=True))
        # a dry run says what it would do and changes nothing
        r = migrate(module_cluster, "--user", "vera")
        assert r.returncode == 0, r.stderr
        assert "default/claim-vera -> jhub-team-vision/claim-vera" in r.stdout
        assert "Dry run: nothing was changed" in r.stdout
        assert claim(kube, TEAM_NS, "claim-vera") is None
        assert not (claim(kube, HUB_NS, "claim-vera").metadata.labels or {}).get("ptjaas.io/migrated")
        # the migration
        r = migrate(module_cluster, "--user", "vera", "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Done. vera's next start runs in jhub-team-vision" in r.stdout
        new = claim(kube, TEAM_NS, "claim-vera")
        assert new.metadata.annotations[MIGRATED_FROM] == "default/claim-vera"
        assert new.metadata.annotations["hub.jupyter.org/username"] == "vera"
        old = claim(kube, HUB_NS, "claim-vera")
        assert old.metadata.labels["ptjaas.io/migrated"] == "true"
        assert old.metadata.annotations["ptjaas.io/migrated-to"] == "jhub-team-vision/claim-vera"
        assert old.metadata.annotations["ptjaas.io/migrated-at"].startswith("20")
        assert no_copy_pods(kube) == []
        # a second run finds the migration done
        r = migrate(module_cluster, "--user", "vera", "--yes")
        assert r.returncode == 1 and "was migrated already, to jhub-team-vision/claim-vera" in r.stderr
        # vera's next start: in the team namespace, with her file
        start_ready(hub, "vera", {"image": "python", "size": "small"})
        assert user_pods(kube, "vera") == {TEAM_NS: ["jupyter-vera"]}
        r = contents(hub, "vera", token)
        assert r.status_code == 200 and r.json()["content"] == "kept", r.text
        assert user_claims(kube, "vera") == {HUB_NS: ["claim-vera"], TEAM_NS: ["claim-vera"]}
    finally:
        if server(hub, "vera"):
            stop(hub, "vera")


def _volume_dir(kube, ns, name):
    pvc = claim(kube, ns, name)
    return Path(kube.read_persistent_volume(pvc.spec.volume_name).spec.host_path.path)


def _bound_claim(kube, name, annotations):
    from tests.waiting import wait_for

    kube.create_namespaced_persistent_volume_claim(HUB_NS, {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    wait_for(lambda: claim(kube, HUB_NS, name).status.phase == "Bound", timeout=60, message=f"{name} bound")


def test_migration_through_a_snapshot_copies_the_files(module_cluster, kube):
    """With --snapshot-class the copy reads a claim restored from a snapshot of the home, and
    the snapshot and that claim are gone afterwards."""
    _bound_claim(kube, "claim-lea", {"hub.jupyter.org/username": "lea"})
    home = _volume_dir(kube, HUB_NS, "claim-lea")
    (home / "work").mkdir()
    (home / "work" / "results.csv").write_text("a,b\n1,2\n")
    r = migrate(module_cluster, "--user", "lea", "--snapshot-class", SNAPCLASS, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "snapshot default/claim-lea-migrate is ready" in r.stdout
    assert (_volume_dir(kube, TEAM_NS, "claim-lea") / "work" / "results.csv").read_text() == "a,b\n1,2\n"
    assert claim(kube, TEAM_NS, "claim-lea").metadata.annotations[MIGRATED_FROM] == "default/claim-lea"
    assert (home / "work" / "results.csv").exists()  # the old home is untouched
    assert claim(kube, HUB_NS, "claim-lea-migrate-source") is None
    import kubernetes
    snaps = kubernetes.client.CustomObjectsApi(kube.api_client).list_namespaced_custom_object(
        "snapshot.storage.k8s.io", "v1", HUB_NS, "volumesnapshots")["items"]
    assert [s["metadata"]["name"] for s in snaps if not s["metadata"].get("deletionTimestamp")] == []
    assert no_copy_pods(kube) == []


def test_a_claim_not_proven_to_be_the_users_is_not_migrated(module_cluster, kube):
    _bound_claim(kube, "claim-vic", {})  # no owner annotation: it could be anybody's
    r = migrate(module_cluster, "--user", "vic", "--yes")
    assert r.returncode == 1
    assert "claim default/claim-vic is not proven to be 'vic''s home" in r.stderr
    assert claim(kube, TEAM_NS, "claim-vic") is None
    r = migrate(module_cluster, "--user", "vic", "--team-namespace", "default", "--yes")
    assert r.returncode == 1 and "is the hub's namespace: nothing to move" in r.stderr
