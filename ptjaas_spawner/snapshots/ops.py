"""What the hub does with a user's snapshots (for the page and the REST API): status, list,
take one now (rate-limited), restore the whole home. Each works on the user's spawner (its
settings, its Kubernetes client, its home claim) and records an audit line; a refusal
(``policy.SnapshotRefused``) is recorded by the page or API that answers it.

Restore is never destructive: the current home is snapshotted first, the new home claim is made
from the chosen snapshot, the old claim is kept and annotated with when, by whom and why it
was replaced (an admin deletes it when no longer wanted). The server must be stopped.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from ..objects import label_value
from ..quantity import parse_quantity
from . import policy

_LAST_MANUAL: dict[str, datetime] = {}
_LAST_RESTORE: dict[str, datetime] = {}
_LOCKS: dict[str, asyncio.Lock] = {}


def _lock(username: str) -> asyncio.Lock:
    return _LOCKS.setdefault(username, asyncio.Lock())


async def home_status(spawner) -> dict:
    """``{"enabled", "claim", "storage_class", "snapshot_class", "why"}`` for the user's home."""
    kube = spawner.snapshot_kube()
    claim_name = spawner.home_claim_name()
    claim = await kube.read_claim(claim_name)
    storage_class = await kube.storage_class_name(claim, spawner.home_volume_storage_class)
    snapshot_class = spawner.snapshot_classes.get(storage_class or "")
    why = ""
    if not snapshot_class:
        why = (f"Snapshots are off for your home: its storage class ({storage_class or 'none'}) has no "
               "snapshot class configured.")
    elif claim is None:
        why = "You have no home volume yet: start a server once."
    return {"enabled": bool(snapshot_class) and claim is not None, "claim": claim_name,
            "storage_class": storage_class, "snapshot_class": snapshot_class, "why": why}


async def list_user(spawner) -> list[dict]:
    items = await spawner.snapshot_kube().list_snapshots(policy.SELECTOR)
    return [policy.summary(s) for s in policy.user_snapshots(items, spawner.user.name)]


async def take(spawner, by: str, reason: str = "manual", status: dict | None = None) -> dict:
    """Take a snapshot of the user's home now. Manual ones are rate-limited per user."""
    user = spawner.user.name
    status = status or await home_status(spawner)
    if not status["enabled"]:
        raise policy.SnapshotRefused(status["why"], 409)
    when = policy.now()
    if reason == "manual":
        wait = policy.rate_limited(_LAST_MANUAL.get(user), when, spawner.snapshot_min_interval)
        if wait:  # recorded by the page / API that refuses it
            raise policy.SnapshotRefused(
                f"A snapshot of this home was taken less than {spawner.snapshot_min_interval:.0f}s ago; "
                f"try again in {wait:.0f}s.", 429)
        _LAST_MANUAL[user] = when
    name = policy.snapshot_name(status["claim"], reason, when)
    body = policy.snapshot_manifest(name=name, claim=status["claim"], snapshot_class=status["snapshot_class"],
                                    user=user, reason=reason, by=by)
    made = await spawner.snapshot_kube().create_snapshot(body)
    spawner.audit("snapshot-take", user=user, by=by, snapshot=name, claim=status["claim"], reason=reason)
    return policy.summary(made)


async def wait_ready(kube, name: str, timeout: float) -> dict:
    """Poll until the snapshot is readyToUse; raise RuntimeError with its error, or on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    while True:
        snap = await kube.read_snapshot(name)
        status = (snap or {}).get("status") or {}
        if status.get("readyToUse"):
            return snap
        if snap is None or status.get("error"):
            why = (status.get("error") or {}).get("message") or "it was deleted"
            raise RuntimeError(f"snapshot {name} failed: {why}")
        if loop.time() > deadline:
            raise RuntimeError(f"snapshot {name} was not ready after {timeout:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2)


def _running(spawner) -> bool:
    return bool(spawner.active or getattr(spawner, "_stop_pending", False))


async def restore(spawner, name, by: str, limited: bool = True) -> dict:
    """Make the user's snapshot ``name`` their home (the server must be stopped). Each restore
    keeps a claim and a snapshot more: ``limited`` (a user's own request, not an admin's) allows
    one per ``snapshot_min_interval``."""
    user = spawner.user.name
    async with _lock(user):
        kube = spawner.snapshot_kube()
        items = await kube.list_snapshots(policy.SELECTOR)
        snap = policy.find_own(items, user, name)  # raises for anything not theirs
        if _running(spawner):
            raise policy.SnapshotRefused("Stop your server before restoring a snapshot of your home.", 409)
        status = await home_status(spawner)
        if not status["enabled"]:
            raise policy.SnapshotRefused(status["why"], 409)
        when = policy.now()
        wait = policy.rate_limited(_LAST_RESTORE.get(user), when, spawner.snapshot_min_interval) if limited else 0
        if wait:  # recorded by the page / API that refuses it
            raise policy.SnapshotRefused(f"Your home was restored less than {spawner.snapshot_min_interval:.0f}s ago; "
                                         f"try again in {wait:.0f}s (or ask an administrator).", 429)
        _LAST_RESTORE[user] = when
        old_name = status["claim"]
        old = await kube.read_claim(old_name)
        # 1. the current home is kept as a snapshot too
        before = await take(spawner, by, "before-restore", status)
        await wait_ready(kube, before["name"], spawner.snapshot_ready_timeout)
        # 2. a new home claim from the chosen snapshot
        new_name = policy.restored_claim_name(old_name, when)
        size = _bigger((snap.get("status") or {}).get("restoreSize"), (spawner._home or {}).get("size")
                       or spawner.home_volume_size)
        manifest = spawner.home_claim_manifest(new_name, size)
        manifest["spec"]["dataSource"] = {"apiGroup": policy.GROUP, "kind": "VolumeSnapshot", "name": name}
        storage_class = ((old or {}).get("spec") or {}).get("storageClassName")
        if storage_class:
            manifest["spec"]["storageClassName"] = storage_class
        manifest["metadata"]["annotations"]["ptjaas.io/restored-from"] = name
        await kube.create_claim(manifest)
        # 3. the old claim stays, labelled; the new one becomes the home
        stamp = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        await kube.patch_claim(old_name, {"metadata": {
            "labels": {"ptjaas.io/replaced": "true"},
            "annotations": {policy.REPLACED_AT: stamp, policy.REPLACED_BY: by,
                            policy.REPLACED_WHY: f"home restored from snapshot {name} (kept until an admin deletes it)"}}})
        spawner.home_replaced(new_name, size)
        spawner.audit("snapshot-restore", user=user, by=by, snapshot=name, claim=new_name,
                      previous_claim=old_name, before_restore_snapshot=before["name"])
        return {"claim": new_name, "previous_claim": old_name, "snapshot": name,
                "before_restore_snapshot": before["name"]}


def _bigger(a, b):
    if not a:
        return b
    if not b:
        return a
    return a if parse_quantity(a) >= parse_quantity(b) else b


def user_label(username: str) -> str:
    return label_value(username)
