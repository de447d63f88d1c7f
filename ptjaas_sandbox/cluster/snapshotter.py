"""The embedded cluster's snapshots: the external snapshot-controller + csi-snapshotter sidecar
+ a CSI driver for the cluster's own provisioner (``ptjaas.io/local-path``), in one controller.

- A ``VolumeSnapshot`` of a bound claim (``spec.source.persistentVolumeClaimName``) with a
  ``VolumeSnapshotClass`` (named, or the class annotated
  ``snapshot.storage.kubernetes.io/is-default-class: "true"`` whose driver provisions the
  claim) gets a ``VolumeSnapshotContent`` ``snapcontent-<snapshot uid>`` (driver, deletion
  policy, volume handle, a ref back to the snapshot), the data is copied, and both objects'
  statuses say ``readyToUse``, ``creationTime`` and ``restoreSize`` (bytes on the content, a
  quantity on the snapshot), as the real controllers write them. A pre-provisioned snapshot
  (``spec.source.volumeSnapshotContentName``) binds to that content.
- Errors (unknown class, class of another driver, claim missing) go to ``status.error`` and
  a ``Warning`` event, as the snapshot-controller reports them; an unbound claim is waited for.
- Finalizers as upstream: a bound snapshot carries ``volumesnapshot-bound-protection`` (and
  ``volumesnapshot-as-source-protection`` while a claim is being provisioned from it). On
  deletion the content goes too when its ``deletionPolicy`` is ``Delete`` (its data with it).
- Restores: ``restore_source(pvc)`` tells the volume provisioner where the data of a claim's
  ``dataSource``/``dataSourceRef`` snapshot is, or why it cannot provision yet.
"""

import copy
import logging
import os
import shutil
import subprocess
from datetime import datetime, timezone

from ptjaas_spawner.quantity import format_quantity, parse_quantity
from .resources import BY_PLURAL
from .store import now_iso

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL
GROUP = "snapshot.storage.k8s.io"
DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
BOUND_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
SOURCE_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
CONTENT_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
COMPONENT = "snapshot-controller"


def _rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_data_source(pvc):
    """The snapshot name a claim is to be restored from, or None."""
    spec = pvc.get("spec") or {}
    for key in ("dataSourceRef", "dataSource"):
        ref = spec.get(key) or {}
        if ref.get("kind") == "VolumeSnapshot" and ref.get("apiGroup") == GROUP and ref.get("name"):
            return ref["name"]
    return None


def lock_read_only(path):
    """Make a directory tree unwritable for the process a pod runs as (root too: the
    immutable attribute where the filesystem has it; file modes otherwise). Idempotent."""
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                os.chmod(os.path.join(root, name), 0o444)
            except OSError:  # locked already
                pass
        try:
            os.chmod(root, 0o555)
        except OSError:
            pass
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "+i", path], capture_output=True, check=False)


def unlock(path):
    """Undo ``lock_read_only`` (before the volume's data is deleted)."""
    if not path or not os.path.isdir(path):
        return
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-R", "-i", path], capture_output=True, check=False)
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o775)
        for name in files:
            try:
                os.chmod(os.path.join(root, name), 0o664)
            except OSError:
                pass


def restore_plan(pvc, snap, content, snapshots_dir):
    """Pure: where the data of a claim's snapshot data source is, or why the claim cannot be
    provisioned (yet), as the external-provisioner words it. ``snap``/``content``: the
    VolumeSnapshot named by the claim's dataSource and its bound content (None if absent).
    Returns (path, None), (None, message) or (None, None) when the claim has no such source.
    (An API-client provisioner fetches the two objects and calls this.)"""
    name = snapshot_data_source(pvc)
    if not name:
        return None, None
    prefix = f"error getting handle for DataSource Type VolumeSnapshot by Name {name}"
    if snap is None:
        return None, (f"{prefix}: error getting snapshot {name} from api server: "
                      f'volumesnapshots.snapshot.storage.k8s.io "{name}" not found')
    if snap["metadata"].get("deletionTimestamp"):
        return None, f"{prefix}: snapshot {name} is currently being deleted"
    status = snap.get("status") or {}
    if not status.get("readyToUse"):
        return None, f"{prefix}: snapshot {name} is not Ready"
    if content is None:
        return None, f"{prefix}: error getting snapshot content {status.get('boundVolumeSnapshotContentName')}"
    want = parse_quantity(pvc["spec"]["resources"]["requests"]["storage"])
    have = (content.get("status") or {}).get("restoreSize") or 0
    if want < have:
        return None, (f"requested volume size {int(want)} is less than the size {int(have)} "
                      f"for the source snapshot {name}")
    handle = (content.get("status") or {}).get("snapshotHandle") or content["metadata"]["name"]
    return os.path.join(snapshots_dir, handle), None


