"""The embedded cluster as a CSI driver with the external snapshotter for its own provisioner:
VolumeSnapshot -> VolumeSnapshotContent, readyToUse, restoreSize, default class, errors as
status.error + events, finalizers, claims restored from a snapshot dataSource get a copy of
the data (as it was when the snapshot was taken), and a read-only mount cannot be written.
The objects are checked against the snapshot CRDs' schemas in ../shared/schemas/snapshot/."""

import pytest
import yaml

from tests.cluster.k8s_conformance import py_pod, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module", autouse=True)
def _embedded_only(backend):
    """The snapshotter is the embedded server's own controller: a real control plane here has the
    snapshot CRDs but no snapshot controller (the external snapshotter is not an API client of ours
    yet), so these run on the embedded cluster only."""
    if backend == "real":
        pytest.skip("embedded-only: the real control plane here runs no snapshot controller")

SNAP = dict(group="snapshot.storage.k8s.io", version="v1", plural="volumesnapshots")
CONTENT = dict(group="snapshot.storage.k8s.io", version="v1", plural="volumesnapshotcontents")
CLASSES = dict(group="snapshot.storage.k8s.io", version="v1", plural="volumesnapshotclasses")
DRIVER = "ptjaas.io/local-path"


def claim(name, size="1Gi", source=None, modes=("ReadWriteOnce",)):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
            "storageClassName": "standard"}
    if source:
        spec["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": source}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def snapshot(name, source, cls=None):
    spec = {"source": {"persistentVolumeClaimName": source}}
    if cls:
        spec["volumeSnapshotClassName"] = cls
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture(scope="module")
def snapclass(kube):
    name = "csi-local"
    kube.custom.create_cluster_custom_object(body={
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": name, "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": DRIVER, "deletionPolicy": "Delete"}, **CLASSES)
    return name


def run_pod(kube, ns, name, script, volumes, mounts):
    kube.create_pod(ns, py_pod(name, script, volumes=volumes, mounts=mounts))
    kube.wait_phase(ns, name, "Succeeded")
    return kube.log(ns, name)


def write_file(kube, ns, claim_name, text, pod):
    run_pod(kube, ns, pod, f"open('/data/f.txt', 'w').write({text!r})",
            [{"name": "d", "persistentVolumeClaim": {"claimName": claim_name}}],
            [{"name": "d", "mountPath": "/data"}])


def wait_ready(kube, ns, name):
    return wait_for(lambda: (s := kube.custom.get_namespaced_custom_object(namespace=ns, name=name, **SNAP))
                    .get("status", {}).get("readyToUse") and s, timeout=20, message=f"snapshot {name} ready")


def test_snapshot_content_ready_restore_size_and_restore_copy(kube, ns, snapclass):
    from test_conformance_storage import wait_bound

    kube.core.create_namespaced_persistent_volume_claim(ns, claim("src", "2Gi"))
    wait_bound(kube, ns, "src")
    write_file(kube, ns, "src", "version 1", "w1")
    # no class named: the default class for the claim's driver is used
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("s1", "src"), **SNAP)
    snap = wait_ready(kube, ns, "s1")
    assert snap["spec"]["volumeSnapshotClassName"] == snapclass
    assert snap["status"]["restoreSize"] == "2Gi"
    assert snap["status"]["creationTime"].endswith("Z")
    assert "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection" in snap["metadata"]["finalizers"]
    content = kube.custom.get_cluster_custom_object(name=snap["status"]["boundVolumeSnapshotContentName"], **CONTENT)
    assert content["spec"]["driver"] == DRIVER
    assert content["spec"]["deletionPolicy"] == "Delete"
    assert content["spec"]["volumeSnapshotRef"]["name"] == "s1"
    assert content["spec"]["volumeSnapshotRef"]["uid"] == snap["metadata"]["uid"]
    assert content["status"]["readyToUse"] is True
    assert content["status"]["restoreSize"] == 2 * 1024 ** 3
    assert isinstance(content["status"]["creationTime"], int)

    # the source changes after the snapshot; a claim from the snapshot has the old data
    write_file(kube, ns, "src", "version 2", "w2")
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("restored", "2Gi", source="s1"))
    wait_bound(kube, ns, "restored")
    out = run_pod(kube, ns, "r1", "print(open('/data/f.txt').read())",
                  [{"name": "d", "persistentVolumeClaim": {"claimName": "restored"}}],
                  [{"name": "d", "mountPath": "/data"}])
    assert out.strip() == "version 1"

    # too small for the snapshot: the provisioner says why, the claim stays Pending
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("small", "1Gi", source="s1"))
    ev = kube.wait_event(ns, "small", "ProvisioningFailed", kind="PersistentVolumeClaim")
    assert "is less than the size" in ev.message
    # from a snapshot that does not exist: Pending, with the external-provisioner's message
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("nosnap", "2Gi", source="nope"))
    ev = kube.wait_event(ns, "nosnap", "ProvisioningFailed", kind="PersistentVolumeClaim")
    assert 'volumesnapshots.snapshot.storage.k8s.io "nope" not found' in ev.message
    assert kube.core.read_namespaced_persistent_volume_claim("nosnap", ns).status.phase == "Pending"

    # deleting the snapshot removes its content (deletionPolicy Delete)
    kube.core.delete_namespaced_persistent_volume_claim("small", ns)
    kube.custom.delete_namespaced_custom_object(namespace=ns, name="s1", **SNAP)
    kube.wait_gone(lambda: kube.custom.get_namespaced_custom_object(namespace=ns, name="s1", **SNAP))
    kube.wait_gone(lambda: kube.custom.get_cluster_custom_object(name=content["metadata"]["name"], **CONTENT))


