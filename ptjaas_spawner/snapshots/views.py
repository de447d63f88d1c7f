"""``SnapshotViews``: the spawner's snapshot settings, and opening snapshots read-only.

At a start with the server option ``snapshots`` (a list of the user's snapshot names), each
snapshot becomes a claim created from it (``dataSource``), labelled
``ptjaas.io/purpose=snapshot-view``, mounted read-only at ``~/snapshots/<time>``, and deleted
again when the server stops (or its start fails). The names are looked up among the user's
own snapshots only. Snapshots of team datasets are opened by the same machinery
(``view_request``; ``datasets.mixin.dataset_views_wanted``), mounted at ``~/data/<name>@<time>``.
"""

from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy.orm import object_session
from traitlets import Dict, Float, List, Unicode, validate, TraitError
from traitlets.config import LoggingConfigurable

from ..catalog import shown
from ..kube import ApiException, Kube
from ..errors import Refusal
from ..objects import label_value
from . import policy

OPTION = "snapshots"
STATE_KEY = "ptjaas-snapshot-views"


class SnapshotViews(LoggingConfigurable):
    snapshot_classes = Dict(
        config=True,
        help="""Snapshots of home volumes: StorageClass name -> VolumeSnapshotClass name.

        A user whose home claim's StorageClass is listed here can see, take, open and restore
        snapshots of their home (hub home page, /hub/ptjaas/snapshots, REST API
        /hub/api/ptjaas/snapshots/<user>). Homes of other classes have snapshots off (the page
        says so). Example: ``{"pure-file": "pure-snapclass"}``. Empty (the default): off.""",
    )
    snapshot_min_interval = Float(
        600,
        config=True,
        help="""Seconds a user must wait between two on-demand snapshots ("Snapshot my home
        now"), so nobody fills the storage with snapshots. 0 = no limit.""",
    )
    snapshot_mount_dir = Unicode(
        "snapshots",
        config=True,
        help="""Directory under the home mount where opened snapshots appear read-only, one
        directory per snapshot named after the time it was taken (~/snapshots/2026-11-30_12-00-00).""",
    )
    snapshot_view_access_modes = List(
        ["ReadOnlyMany"],
        config=True,
        help="""Access modes of the claims made to open a snapshot read-only (each is mounted
        readOnly either way). ReadOnlyMany tells the storage the volume is never written; use
        ["ReadWriteOnce"] for a CSI driver that cannot provision ReadOnlyMany volumes.""",
    )
    snapshot_ready_timeout = Float(
        300,
        config=True,
        help="""Seconds to wait for a snapshot to be ready (the snapshot taken before a restore)
        and for a claim made from a snapshot to bind (opening one) before giving up with an
        error.""",
    )

    @validate("snapshot_classes")
    def _check_snapshot_classes(self, proposal):
        value = proposal["value"]
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k or not v:
                raise TraitError(f"c.PtjaasSpawner.snapshot_classes: {k!r}: {v!r} must map a StorageClass "
                                 "name to a VolumeSnapshotClass name (both non-empty strings)")
        return value

    @validate("snapshot_mount_dir")
    def _check_mount_dir(self, proposal):
        value = proposal["value"].strip("/")
        if not value or ".." in value.split("/"):
            raise TraitError(f"c.PtjaasSpawner.snapshot_mount_dir must be a relative directory, not {proposal['value']!r}")
        return value

    # ---- helpers ----
    def snapshot_kube(self) -> Kube:
        """The Kubernetes calls in the server's namespace, on KubeSpawner's shared ApiClient."""
        return Kube(self.namespace, self.api.api_client)

    def home_claim_name(self) -> str:
        home = getattr(self, "_home", None) or {}
        return home.get("claim") or self._expand_user_properties(self.pvc_name_template)

    def snapshot_view_claims(self) -> list[str]:
        return [v["claim"] for v in getattr(self, "_snapshot_views", None) or []]

    # ---- opening snapshots at a start ----
    def take_snapshot_request(self):
        """Take the ``snapshots`` option out of the user's options (validated, bounded)."""
        options = self.user_options if isinstance(self.user_options, dict) else {}
        self._snapshot_views = []
        requested = options.get(OPTION)
        self._snapshot_request = []
        if OPTION in options:  # for this start only: not remembered as the server's options
            cleaned = {k: v for k, v in options.items() if k != OPTION}
            save = getattr(self, "save_user_options", None)
            if save is not None:
                save(cleaned)
            else:
                self.user_options = cleaned
            _commit(getattr(self, "orm_spawner", None))
        pending = getattr(self, "_snapshot_request_pending", None)
        if pending:  # from the snapshot page / API (who asked is known)
            requested = list(pending["names"])
        try:
            self._snapshot_request = policy.requested_views(requested)
        except policy.SnapshotRefused as e:
            self.audit_refused("refused-snapshot", str(e), server=self.name, options={OPTION: _shown(requested)})
            raise _http(400, str(e)) from None

    async def snapshot_views_prepare(self, extra=()) -> list:
        """Create (and wait for) one read-only claim per requested snapshot of the home, and per
        ``extra`` view (``view_request``s: a dataset's snapshots, ``datasets.mixin``); returns the
        views made (``{"claim", "mount_path", "snapshot"}``, what the pod mounts:
        ``snapshot_view_volumes``). The server's state keeps their claims, which its stop deletes."""
        names = getattr(self, "_snapshot_request", None) or []
        pending = getattr(self, "_snapshot_request_pending", None) or {}
        self._snapshot_request_pending = None
        if not names and not extra:
            return []
        if not pending.get("by"):  # a server option: who made the start request
            requester = getattr(getattr(self, "handler", None), "current_user", None)
            pending = {"by": getattr(requester, "name", None)}
        kube = self.snapshot_kube()
        wanted = []
        if names:
            items = await kube.list_snapshots(policy.SELECTOR)
            for name in names:
                try:
                    snap = policy.find_own(items, self.user.name, name)
                except policy.SnapshotRefused as e:
                    self.audit_refused("refused-snapshot", str(e), by=pending.get("by"), server=self.name,
                                       snapshot=name)
                    raise _http(e.status if e.status != 409 else 400, str(e)) from None
                wanted.append(view_request(snap, policy.view_mount_path(self.home_mount_path, self.snapshot_mount_dir,
                                                                        snap), by=pending.get("by")))
        self._snapshot_views = []
        for view in [*wanted, *extra]:
            claim = await self._snapshot_view_claim(kube, view)
            sname = view["snapshot"]["metadata"]["name"]
            self._snapshot_views.append({"claim": claim, "mount_path": view["mount_path"], "snapshot": sname})
            self.audit("snapshot-open", server=self.name, snapshot=sname, claim=claim, mount_path=view["mount_path"],
                       access="read-only", by=view["by"], **view["audit"])
        self.notes_extend([f"Snapshot {v['snapshot']} is opened read-only at {v['mount_path']}"
                           for v in self._snapshot_views])
        await self._wait_views_bound(kube)
        return list(self._snapshot_views)

    async def _snapshot_view_claim(self, kube, view) -> str:
        snap = view["snapshot"]
        sname = snap["metadata"]["name"]
        source = await kube.read_claim(((snap.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName") or "")
        suffix = hashlib.sha256(f"{self.name}/{sname}".encode()).hexdigest()[:10]
        name = f"{self.pod_name[:200]}-snapshot-{suffix}"
        spec = {
            "accessModes": list(self.snapshot_view_access_modes),
            "resources": {"requests": {"storage": (snap.get("status") or {}).get("restoreSize")
                                       or view["size"] or self.home_volume_size}},
            "dataSource": {"apiGroup": policy.GROUP, "kind": "VolumeSnapshot", "name": sname},
        }
        storage_class = (((source or {}).get("spec") or {}).get("storageClassName") or view["storage_class"]
                         or self.home_volume_storage_class)
        if storage_class:
            spec["storageClassName"] = storage_class
        body = {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name,
                "labels": {policy.PURPOSE: policy.VIEW, policy.USER_LABEL: label_value(self.user.name),
                           "app.kubernetes.io/managed-by": policy.HUB},
                "annotations": {**view["annotations"], policy.USERNAME: self.user.name, "ptjaas.io/servername": self.name,
                                "ptjaas.io/snapshot": sname},
            },
            "spec": spec,
        }

        try:
            await kube.create_claim(body)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = await kube.read_claim(name)  # left over from a start that did not clean up
            if (((existing or {}).get("spec") or {}).get("dataSource") or {}).get("name") != sname:
                raise
        return name

    async def _wait_views_bound(self, kube):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.snapshot_ready_timeout
        pending = [v["claim"] for v in self._snapshot_views]
        while pending:
            claim = await kube.read_claim(pending[0])
            if claim and (claim.get("status") or {}).get("phase") == "Bound":
                pending.pop(0)
                continue
            if claim and (claim.get("spec") or {}).get("storageClassName"):
                sc = await kube.read_storage_class(claim["spec"]["storageClassName"]) or {}
                if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                    pending.pop(0)  # binds when the pod is scheduled
                    continue
            if loop.time() > deadline:
                await self.snapshot_views_cleanup()
                raise _http(500, f"A snapshot could not be opened: claim {pending[0]} did not bind in "
                                 f"{self.snapshot_ready_timeout:.0f}s.")
            await asyncio.sleep(0.2)

    # the opened snapshots' claims are in the server's state (a hub restart still cleans up):
    # ``PtjaasSpawner.get_state`` / ``load_state`` / ``clear_state`` call these
    def snapshot_views_state(self) -> dict:
        claims = self.snapshot_view_claims()
        return {STATE_KEY: claims} if claims else {}

    def load_snapshot_views_state(self, state):
        self._snapshot_views = [{"claim": c} for c in state.get(STATE_KEY) or [] if isinstance(c, str)]

    def forget_snapshot_views(self):
        self._snapshot_views = []

    async def snapshot_views_cleanup(self):
        """Delete this server's snapshot-view claims (they only held a copy of a snapshot).
        No API request when the server opened none."""
        claims = self.snapshot_view_claims()
        if not claims:
            return
        kube = self.snapshot_kube()
        for name in claims:
            try:
                await kube.delete_claim(name)
                self.log.info("Deleted snapshot view claim %s of %s", name, self._log_name)
            except Exception as e:  # noqa: BLE001 - a stop must not fail on this
                self.log.error("Could not delete snapshot view claim %s of %s: %s", name, self._log_name, e)
        self._snapshot_views = []


def _commit(orm_obj):
    """Persist the cleaned options now (a later rollback must not bring the request back)."""
    if orm_obj is None:
        return
    session = object_session(orm_obj)
    if session is not None:
        session.commit()


def _shown(value):
    """A posted ``snapshots`` option as the record keeps it (bounded, never echoed whole)."""
    return value if isinstance(value, str) and len(value) <= 253 else shown(value)


def _http(status, message):
    return Refusal(status, message, reason="Snapshot refused")


def view_request(snap, mount_path: str, *, by=None, size=None, storage_class=None, annotations=None,
                 audit=None) -> dict:
    """One snapshot to open read-only at ``mount_path``: what ``snapshot_views_prepare`` makes a
    claim from (``size``, ``storage_class``: used when the snapshot and its source claim do not
    say; ``annotations`` on the view claim; ``audit``: more fields of its ``snapshot-open`` record)."""
    return {"snapshot": snap, "mount_path": mount_path, "by": by, "size": size, "storage_class": storage_class,
            "annotations": dict(annotations or {}), "audit": dict(audit or {})}


def snapshot_view_volumes(views) -> tuple[list, list]:
    """(volumes, mounts) for the pod: each opened snapshot (``snapshot_views_prepare``), read-only."""
    vols, mounts = [], []
    for i, v in enumerate(views or []):
        vname = f"snapshot-{i}"
        vols.append({"name": vname, "persistentVolumeClaim": {"claimName": v["claim"], "readOnly": True}})
        mounts.append({"name": vname, "mountPath": v["mount_path"], "readOnly": True})
    return vols, mounts
