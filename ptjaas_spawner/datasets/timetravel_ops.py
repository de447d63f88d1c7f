"""What the hub does for a dataset's time-travel (the REST API and the page call these): list its
snapshots, take one now, restore one without loss. The rules are in ``timetravel`` (pure); each
refusal is a ``policy.DatasetRefused`` that the answering handler records; each action returns
what the handler writes on the audit record (``dataset-snapshot``, ``dataset-restore``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from ..catalog import shown
from ..kube import Kube
from ..snapshots import ops as snapshot_ops
from ..snapshots import policy as home_snapshots
from . import policy, timetravel

_LAST_MANUAL: dict[tuple, datetime] = {}
_LOCKS: dict[tuple, asyncio.Lock] = {}


def _groups(user) -> list:
    return sorted(g.name for g in user.groups)


async def dataset(spawner, user, team: str, name: str) -> dict:
    """The team's dataset ``name`` as ``policy.describe`` has it, if ``user`` may see it (404 else:
    a non-member learns nothing of the team's datasets)."""
    missing = policy.DatasetRefused(f"Team {shown(team)} has no dataset {shown(name)} you can see.", 404)
    if not policy.may_see(team, _groups(user), user.admin) or not policy.team_labels_ok(team):
        raise missing
    items = await spawner.dataset_kube().list_claims(policy.selector(team), spawner.dataset_namespace(team))
    found = [policy.describe(i) for i in items if policy.describe(i)["name"] == name]
    found = [d for d in found if not d["deleting"]]
    if not found:
        raise missing
    return found[0]


async def snapshots(spawner, d: dict) -> list:
    items = await spawner.dataset_kube().list_snapshots(timetravel.snapshot_selector(d), d["namespace"])
    return timetravel.listed(items)


async def _snapshot_class(spawner, d: dict) -> str:
    kube = spawner.dataset_kube()
    storage_class = await kube.storage_class_name(
        {"spec": {"storageClassName": d["storage_class"]}} if d["storage_class"] else None)
    snapshot_class = spawner.snapshot_classes.get(storage_class or "")
    if not snapshot_class:
        raise policy.DatasetRefused(f"Snapshots are off for dataset {d['name']}: its storage class "
                                    f"({storage_class or 'none'}) has no snapshot class configured.", 409)
    return snapshot_class


async def take(spawner, user, d: dict, reason: str = "manual") -> dict:
    """A snapshot of dataset ``d`` now (manual ones: one per ``snapshot_min_interval`` per dataset)."""
    problem = timetravel.may_change(d, user.name, _groups(user), user.admin)
    if problem:
        raise policy.DatasetRefused(problem, 403)
    snapshot_class = await _snapshot_class(spawner, d)
    when = home_snapshots.now()
    key = (d["namespace"], d["team"], d["name"])
    if reason == "manual":
        wait = home_snapshots.rate_limited(_LAST_MANUAL.get(key), when, spawner.snapshot_min_interval)
        if wait:
            raise policy.DatasetRefused(f"A snapshot of dataset {d['name']} was taken less than "
                                        f"{spawner.snapshot_min_interval:.0f}s ago; try again in {wait:.0f}s.", 429)
        _LAST_MANUAL[key] = when
    body = timetravel.snapshot_manifest(d, snapshot_class, reason, user.name, when)
    made = await spawner.dataset_kube().create_snapshot(body, d["namespace"])
    return timetravel.summary(made)


async def restore(spawner, user, d: dict, name) -> dict:
    """Make snapshot ``name`` dataset ``d``'s content: the current claim is snapshotted first and
    kept (no longer the dataset); a new claim from the snapshot becomes the dataset. Only while
    no server mounts it."""
    problem = timetravel.may_change(d, user.name, _groups(user), user.admin)
    if problem:
        raise policy.DatasetRefused(problem, 403)
    async with _LOCKS.setdefault((d["namespace"], d["team"], d["name"]), asyncio.Lock()):
        kube = spawner.dataset_kube()
        snap = timetravel.find(await kube.list_snapshots(timetravel.snapshot_selector(d), d["namespace"]), d, name)
        busy = timetravel.mounted_by(d, await kube.list_pods(namespace=d["namespace"]))
        if busy:
            raise policy.DatasetRefused(busy, 409)
        current = await kube.read_claim(d["claim"], d["namespace"])
        if current is None:
            raise policy.DatasetRefused(f"Dataset {d['name']} is gone.", 404)
        # 1. the current content is kept as a snapshot too
        before = await take(spawner, user, d, "before-restore")
        try:
            await snapshot_ops.wait_ready(Kube(d["namespace"], spawner.api.api_client), before["name"],
                                          spawner.snapshot_ready_timeout)
        except RuntimeError as e:
            raise policy.DatasetRefused(f"Dataset {d['name']} is not restored: its snapshot first failed ({e}).",
                                        503) from None
        # 2. a new claim from the chosen snapshot; 3. the previous claim kept, no longer the dataset
        when = home_snapshots.now()
        new = timetravel.restored_claim(current, snap, timetravel.restored_claim_name(d, when))
        await kube.create_claim(new, d["namespace"])
        await kube.patch_claim(d["claim"], timetravel.replaced_patch(d, name, user.name, when), d["namespace"])
        return {"dataset": d["name"], "team": d["team"], "snapshot": name, "claim": new["metadata"]["name"],
                "previous_claim": d["claim"], "before_restore_snapshot": before["name"]}


async def open_at_next_start(spawner, user, d: dict, name) -> dict:
    """Ask for snapshot ``name`` of dataset ``d`` to be opened read-only at ``user``'s next start
    of their default server (``spawner``: theirs): checked now (may they mount it, is it ready),
    and again at the start (``DatasetsMixin.dataset_views_wanted``). Held by the hub process:
    a hub restart forgets a request not yet started."""
    problem = timetravel.may_open(d, user.name, _groups(user), user.admin)
    if problem:
        raise policy.DatasetRefused(problem, 403)
    snap = timetravel.find(await spawner.dataset_kube().list_snapshots(timetravel.snapshot_selector(d),
                                                                        d["namespace"]), d, name)
    request = timetravel.open_request(d, name, user.name)
    spawner.dataset_views_pending = timetravel.with_open_request(spawner.dataset_views_pending, request)
    folder = timetravel.view_mount_path("~", d, snap)
    return {"dataset": d["name"], "team": d["team"], "snapshot": name, "folder": folder,
            "running": bool(spawner.active)}
