"""The volume provisioner: an external provisioner (and resizer) for the sandbox's StorageClass, a
plain API client like the CSI sidecars it stands in for.

The PV controller (kube-controller-manager's, or the embedded server's) marks a claim of our class
with ``volume.kubernetes.io/storage-provisioner``; we create a hostPath PersistentVolume for it,
pre-bound through ``claimRef``, and the PV controller binds the two. A released volume with
``reclaimPolicy: Delete`` is deleted (directory and object); a claim whose request grew past its
capacity is expanded. A class parameter ``ptjaas.io/fail: MESSAGE`` makes provisioning fail with
that message (tests of a broken storage backend); ``ptjaas.io/provision-delay: SECONDS`` makes
it provision that long after it first saw the claim (a real provisioner takes a while: tests see
the Pending claim and the scheduler's "unbound immediate PersistentVolumeClaims"). ``bind_delay``
(``ptjaas cluster --bind-delay``) is that delay for every class without the parameter, as a real
CSI driver's: a volume is made seconds after its claim.
"""

import asyncio
import logging
import os
import shutil

from ptjaas_spawner.kube import ApiException
from .kubeclient import EventSink, inform, stop_tasks
from ptjaas_spawner.quantity import parse_quantity
from .snapshotdata import restore_plan, snapshot_data_source, unlock

log = logging.getLogger("ptjaas.cluster")
PROVISIONER = "ptjaas.io/local-path"
PROVISIONER_ANNOTATIONS = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")
SELECTED_NODE = "volume.kubernetes.io/selected-node"
FAIL_PARAMETER = "ptjaas.io/fail"
DELAY_PARAMETER = "ptjaas.io/provision-delay"