def test_snapshot_errors_are_reported(kube, ns, snapclass):
    from test_conformance_storage import wait_bound

    kube.core.create_namespaced_persistent_volume_claim(ns, claim("e-src"))
    wait_bound(kube, ns, "e-src")
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("bad-class", "e-src", "nope"), **SNAP)
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("bad-claim", "absent"), **SNAP)
    for name, text in [("bad-class", '\\"nope\\" not found'), ("bad-claim", '"absent" not found')]:
        snap = wait_for(lambda: (s := kube.custom.get_namespaced_custom_object(namespace=ns, name=name, **SNAP))
                        .get("status", {}).get("error") and s, timeout=20, message=f"{name} error")
        assert snap["status"]["readyToUse"] is False
        assert text in snap["status"]["error"]["message"]
        kube.wait_event(ns, name, "SnapshotCreationFailed", kind="VolumeSnapshot")


def test_read_only_many_claim_from_a_snapshot_cannot_be_written(kube, ns, snapclass):
    """A ReadOnlyMany claim (made from a snapshot) mounted readOnly: nothing in the pod can write
    it, root included. (Per-mount read-only of a read-write volume is beyond local processes.)"""
    from test_conformance_storage import wait_bound

    kube.core.create_namespaced_persistent_volume_claim(ns, claim("rw-src"))
    wait_bound(kube, ns, "rw-src")
    write_file(kube, ns, "rw-src", "keep me", "ro-w")
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("ro-s", "rw-src"), **SNAP)
    wait_ready(kube, ns, "ro-s")
    kube.core.create_namespaced_persistent_volume_claim(ns, claim("ro-src", source="ro-s", modes=("ReadOnlyMany",)))
    wait_bound(kube, ns, "ro-src")
    script = ("import os\n"
              "print(open('/home/me/old/f.txt').read())\n"
              "for p in ('/home/me/old/f.txt', '/home/me/old/new.txt'):\n"
              "    try:\n"
              "        open(p, 'w').write('x'); print('WROTE', p)\n"
              "    except OSError as e: print('REFUSED', type(e).__name__)\n")
    out = run_pod(kube, ns, "ro-r", script,
                  [{"name": "home", "emptyDir": {}},
                   {"name": "old", "persistentVolumeClaim": {"claimName": "ro-src", "readOnly": True}}],
                  [{"name": "home", "mountPath": "/home/me"},
                   {"name": "old", "mountPath": "/home/me/old", "readOnly": True}])
    lines = out.split()
    assert lines[:2] == ["keep", "me"], out
    assert "WROTE" not in out and out.count("REFUSED") == 2, out
    # the same volume in a second pod: still read-only (locking is idempotent)
    out = run_pod(kube, ns, "ro-r2", script,
                  [{"name": "home", "emptyDir": {}},
                   {"name": "old", "persistentVolumeClaim": {"claimName": "ro-src", "readOnly": True}}],
                  [{"name": "home", "mountPath": "/home/me"},
                   {"name": "old", "mountPath": "/home/me/old", "readOnly": True}])
    assert "WROTE" not in out and out.count("REFUSED") == 2, out
    # deleting the claim deletes its (read-only) data
    kube.core.delete_namespaced_persistent_volume_claim("ro-src", ns)
    kube.wait_gone(lambda: kube.core.read_namespaced_persistent_volume_claim("ro-src", ns))


def _crd_schema(shared_dir, plural):
    path = shared_dir / "schemas" / "snapshot" / f"snapshot.storage.k8s.io_{plural}.yaml"
    if not path.exists():
        pytest.skip(f"{path} not found")
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _validate(schema, obj):
    import jsonschema

    jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator,
                        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_snapshot_objects_match_the_crd_schemas(kube, ns, snapclass, shared_dir):
    from test_conformance_storage import wait_bound

    kube.core.create_namespaced_persistent_volume_claim(ns, claim("schema-src"))
    wait_bound(kube, ns, "schema-src")
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("schema-s", "schema-src"), **SNAP)
    snap = wait_ready(kube, ns, "schema-s")
    content = kube.custom.get_cluster_custom_object(name=snap["status"]["boundVolumeSnapshotContentName"], **CONTENT)
    cls = kube.custom.get_cluster_custom_object(name=snapclass, **CLASSES)
    _validate(_crd_schema(shared_dir, "volumesnapshots"), snap)
    _validate(_crd_schema(shared_dir, "volumesnapshotcontents"), content)
    _validate(_crd_schema(shared_dir, "volumesnapshotclasses"), cls)
    # and the schema would catch a wrong shape (restoreSize on the content is an integer)
    import jsonschema

    bad = dict(content, status=dict(content["status"], restoreSize="1Gi"))
    with pytest.raises(jsonschema.ValidationError):
        _validate(_crd_schema(shared_dir, "volumesnapshotcontents"), bad)