class Snapshotter:
    def __init__(self, cluster):
        self.cluster = cluster
        self.store = cluster.store
        self.registry = cluster.registry
        self.events = cluster.events

    # --- reconcile ---------------------------------------------------------------------
    def reconcile(self):
        for snap in self.store.list(T["volumesnapshots"]):
            if snap["metadata"].get("deletionTimestamp"):
                self._finish_deletion(snap)
                continue
            status = snap.get("status") or {}
            if status.get("readyToUse") and status.get("boundVolumeSnapshotContentName"):
                self._protect_as_source(snap)
                continue
            if status.get("error"):
                continue
            self._take(snap)

    def _fail(self, snap, message, reason="SnapshotCreationFailed"):
        new = copy.deepcopy(snap)
        new["status"] = dict(new.get("status") or {}, readyToUse=False,
                             error={"message": message, "time": now_iso()})
        self.store.update(T["volumesnapshots"], new)
        self.events.record(new, "Warning", reason, message, COMPONENT)

    def _class_for(self, snap, driver):
        name = (snap.get("spec") or {}).get("volumeSnapshotClassName")
        if name:
            return name, self.store.get(T["volumesnapshotclasses"], "", name)
        defaults = [c for c in self.store.list(T["volumesnapshotclasses"])
                    if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
                    and c.get("driver") == driver]
        if len(defaults) == 1:
            return defaults[0]["metadata"]["name"], defaults[0]
        return None, None

    def _take(self, snap):
        meta, spec = snap["metadata"], snap.get("spec") or {}
        source = spec.get("source") or {}
        if source.get("volumeSnapshotContentName"):
            return self._bind_pre_provisioned(snap, source["volumeSnapshotContentName"])
        claim = source.get("persistentVolumeClaimName")
        pvc = claim and self.store.get(T["persistentvolumeclaims"], meta["namespace"], claim)
        if not pvc:
            return self._fail(snap, f'failed to take snapshot {meta["name"]}: persistentvolumeclaim "{claim}" not found')
        if pvc.get("status", {}).get("phase") != "Bound":
            return   # the snapshot-controller waits for the claim to bind
        pv = self.store.get(T["persistentvolumes"], "", pvc["spec"].get("volumeName") or "")
        driver = (pv["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by", "") if pv else ""
        class_name, cls = self._class_for(snap, driver)
        if cls is None:
            if class_name:
                return self._fail(snap, f'failed to get input parameters to create snapshot {meta["name"]}: '
                                        f'"volumesnapshotclass.snapshot.storage.k8s.io \\"{class_name}\\" not found"')
            return self._fail(snap, "Failed to set default snapshot class with error cannot find default snapshot class",
                              "SnapshotContentCreationFailed")
        if cls.get("driver") != driver:
            return self._fail(snap, f'failed to take snapshot {meta["name"]}: VolumeSnapshotClass {class_name!r} is for '
                                    f'driver {cls.get("driver")!r}, the volume of claim {claim!r} is provisioned by {driver!r}')
        content_name = f"snapcontent-{meta['uid']}"
        target = os.path.join(self.cluster.snapshots_dir, content_name)
        data = (pv["spec"].get("hostPath") or {}).get("path")
        if data and os.path.isdir(data) and not os.path.exists(target):
            shutil.copytree(data, target + ".tmp", symlinks=True)
            os.replace(target + ".tmp", target)
        taken = datetime.now(timezone.utc)
        restore_bytes = int(parse_quantity(pvc["status"].get("capacity", {}).get("storage")
                                           or pvc["spec"]["resources"]["requests"]["storage"]))
        if self.store.get(T["volumesnapshotcontents"], "", content_name) is None:
            self.store.create(T["volumesnapshotcontents"], {
                "metadata": {"name": content_name, "finalizers": [CONTENT_FINALIZER],
                             "annotations": {"snapshot.storage.kubernetes.io/volumesnapshot-being-created": "no"}},
                "spec": {"deletionPolicy": cls.get("deletionPolicy", "Delete"), "driver": driver,
                         "volumeSnapshotClassName": class_name, "source": {"volumeHandle": pv["metadata"]["name"]},
                         "sourceVolumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                         "volumeSnapshotRef": {"kind": "VolumeSnapshot", "apiVersion": f"{GROUP}/v1",
                                               "name": meta["name"], "namespace": meta["namespace"],
                                               "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}},
                "status": {"readyToUse": True, "snapshotHandle": target, "restoreSize": restore_bytes,
                           "creationTime": int(taken.timestamp() * 1e9)},
            })
        new = copy.deepcopy(snap)
        new["spec"].setdefault("volumeSnapshotClassName", class_name)
        finalizers = new["metadata"].setdefault("finalizers", [])
        if BOUND_FINALIZER not in finalizers:
            finalizers.append(BOUND_FINALIZER)
        new["status"] = {"boundVolumeSnapshotContentName": content_name, "creationTime": _rfc3339(taken),
                         "readyToUse": True, "restoreSize": format_quantity(restore_bytes, "storage")}
        self.store.update(T["volumesnapshots"], new)
        self.events.record(new, "Normal", "SnapshotCreated", f"Snapshot {meta['namespace']}/{meta['name']} was successfully created by the CSI driver.", "csi-snapshotter " + driver)
        self.events.record(new, "Normal", "SnapshotReady", f"Snapshot {meta['namespace']}/{meta['name']} is ready to use.", "csi-snapshotter " + driver)

    def _bind_pre_provisioned(self, snap, content_name):
        content = self.store.get(T["volumesnapshotcontents"], "", content_name)
        meta = snap["metadata"]
        if content is None:
            return self._fail(snap, f'VolumeSnapshotContent "{content_name}" not found', "SnapshotContentMissing")
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if ref.get("name") != meta["name"] or ref.get("namespace") != meta["namespace"]:
            return self._fail(snap, f"VolumeSnapshotContent {content_name} is bound to another snapshot",
                              "SnapshotContentMisbound")
        status = content.get("status") or {}
        new = copy.deepcopy(snap)
        new["metadata"].setdefault("finalizers", [])
        if BOUND_FINALIZER not in new["metadata"]["finalizers"]:
            new["metadata"]["finalizers"].append(BOUND_FINALIZER)
        created = status.get("creationTime")
        new["status"] = {"boundVolumeSnapshotContentName": content_name, "readyToUse": bool(status.get("readyToUse")),
                         "restoreSize": format_quantity(status.get("restoreSize", 0), "storage")}
        if created:
            new["status"]["creationTime"] = _rfc3339(datetime.fromtimestamp(created / 1e9, timezone.utc))
        self.store.update(T["volumesnapshots"], new)

    # --- as a restore source -----------------------------------------------------------
    def _claims_restoring_from(self, snap):
        meta = snap["metadata"]
        return [p for p in self.store.list(T["persistentvolumeclaims"], meta["namespace"])
                if snapshot_data_source(p) == meta["name"] and p.get("status", {}).get("phase") != "Bound"]

    def _protect_as_source(self, snap):
        finalizers = snap["metadata"].get("finalizers") or []
        wanted = bool(self._claims_restoring_from(snap))
        if wanted == (SOURCE_FINALIZER in finalizers):
            return
        new = copy.deepcopy(snap)
        new["metadata"]["finalizers"] = ([f for f in finalizers if f != SOURCE_FINALIZER]
                                         + ([SOURCE_FINALIZER] if wanted else []))
        self.store.update(T["volumesnapshots"], new)

    def restore_source(self, pvc):
        """For the provisioner: (path or None, problem or None). (None, None): no snapshot
        data source; (None, message): cannot provision (yet); (path, None): copy that."""
        name = snapshot_data_source(pvc)
        if not name:
            return None, None
        snap = self.store.get(T["volumesnapshots"], pvc["metadata"]["namespace"], name)
        content_name = ((snap or {}).get("status") or {}).get("boundVolumeSnapshotContentName") or ""
        content = self.store.get(T["volumesnapshotcontents"], "", content_name)
        return restore_plan(pvc, snap, content, self.cluster.snapshots_dir)

    # --- deletion ----------------------------------------------------------------------
    def _finish_deletion(self, snap):
        finalizers = snap["metadata"].get("finalizers") or []
        if self._claims_restoring_from(snap):
            return   # as-source protection: provisioning from it goes first
        content_name = (snap.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = content_name and self.store.get(T["volumesnapshotcontents"], "", content_name)
        if content:
            if content["spec"].get("deletionPolicy", "Delete") == "Delete":
                self.store.remove(T["volumesnapshotcontents"], "", content_name)
                shutil.rmtree(os.path.join(self.cluster.snapshots_dir, content_name), ignore_errors=True)
            else:   # Retain: the content stays, unbound from the snapshot
                new = copy.deepcopy(content)
                new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or []
                                                 if f != CONTENT_FINALIZER]
                self.store.update(T["volumesnapshotcontents"], new)
        ours = (BOUND_FINALIZER, SOURCE_FINALIZER)
        rest = [f for f in finalizers if f not in ours]
        if rest != finalizers:
            new = copy.deepcopy(snap)
            new["metadata"]["finalizers"] = rest
            snap = self.store.update(T["volumesnapshots"], new)
        if not rest:
            self.registry.finish_delete(T["volumesnapshots"], snap["metadata"]["namespace"], snap["metadata"]["name"])

    def on_deleted(self, snap):
        """A snapshot removed without going through the finalizers (e.g. none were set yet)."""
        content_name = (snap.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = content_name and self.store.get(T["volumesnapshotcontents"], "", content_name)
        if content and content["spec"].get("deletionPolicy", "Delete") == "Delete":
            self.store.remove(T["volumesnapshotcontents"], "", content_name)
            shutil.rmtree(os.path.join(self.cluster.snapshots_dir, content_name), ignore_errors=True)
