"""Snapshots: the external snapshot-controller + csi-snapshotter sidecar + a CSI driver for the
sandbox's own provisioner (``ptjaas.io/local-path``), in one controller that is a plain API client
(``kubeclient``: informers on VolumeSnapshots, VolumeSnapshotContents, VolumeSnapshotClasses,
claims and volumes; writes with merge patches, status through the ``status`` subresource), so the
same code serves the embedded API server and a real kube-apiserver with the snapshot CRDs.

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
  ``volumesnapshot-as-source-protection`` while a claim is being provisioned from it); a content
  of ours carries ``volumesnapshotcontent-bound-protection``. On deletion the content goes too
  when its ``deletionPolicy`` is ``Delete`` (its data with it), also when its snapshot vanished.
- Restores: ``snapshotdata.restore_plan`` tells the volume provisioner where the data of a
  claim's ``dataSource``/``dataSourceRef`` snapshot is, or why it cannot provision yet.
"""

import asyncio
import logging
import os
import shutil
from datetime import datetime, timezone

from ptjaas_spawner.quantity import format_quantity, parse_quantity
from ptjaas_spawner.kube import ApiException
from .kubeclient import EventSink, inform, stop_tasks
from .snapshotdata import GROUP, snapshot_data_source, unlock
from .store import now_iso

log = logging.getLogger("ptjaas.cluster")
DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
BOUND_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
SOURCE_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
CONTENT_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
COMPONENT = "snapshot-controller"


def _rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


API = f"/apis/{GROUP}/v1"
SNAPSHOTS, CONTENTS, CLASSES = f"{API}/volumesnapshots", f"{API}/volumesnapshotcontents", f"{API}/volumesnapshotclasses"
CLAIMS, VOLUMES = "/api/v1/persistentvolumeclaims", "/api/v1/persistentvolumes"


def _snapshot_path(ns, name):
    return f"{API}/namespaces/{ns}/volumesnapshots/{name}"


