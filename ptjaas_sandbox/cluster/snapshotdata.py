"""Snapshot data on the node: which snapshot a claim is to be restored from, where its data is
(or why a claim cannot be provisioned from it yet, as the external-provisioner words it), and
making a restored read-only volume unwritable. Used by the snapshotter, the volume provisioner
and the node agent."""

import os
import shutil
import subprocess

from ptjaas_spawner.quantity import parse_quantity

GROUP = "snapshot.storage.k8s.io"


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
