"""Snapshot decisions, pure (no I/O): names, ownership, the user's list, rate limits, pruning,
where an opened snapshot is mounted, what is refused.

A snapshot belongs to a user when ptjaas made it for them: annotation ``ptjaas.io/username``
(hub and scheduler snapshots) or, for the culler's, ``ptjaas.io/user`` on an object labelled
``app.kubernetes.io/managed-by=ptjaas-culler``. Whatever a user posts, a snapshot is looked up
only among their own, so a forged name is simply "not one of yours".
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Iterable, Mapping

from ..objects import SNAPSHOT_GROUP as GROUP, SNAPSHOT_VERSION as VERSION, label_value
from ..timestamps import parse_time
MANAGED_BY = "app.kubernetes.io/managed-by"
HUB, SCHEDULER, CULLER = "ptjaas-hub", "ptjaas-snapshots", "ptjaas-culler"
OURS = (HUB, SCHEDULER, CULLER)
SELECTOR = f"{MANAGED_BY} in ({','.join(OURS)})"
USER_LABEL = "ptjaas.io/user"
USERNAME = "ptjaas.io/username"
REASON = "ptjaas.io/snapshot-reason"
BY = "ptjaas.io/snapshot-by"
REASONS = ("cull", "schedule", "manual", "before-restore", "budget")  # budget: before a time-budget stop
PURPOSE = "ptjaas.io/purpose"
VIEW = "snapshot-view"
REPLACED_AT, REPLACED_BY, REPLACED_WHY = "ptjaas.io/replaced-at", "ptjaas.io/replaced-by", "ptjaas.io/replaced-reason"
MAX_OPEN = 10
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class SnapshotRefused(ValueError):
    """A snapshot request refused; the message is for the user (names only what is theirs)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def now() -> datetime:
    return datetime.now(timezone.utc)


def snapshot_name(claim: str, reason: str, when: datetime) -> str:
    return f"{claim[:200]}-{reason}-{when:%Y%m%d-%H%M%S}-{when.microsecond:06d}"


def snapshot_manifest(*, name: str, claim: str, snapshot_class: str | None, user: str, reason: str,
                      by: str, managed_by: str = HUB) -> dict:
    if reason not in REASONS:
        raise ValueError(f"unknown snapshot reason {reason!r}")
    spec: dict = {"source": {"persistentVolumeClaimName": claim}}
    if snapshot_class:
        spec["volumeSnapshotClassName"] = snapshot_class
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": name,
            "labels": {MANAGED_BY: managed_by, USER_LABEL: label_value(user)},
            "annotations": {USERNAME: user, REASON: reason, BY: by},
        },
        "spec": spec,
    }


def owner_of(snap: Mapping) -> str | None:
    meta = snap.get("metadata") or {}
    ann = meta.get("annotations") or {}
    managed = (meta.get("labels") or {}).get(MANAGED_BY)
    if managed not in OURS:
        return None
    if USERNAME in ann:
        return ann[USERNAME]
    if managed == CULLER:
        return ann.get("ptjaas.io/user") or None
    return None


def reason_of(snap: Mapping) -> str:
    meta = snap.get("metadata") or {}
    ann = meta.get("annotations") or {}
    if ann.get(REASON) in REASONS:
        return ann[REASON]
    return "cull" if (meta.get("labels") or {}).get(MANAGED_BY) == CULLER else "manual"


def taken_at(snap: Mapping) -> str:
    return ((snap.get("status") or {}).get("creationTime")
            or (snap.get("metadata") or {}).get("creationTimestamp") or "")


def time_label(snap: Mapping) -> str:
    """When the snapshot was taken, as the user sees it everywhere: the list's time and the
    folder an opened snapshot appears in (``~/snapshots/2026-11-30_12-00-00``, UTC)."""
    t = parse_time(taken_at(snap))
    return t.strftime("%Y-%m-%d_%H-%M-%S") if t else snap["metadata"]["name"][-40:]