def _newer_or_same(old, new):
    """Whether ``new`` is not an older version of ``old`` (a watch event arriving after our own
    write's answer must not put the older object back in the cache)."""
    try:
        return int(new["metadata"]["resourceVersion"]) >= int(old["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class Snapshotter:
    """The snapshot controller + CSI snapshotter of driver ``driver`` (our provisioner's), a client
    of the API server behind ``client``; snapshot data under ``snapshots_dir``."""

    def __init__(self, client, snapshots_dir, driver=None):
        from .provisioner import PROVISIONER
        self.client = client
        self.snapshots_dir = snapshots_dir
        self.driver = driver or PROVISIONER
        self.caches = {name: {} for name in ("snapshots", "contents", "classes", "claims", "volumes")}
        self.synced = set()
        self._tasks = []
        self._worker = None
        self._wake = asyncio.Event()
        self.controller_events = self.driver_events = None

    snapshots = property(lambda self: self.caches["snapshots"])
    contents = property(lambda self: self.caches["contents"])
    classes = property(lambda self: self.caches["classes"])
    claims = property(lambda self: self.caches["claims"])
    volumes = property(lambda self: self.caches["volumes"])

    async def start(self):
        os.makedirs(self.snapshots_dir, exist_ok=True)
        self.controller_events = EventSink(self.client, COMPONENT)
        self.driver_events = EventSink(self.client, f"csi-snapshotter {self.driver}")
        self._tasks = [asyncio.ensure_future(inform(self.client, path, self._on_event(name), on_sync=self._on_sync(name)))
                       for name, path in (("snapshots", SNAPSHOTS), ("contents", CONTENTS), ("classes", CLASSES),
                                          ("claims", CLAIMS), ("volumes", VOLUMES))]
        self._worker = asyncio.ensure_future(self._loop())
        return self

    async def stop(self):
        self.client.closing = True
        if self._worker is not None:
            self._worker.cancel()
        await stop_tasks(self._tasks)
        for sink in (self.controller_events, self.driver_events):
            if sink is not None:
                sink.close()

    # --- informers -------------------------------------------------------------------------
    @staticmethod
    def _key(obj):
        meta = obj["metadata"]
        return (meta["namespace"], meta["name"]) if meta.get("namespace") else meta["name"]

    def _on_sync(self, name):
        def synced(items):
            self.caches[name] = {self._key(o): o for o in items}
            self.synced.add(name)
            self._wake.set()
        return synced

    def _on_event(self, name):
        def event(event_type, obj):
            cache, key = self.caches[name], self._key(obj)
            if event_type == "DELETED":
                if cache.get(key, obj)["metadata"].get("uid") == obj["metadata"].get("uid"):
                    cache.pop(key, None)
            elif key not in cache or _newer_or_same(cache[key], obj):
                cache[key] = obj
            self._wake.set()
        return event

    def _remember(self, name, obj):
        if obj:
            self.caches[name][self._key(obj)] = obj
        return obj

    async def _loop(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            if len(self.synced) < len(self.caches):
                continue
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.client.closing:
                    return   # the API server is going away with us
                if isinstance(e, ApiException) and e.status == 409:
                    log.debug("snapshotter: %s; again", e)   # an object changed under us: read it anew
                else:
                    log.exception("snapshotter pass failed")
                await asyncio.sleep(0.3)
                self._wake.set()

    # --- the work --------------------------------------------------------------------------
    async def reconcile(self):
        for snap in list(self.snapshots.values()):
            if snap["metadata"].get("deletionTimestamp"):
                await self._finish_deletion(snap)
                continue
            status = snap.get("status") or {}
            if status.get("readyToUse") and status.get("boundVolumeSnapshotContentName"):
                await self._protect_as_source(snap)
                continue
            if status.get("error"):
                continue
            await self._take(snap)
        for content in list(self.contents.values()):
            if (content.get("spec") or {}).get("driver") == self.driver:
                await self._reconcile_content(content)

    async def _set_status(self, snap, status):
        meta = snap["metadata"]
        return self._remember("snapshots", await self.client.patch(
            _snapshot_path(meta["namespace"], meta["name"]) + "/status", {"status": status}))

    async def _set_finalizers(self, path, cache, obj, finalizers):
        return self._remember(cache, await self.client.patch(path, {"metadata": {
            "finalizers": finalizers, "resourceVersion": obj["metadata"]["resourceVersion"]}}))

    def _event(self, sink, snap, event_type, reason, message):
        sink.record(dict(snap, kind="VolumeSnapshot", apiVersion=f"{GROUP}/v1"), event_type, reason, message)

    async def _fail(self, snap, message, reason="SnapshotCreationFailed"):
        new = await self._set_status(snap, {"readyToUse": False, "error": {"message": message, "time": now_iso()}})
        self._event(self.controller_events, new, "Warning", reason, message)

    def _class_for(self, snap, driver):
        name = (snap.get("spec") or {}).get("volumeSnapshotClassName")
        if name:
            return name, self.classes.get(name)
        defaults = [c for c in self.classes.values()
                    if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
                    and c.get("driver") == driver]
        if len(defaults) == 1:
            return defaults[0]["metadata"]["name"], defaults[0]
        return None, None

    async def _claim(self, namespace, name):
        """The claim from the cache, else from the server (the claims' watch may lag the snapshot's)."""
        found = self.claims.get((namespace, name))
        if found is None and name:
            found = self._remember("claims", await self.client.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"))
        return found

    async def _take(self, snap):
        meta, spec = snap["metadata"], snap.get("spec") or {}
        source = spec.get("source") or {}
        if source.get("volumeSnapshotContentName"):
            return await self._bind_pre_provisioned(snap, source["volumeSnapshotContentName"])
        claim = source.get("persistentVolumeClaimName")
        pvc = await self._claim(meta["namespace"], claim)
        if not pvc:
            return await self._fail(snap, f'failed to take snapshot {meta["name"]}: persistentvolumeclaim "{claim}" not found')
        if (pvc.get("status") or {}).get("phase") != "Bound":
            return   # the snapshot-controller waits for the claim to bind
        pv_name = pvc["spec"].get("volumeName") or ""
        pv = self.volumes.get(pv_name) or self._remember("volumes", await self.client.get(f"{VOLUMES}/{pv_name}"))
        driver = (pv["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by", "") if pv else ""
        class_name, cls = self._class_for(snap, driver)
        if cls is None:
            if class_name:
                return await self._fail(snap, f'failed to get input parameters to create snapshot {meta["name"]}: '
                                              f'"volumesnapshotclass.snapshot.storage.k8s.io \\"{class_name}\\" not found"')
            return await self._fail(snap, "Failed to set default snapshot class with error cannot find default snapshot class",
                                    "SnapshotContentCreationFailed")
        if cls.get("driver") != driver:
            return await self._fail(snap, f'failed to take snapshot {meta["name"]}: VolumeSnapshotClass {class_name!r} is for '
                                          f'driver {cls.get("driver")!r}, the volume of claim {claim!r} is provisioned by {driver!r}')
        if driver != self.driver:
            return   # another driver's snapshotter takes it
        content_name = f"snapcontent-{meta['uid']}"
        target = os.path.join(self.snapshots_dir, content_name)
        data = (pv["spec"].get("hostPath") or {}).get("path")
        if data and os.path.isdir(data) and not os.path.exists(target):
            shutil.copytree(data, target + ".tmp", symlinks=True, dirs_exist_ok=True)
            os.replace(target + ".tmp", target)
        os.makedirs(target, exist_ok=True)
        taken = datetime.now(timezone.utc)
        restore_bytes = int(parse_quantity((pvc.get("status") or {}).get("capacity", {}).get("storage")
                                           or pvc["spec"]["resources"]["requests"]["storage"]))
        content = self.contents.get(content_name)
        created = False
        if content is None:
            body = {
                "apiVersion": f"{GROUP}/v1", "kind": "VolumeSnapshotContent",
                "metadata": {"name": content_name, "finalizers": [CONTENT_FINALIZER],
                             "annotations": {"snapshot.storage.kubernetes.io/volumesnapshot-being-created": "no"}},
                "spec": {"deletionPolicy": cls.get("deletionPolicy", "Delete"), "driver": driver,
                         "volumeSnapshotClassName": class_name, "source": {"volumeHandle": pv["metadata"]["name"]},
                         "sourceVolumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                         "volumeSnapshotRef": {"kind": "VolumeSnapshot", "apiVersion": f"{GROUP}/v1",
                                               "name": meta["name"], "namespace": meta["namespace"],
                                               "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}}}
            try:
                content = self._remember("contents", await self.client.create(CONTENTS, body))
                created = True
            except ApiException as e:
                if e.status != 409:
                    raise
                content = self._remember("contents", await self.client.get(f"{CONTENTS}/{content_name}"))
        content_status = content.get("status") or {}
        if not content_status.get("readyToUse"):   # the csi-snapshotter's part: the driver made it
            content = self._remember("contents", await self.client.patch(f"{CONTENTS}/{content_name}/status", {"status": {
                "readyToUse": True, "snapshotHandle": target, "restoreSize": restore_bytes,
                "creationTime": int(taken.timestamp() * 1e9)}}))
            content_status = content["status"]
        else:
            taken = datetime.fromtimestamp(content_status["creationTime"] / 1e9, timezone.utc)
        finalizers = list(meta.get("finalizers") or [])
        if BOUND_FINALIZER not in finalizers or not spec.get("volumeSnapshotClassName"):
            snap = self._remember("snapshots", await self.client.patch(_snapshot_path(meta["namespace"], meta["name"]), {
                "metadata": {"finalizers": finalizers + [BOUND_FINALIZER] * (BOUND_FINALIZER not in finalizers),
                             "resourceVersion": meta["resourceVersion"]},
                "spec": {"volumeSnapshotClassName": class_name}}))
        snap = await self._set_status(snap, {
            "boundVolumeSnapshotContentName": content_name, "creationTime": _rfc3339(taken), "readyToUse": True,
            "restoreSize": format_quantity(content_status.get("restoreSize", restore_bytes), "storage"), "error": None})
        if created:
            where = f"{meta['namespace']}/{meta['name']}"
            self._event(self.driver_events, snap, "Normal", "SnapshotCreated",
                        f"Snapshot {where} was successfully created by the CSI driver.")
            self._event(self.driver_events, snap, "Normal", "SnapshotReady", f"Snapshot {where} is ready to use.")

    async def _bind_pre_provisioned(self, snap, content_name):
        content = self.contents.get(content_name)
        meta = snap["metadata"]
        if content is None:
            return await self._fail(snap, f'VolumeSnapshotContent "{content_name}" not found', "SnapshotContentMissing")
        ref = content["spec"].get("volumeSnapshotRef") or {}
        if ref.get("name") != meta["name"] or ref.get("namespace") != meta["namespace"]:
            return await self._fail(snap, f"VolumeSnapshotContent {content_name} is bound to another snapshot",
                                    "SnapshotContentMisbound")
        status = content.get("status") or {}
        finalizers = list(meta.get("finalizers") or [])
        if BOUND_FINALIZER not in finalizers:
            snap = await self._set_finalizers(_snapshot_path(meta["namespace"], meta["name"]), "snapshots", snap,
                                              finalizers + [BOUND_FINALIZER])
        new = {"boundVolumeSnapshotContentName": content_name, "readyToUse": bool(status.get("readyToUse")),
               "restoreSize": format_quantity(status.get("restoreSize", 0), "storage")}
        if status.get("creationTime"):
            new["creationTime"] = _rfc3339(datetime.fromtimestamp(status["creationTime"] / 1e9, timezone.utc))
        if {k: (snap.get("status") or {}).get(k) for k in new} != new:
            await self._set_status(snap, new)

    # --- as a restore source -----------------------------------------------------------
    def _claims_restoring_from(self, snap):
        meta = snap["metadata"]
        return [p for (ns, _), p in self.claims.items() if ns == meta["namespace"]
                and snapshot_data_source(p) == meta["name"] and (p.get("status") or {}).get("phase") != "Bound"
                and not p["metadata"].get("deletionTimestamp")]

    async def _protect_as_source(self, snap):
        finalizers = snap["metadata"].get("finalizers") or []
        wanted = bool(self._claims_restoring_from(snap))
        if wanted == (SOURCE_FINALIZER in finalizers):
            return
        meta = snap["metadata"]
        await self._set_finalizers(_snapshot_path(meta["namespace"], meta["name"]), "snapshots", snap,
                                   [f for f in finalizers if f != SOURCE_FINALIZER] + [SOURCE_FINALIZER] * wanted)

    # --- deletion ----------------------------------------------------------------------
    async def _finish_deletion(self, snap):
        meta = snap["metadata"]
        finalizers = meta.get("finalizers") or []
        ours = (BOUND_FINALIZER, SOURCE_FINALIZER)
        if not any(f in ours for f in finalizers) or self._claims_restoring_from(snap):
            return   # not ours to finish, or as-source protection: provisioning from it goes first
        content_name = (snap.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = content_name and self.contents.get(content_name)
        if content and not content["metadata"].get("deletionTimestamp"):
            if content["spec"].get("deletionPolicy", "Delete") == "Delete":
                await self.client.delete(f"{CONTENTS}/{content_name}", {
                    "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": content["metadata"]["uid"]}})
            elif CONTENT_FINALIZER in (content["metadata"].get("finalizers") or []):   # Retain: it stays, unbound
                await self._set_finalizers(f"{CONTENTS}/{content_name}", "contents", content,
                                           [f for f in content["metadata"]["finalizers"] if f != CONTENT_FINALIZER])
        await self._set_finalizers(_snapshot_path(meta["namespace"], meta["name"]), "snapshots", snap,
                                   [f for f in finalizers if f not in ours])

    def _data_dir(self, content):
        handle = (content.get("status") or {}).get("snapshotHandle") or content["metadata"]["name"]
        path = os.path.abspath(os.path.join(self.snapshots_dir, handle))
        return path if os.path.dirname(path) == os.path.abspath(self.snapshots_dir) else None

    async def _reconcile_content(self, content):
        meta, spec = content["metadata"], content["spec"]
        delete_data = spec.get("deletionPolicy", "Delete") == "Delete"
        if meta.get("deletionTimestamp"):
            if CONTENT_FINALIZER in (meta.get("finalizers") or []):
                if delete_data and self._data_dir(content):
                    unlock(self._data_dir(content))
                    shutil.rmtree(self._data_dir(content), ignore_errors=True)
                await self._set_finalizers(f"{CONTENTS}/{meta['name']}", "contents", content,
                                           [f for f in meta["finalizers"] if f != CONTENT_FINALIZER])
            return
        ref = spec.get("volumeSnapshotRef") or {}
        snap = self.snapshots.get((ref.get("namespace"), ref.get("name")))
        if ref.get("uid") and delete_data and (snap is None or snap["metadata"]["uid"] != ref["uid"]):
            # its snapshot went without the finalizers' help: the content goes too (Delete policy)
            await self.client.delete(f"{CONTENTS}/{meta['name']}", {
                "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]}})