class Provisioner:
    def __init__(self, client, volumes_dir, name=PROVISIONER, snapshots_dir=None, bind_delay=0.0):
        self.client = client
        self.bind_delay = float(bind_delay or 0)   # seconds, for classes without DELAY_PARAMETER
        self.volumes_dir = volumes_dir
        self.snapshots_dir = snapshots_dir   # where the snapshotter keeps snapshot data (restores)
        self.name = name
        self.claims = {}    # uid -> claim
        self.volumes = {}   # name -> PV
        self.failed = set()   # (claim uid, message) already reported
        self.first_seen = {}  # claim uid -> loop time (provision-delay)
        self._tasks = []
        self._wake = asyncio.Event()
        self.events = None

    async def start(self):
        os.makedirs(self.volumes_dir, exist_ok=True)
        self.events = EventSink(self.client, self.name)
        self._tasks = [
            asyncio.ensure_future(inform(self.client, "/api/v1/persistentvolumeclaims", self._on_claim,
                                                     on_sync=self._claims_listed)),
            asyncio.ensure_future(inform(self.client, "/api/v1/persistentvolumes", self._on_volume,
                                                     on_sync=self._volumes_listed)),
        ]
        self._worker = asyncio.ensure_future(self._loop())
        return self

    async def stop(self):
        self.client.closing = True
        self._worker.cancel()
        await stop_tasks(self._tasks)
        if self.events is not None:
            self.events.close()

    # --- informers -------------------------------------------------------------------------
    def _claims_listed(self, items):
        self.claims = {c["metadata"]["uid"]: c for c in items}
        self._wake.set()

    def _on_claim(self, event_type, claim):
        if event_type == "DELETED":
            self.claims.pop(claim["metadata"]["uid"], None)
        else:
            self.claims[claim["metadata"]["uid"]] = claim
        self._wake.set()

    def _volumes_listed(self, items):
        self.volumes = {v["metadata"]["name"]: v for v in items}
        self._wake.set()

    def _on_volume(self, event_type, volume):
        if event_type == "DELETED":
            self.volumes.pop(volume["metadata"]["name"], None)
        else:
            self.volumes[volume["metadata"]["name"]] = volume
        self._wake.set()

    async def _loop(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("provisioner pass failed")
                await asyncio.sleep(0.5)
                self._wake.set()

    # --- the work --------------------------------------------------------------------------
    async def reconcile(self):
        for claim in list(self.claims.values()):
            if claim["metadata"].get("deletionTimestamp"):
                continue
            if not claim["spec"].get("volumeName"):
                await self._provision(claim)
            elif (claim.get("status") or {}).get("phase") == "Bound":
                await self._expand(claim)
        for volume in list(self.volumes.values()):
            await self._reclaim(volume)

    def _ours(self, claim):
        annotations = claim["metadata"].get("annotations") or {}
        return any(annotations.get(a) == self.name for a in PROVISIONER_ANNOTATIONS)

    async def _storage_class(self, name):
        return name and await self.client.get(f"/apis/storage.k8s.io/v1/storageclasses/{name}")

    def _event(self, claim, event_type, reason, message):
        self.events.record(dict(claim, kind="PersistentVolumeClaim", apiVersion="v1"), event_type, reason, message)

    async def _provision(self, claim):
        meta = claim["metadata"]
        pv_name = f"pvc-{meta['uid']}"
        if not self._ours(claim) or pv_name in self.volumes:
            return
        cls = await self._storage_class(claim["spec"].get("storageClassName"))
        if not cls:
            return
        failure = (cls.get("parameters") or {}).get(FAIL_PARAMETER)
        if failure:
            message = f'failed to provision volume with StorageClass "{cls["metadata"]["name"]}": {failure}'
            if (meta["uid"], message) not in self.failed:
                self.failed.add((meta["uid"], message))
                self._event(claim, "Warning", "ProvisioningFailed", message)
            return
        if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and not (meta.get("annotations") or {}).get(SELECTED_NODE):
            return
        delay = float((cls.get("parameters") or {}).get(DELAY_PARAMETER) or self.bind_delay)
        if delay > 0:
            loop = asyncio.get_running_loop()
            first = self.first_seen.setdefault(meta["uid"], loop.time())
            if loop.time() - first < delay:
                loop.call_later(first + delay - loop.time() + 0.01, self._wake.set)
                return
        source, problem = await self._restore_source(claim)   # a snapshot dataSource: copy its data
        if problem:
            message = f'failed to provision volume with StorageClass "{cls["metadata"]["name"]}": {problem}'
            if (meta["uid"], message) not in self.failed:
                self.failed.add((meta["uid"], message))
                self._event(claim, "Warning", "ProvisioningFailed", message)
            # the snapshot may become ready: try again later, as the external provisioner does
            asyncio.get_running_loop().call_later(1.0, self._wake.set)
            return
        self._event(claim, "Normal", "Provisioning",
                    f'External provisioner is provisioning volume for claim "{meta["namespace"]}/{meta["name"]}"')
        path = os.path.join(self.volumes_dir, pv_name)
        if source and not os.path.exists(path):
            shutil.copytree(source, path, symlinks=True)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o2775)
        volume = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": self.name}},
            "spec": {"capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                     "accessModes": claim["spec"]["accessModes"],
                     "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy", "Delete"),
                     "storageClassName": cls["metadata"]["name"], "volumeMode": "Filesystem",
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"], "name": meta["name"],
                                  "uid": meta["uid"], "apiVersion": "v1", "resourceVersion": meta["resourceVersion"]},
                     "hostPath": {"path": path, "type": "DirectoryOrCreate"}},
        }
        try:
            self.volumes[pv_name] = await self.client.create("/api/v1/persistentvolumes", volume)
        except ApiException as e:
            if e.status != 409:
                self._event(claim, "Warning", "ProvisioningFailed",
                            f'failed to provision volume with StorageClass "{cls["metadata"]["name"]}": {e}')
                return
        self._event(claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")

    async def _restore_source(self, claim):
        """(path or None, problem or None) of a claim's snapshot data source, as the external
        provisioner with the CSI driver sees it (``snapshotter.restore_plan``)."""
        name = snapshot_data_source(claim)
        if not name or not self.snapshots_dir:
            return None, None
        group = "/apis/snapshot.storage.k8s.io/v1"
        snap = await self.client.get(f"{group}/namespaces/{claim['metadata']['namespace']}/volumesnapshots/{name}")
        content_name = ((snap or {}).get("status") or {}).get("boundVolumeSnapshotContentName")
        content = content_name and await self.client.get(f"{group}/volumesnapshotcontents/{content_name}")
        return restore_plan(claim, snap, content or None, self.snapshots_dir)

    async def _expand(self, claim):
        want = claim["spec"]["resources"]["requests"]["storage"]
        have = ((claim.get("status") or {}).get("capacity") or {}).get("storage", "0")
        volume = self.volumes.get(claim["spec"]["volumeName"])
        if parse_quantity(want) <= parse_quantity(have) or volume is None or not self._provisioned_by_us(volume):
            return
        meta = claim["metadata"]
        if parse_quantity(volume["spec"]["capacity"]["storage"]) < parse_quantity(want):
            self.volumes[volume["metadata"]["name"]] = await self.client.patch(
                f"/api/v1/persistentvolumes/{volume['metadata']['name']}", {"spec": {"capacity": {"storage": want}}})
        updated = await self.client.patch(f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/{meta['name']}/status",
                                          {"status": {"capacity": {"storage": want}}})
        self.claims[meta["uid"]] = updated
        self._event(updated, "Normal", "FileSystemResizeSuccessful",
                    f"MountVolume.NodeExpandVolume succeeded for volume \"{volume['metadata']['name']}\"")

    def _provisioned_by_us(self, volume):
        return (volume["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == self.name

    async def _reclaim(self, volume):
        spec = volume["spec"]
        if not self._provisioned_by_us(volume) or (volume.get("status") or {}).get("phase") not in ("Released", "Failed") \
                or spec.get("persistentVolumeReclaimPolicy", "Delete") != "Delete" or volume["metadata"].get("deletionTimestamp"):
            return
        path = (spec.get("hostPath") or {}).get("path")
        if path and os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.volumes_dir):
            unlock(path)   # a volume that was mounted read-only only
            shutil.rmtree(path, ignore_errors=True)
        await self.client.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}",
                                 {"apiVersion": "v1", "kind": "DeleteOptions",
                                  "preconditions": {"uid": volume["metadata"]["uid"]}})
