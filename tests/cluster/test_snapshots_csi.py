"""Snapshots of the sandbox provisioner's volumes, on the embedded cluster and on a real
kube-apiserver with the snapshot CRDs (the same snapshotter, an API client, serves both), as a
CSI driver with the external snapshotter:
VolumeSnapshot -> VolumeSnapshotContent, readyToUse, restoreSize, default class, errors as
status.error + events, finalizers, claims restored from a snapshot dataSource get a copy of
the data (as it was when the snapshot was taken), and a read-only mount cannot be written.
The objects are checked against the snapshot CRDs' schemas in ../shared/schemas/snapshot/."""

import pytest
import yaml

from tests.cluster.k8s_conformance import py_pod, wait_for

pytestmark = pytest.mark.timeout(90)


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
def snapclass(kube, backend):
    """The default class of the provisioner's driver (removed again: the real cluster is the
    session's, and two default classes for one driver make the default ambiguous)."""
    name = "csi-local-default"
    kube.custom.create_cluster_custom_object(body={
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": name, "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": DRIVER, "deletionPolicy": "Delete"}, **CLASSES)
    yield name
    if backend == "real":   # (the module's embedded cluster goes with its class)
        kube.custom.delete_cluster_custom_object(name=name, **CLASSES)


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
    from tests.cluster.test_conformance_storage import wait_bound

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
    from tests.cluster.test_conformance_storage import wait_bound

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
    from tests.cluster.test_conformance_storage import wait_bound

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
    # deleting the claim deletes its (read-only) data, once no pod (finished ones included) has it
    kube.core.delete_namespaced_persistent_volume_claim("ro-src", ns)
    assert kube.core.read_namespaced_persistent_volume_claim("ro-src", ns).metadata.deletion_timestamp
    for pod in ("ro-r", "ro-r2"):
        kube.core.delete_namespaced_pod(pod, ns)
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
    from tests.cluster.test_conformance_storage import wait_bound

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


def test_snapshot_status_is_written_through_its_subresource(kube, ns):
    """The CRDs have the status subresource: a status in a create or an update of the object is
    dropped; only ``/status`` writes it. (The snapshot waits for its Pending claim meanwhile.)"""
    pending = claim("never-bound")
    pending["spec"]["storageClassName"] = "no-such-class"
    kube.core.create_namespaced_persistent_volume_claim(ns, pending)
    body = dict(snapshot("st", "never-bound"), status={"readyToUse": True})
    created = kube.custom.create_namespaced_custom_object(namespace=ns, body=body, **SNAP)
    assert "status" not in created
    patched = kube.custom.patch_namespaced_custom_object(namespace=ns, name="st", body={"status": {"readyToUse": True}},
                                                         **SNAP)
    assert "status" not in patched
    patched = kube.custom.patch_namespaced_custom_object_status(namespace=ns, name="st",
                                                                body={"status": {"readyToUse": False}}, **SNAP)
    assert patched["status"] == {"readyToUse": False}
    replaced = kube.custom.replace_namespaced_custom_object(
        namespace=ns, name="st", body={k: v for k, v in patched.items() if k != "status"}, **SNAP)
    assert replaced["status"] == {"readyToUse": False}
    assert kube.custom.get_namespaced_custom_object(namespace=ns, name="st", **SNAP)["status"] == {"readyToUse": False}


def _refusal(kube, method, path, body, content_type="application/json"):
    r = kube.raw(method, path, json=body, headers={"Content-Type": content_type})
    assert r.status_code == 422, r.text
    status = r.json()
    return status["message"], {(c["field"], c["reason"], c["message"]) for c in status["details"]["causes"]}


def test_snapshot_crd_validation(kube, ns):
    """The CRDs' schemas and CEL rules refuse what the real server refuses, saying the same."""
    group = "/apis/snapshot.storage.k8s.io/v1"
    snaps = f"{group}/namespaces/{ns}/volumesnapshots"
    vs = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot"}
    message, causes = _refusal(kube, "POST", snaps, dict(vs, metadata={"name": "no-spec"}))
    assert message.startswith('VolumeSnapshot.snapshot.storage.k8s.io "no-spec" is invalid: [spec: Required value, ')
    assert ("spec", "FieldValueRequired", "Required value") in causes and len(causes) == 2
    message, causes = _refusal(kube, "POST", snaps, dict(vs, metadata={"name": "both"}, spec={"source": {
        "persistentVolumeClaimName": "a", "volumeSnapshotContentName": "b"}}))
    assert causes == {("spec.source", "FieldValueInvalid", "Invalid value: exactly one of volumeSnapshotContentName "
                                                           "and persistentVolumeClaimName must be set")}
    message, causes = _refusal(kube, "POST", snaps, dict(vs, metadata={"name": "no-class"}, spec={
        "volumeSnapshotClassName": "", "source": {"persistentVolumeClaimName": "a"}}))
    assert causes == {("spec.volumeSnapshotClassName", "FieldValueInvalid",
                       'Invalid value: "": volumeSnapshotClassName must not be the empty string when set')}
    # the source is immutable (the snapshot waits for its absent claim meanwhile)
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("fixed", "absent-claim"), **SNAP)
    message, causes = _refusal(kube, "PATCH", f"{snaps}/fixed", {"spec": {"source": {"persistentVolumeClaimName": "z"}}},
                               "application/merge-patch+json")
    assert causes == {("spec.source.persistentVolumeClaimName", "FieldValueInvalid",
                       'Invalid value: "z": persistentVolumeClaimName is immutable')}
    # a class needs a driver and a known deletion policy
    message, causes = _refusal(kube, "POST", f"{group}/volumesnapshotclasses", {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": f"{ns}-bad"},
        "deletionPolicy": "Sometimes"})
    assert causes == {("deletionPolicy", "FieldValueNotSupported",
                       'Unsupported value: "Sometimes": supported values: "Delete", "Retain"'),
                      ("driver", "FieldValueRequired", "Required value")}
    # a content names its snapshot fully and has exactly one source
    message, causes = _refusal(kube, "POST", f"{group}/volumesnapshotcontents", {
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent", "metadata": {"name": f"{ns}-bad"},
        "spec": {"deletionPolicy": "Delete", "driver": DRIVER, "source": {"volumeHandle": "v", "snapshotHandle": "s"},
                 "volumeSnapshotRef": {"name": "n"}}})
    assert causes == {
        ("spec.volumeSnapshotRef", "FieldValueInvalid", "Invalid value: both spec.volumeSnapshotRef.name and "
                                                        "spec.volumeSnapshotRef.namespace must be set"),
        ("spec.source", "FieldValueInvalid", "Invalid value: exactly one of volumeHandle and snapshotHandle must be set")}


def test_snapshot_printer_columns(kube, ns, snapclass):
    """``kubectl get volumesnapshots`` & co: the CRDs' printer columns, cells as the real server's."""
    from tests.cluster.test_conformance_storage import wait_bound

    kube.core.create_namespaced_persistent_volume_claim(ns, claim("cols-src"))
    wait_bound(kube, ns, "cols-src")
    kube.custom.create_namespaced_custom_object(namespace=ns, body=snapshot("cols", "cols-src"), **SNAP)
    snap = wait_ready(kube, ns, "cols")
    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    group = "/apis/snapshot.storage.k8s.io/v1"

    def get(path):
        r = kube.raw("GET", path, headers=table)
        assert r.status_code == 200, r.text
        body = r.json()
        return [c["name"] for c in body["columnDefinitions"]], {row["cells"][0]: row["cells"] for row in body["rows"]}

    names, rows = get(f"{group}/namespaces/{ns}/volumesnapshots")
    assert names == ["Name", "ReadyToUse", "SourcePVC", "SourceSnapshotContent", "RestoreSize", "SnapshotClass",
                     "SnapshotContent", "CreationTime", "Age"]
    content = snap["status"]["boundVolumeSnapshotContentName"]
    cells = rows["cols"]
    assert cells[:7] == ["cols", True, "cols-src", None, "1Gi", snapclass, content]
    assert all(isinstance(c, str) and c[-1] in "smhdy" for c in cells[7:]), cells
    names, rows = get(f"{group}/volumesnapshotcontents")
    assert names == ["Name", "ReadyToUse", "RestoreSize", "DeletionPolicy", "Driver", "VolumeSnapshotClass",
                     "VolumeSnapshot", "VolumeSnapshotNamespace", "Age"]
    assert rows[content][:8] == [content, True, 1024 ** 3, "Delete", DRIVER, snapclass, "cols", ns]
    names, rows = get(f"{group}/volumesnapshotclasses")
    assert names == ["Name", "Driver", "DeletionPolicy", "Age"]
    assert rows[snapclass][:3] == [snapclass, DRIVER, "Delete"]


def test_unknown_snapshot_fields_pruned_or_refused(kube, ns):
    """The CRDs' structural schemas: an unknown field is dropped, and refused under Strict."""
    path = f"/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots"
    body = dict(snapshot("extra", "absent-claim"))
    body["spec"] = dict(body["spec"], bogus=1)
    r = kube.raw("POST", path + "?fieldValidation=Strict", json=dict(body, metadata={"name": "strict"}))
    assert r.status_code == 400, r.text
    assert r.json()["message"] == ('VolumeSnapshot in version "v1" cannot be handled as a VolumeSnapshot: '
                                   'strict decoding error: unknown field "spec.bogus"')
    r = kube.raw("POST", path, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["spec"] == {"source": {"persistentVolumeClaimName": "absent-claim"}}


def test_embedded_crd_schemas_are_the_shared_ones(shared_dir):
    """The structural schemas the embedded server prunes with are those of ../shared/schemas."""
    from ptjaas_sandbox.cluster.openapi import crd_schemas

    def strip(s):
        if isinstance(s, dict):
            return {k: strip(v) for k, v in s.items() if k not in ("description", "x-kubernetes-validations")}
        return [strip(v) for v in s] if isinstance(s, list) else s

    for plural, schema in crd_schemas().items():
        assert schema == strip(_crd_schema(shared_dir, plural)), plural