def summary(snap: Mapping) -> dict:
    """What a user sees of a snapshot (``time``: RFC 3339; ``folder``: ``time_label``)."""
    status = snap.get("status") or {}
    return {
        "name": snap["metadata"]["name"],
        "time": taken_at(snap),
        "folder": time_label(snap),
        "reason": reason_of(snap),
        "size": status.get("restoreSize"),
        "ready": bool(status.get("readyToUse")),
        "claim": ((snap.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName"),
        "error": (status.get("error") or {}).get("message"),
        "by": ((snap.get("metadata") or {}).get("annotations") or {}).get(BY),
    }


def user_snapshots(items: Iterable[Mapping], username: str) -> list[dict]:
    """The user's snapshots (not being deleted), newest first."""
    mine = [s for s in items if owner_of(s) == username and not (s.get("metadata") or {}).get("deletionTimestamp")]
    mine.sort(key=lambda s: (taken_at(s), s["metadata"]["name"]), reverse=True)
    return list(mine)


def check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        shown = name[:60] if isinstance(name, str) else type(name).__name__
        raise SnapshotRefused(f"{shown!r} is not a snapshot name.")
    return name


def find_own(items: Iterable[Mapping], username: str, name, ready: bool = True) -> Mapping:
    """The user's snapshot ``name``; SnapshotRefused (404) if it is not one of theirs."""
    check_name(name)
    for snap in user_snapshots(items, username):
        if snap["metadata"]["name"] == name:
            if ready and not (snap.get("status") or {}).get("readyToUse"):
                raise SnapshotRefused(f"Snapshot {name} is not ready yet; try again in a moment.", 409)
            return snap
    raise SnapshotRefused(f"You have no snapshot named {name}.", 404)


def requested_views(value) -> list[str]:
    """Validate the ``snapshots`` server option: a list of snapshot names (bounded)."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SnapshotRefused("Server option 'snapshots' must be a list of snapshot names.")
    if len(value) > MAX_OPEN:
        raise SnapshotRefused(f"At most {MAX_OPEN} snapshots can be opened at once.")
    names = []
    for v in value:
        check_name(v)
        if v not in names:
            names.append(v)
    return names


def rate_limited(last: datetime | None, when: datetime, interval: float) -> float:
    """Seconds the user must still wait before the next on-demand snapshot (0: go ahead)."""
    if last is None or interval <= 0:
        return 0.0
    left = interval - (when - last).total_seconds()
    return max(0.0, left)


def view_mount_path(home_mount: str, directory: str, snap: Mapping) -> str:
    """``<home>/<directory>/<time>`` for an opened snapshot (``time_label``: 2026-11-30_12-00-00)."""
    return f"{home_mount.rstrip('/')}/{directory.strip('/')}/{time_label(snap)}"


def taken_message(shown: Mapping) -> str:
    """What the page says after "Snapshot my home now", from the snapshot's row as listed now
    (``summary``): never "being taken" beside a row that says it is ready."""
    name = f"Snapshot {shown['name']} ({shown['folder']} UTC)"
    if shown.get("ready"):
        return f"{name} is ready."
    if shown.get("error"):
        return f"{name} failed: {shown['error']}"
    return f"{name} is being taken; its row says ready when it is."


def view_claim_name(pod_name: str, index: int) -> str:
    return f"{pod_name[:220]}-snapshot-{index}"


def restored_claim_name(home_claim: str, when: datetime) -> str:
    base = re.sub(r"-restored-\d{8}-\d{6}$", "", home_claim)
    return f"{base[:200]}-restored-{when:%Y%m%d-%H%M%S}"


def to_prune(snaps: Iterable[Mapping], keep: int) -> list[str]:
    """Names beyond the newest ``keep`` (by time taken, then name)."""
    ordered = sorted(snaps, key=lambda s: (taken_at(s), s["metadata"]["name"]), reverse=True)
    return [s["metadata"]["name"] for s in ordered[keep:]]


def due(snaps: Iterable[Mapping], every: float, when: datetime) -> bool:
    """Is a scheduled snapshot due (none, or the newest older than ``every`` seconds)?"""
    times = [taken_at(s) for s in snaps]
    if not times:
        return True
    t = parse_time(max(times))
    if t is None:
        return True
    return (when - t).total_seconds() >= every
