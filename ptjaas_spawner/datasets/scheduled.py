"""Scheduled snapshots of team datasets: the part of a pass of the ``ptjaas-snapshots``
service (``snapshotservice``) that serves the teams given a ``datasets`` schedule::

    install_scheduled_snapshots(c, {"vision": {"every": 86400, "keep": 7,
                                               "datasets": {"every": 3600, "keep": 24}}})

For each such team, each of its datasets (in the team's namespace, else the hub's) whose
StorageClass has a snapshot class (``c.PtjaasSpawner.snapshot_classes``) gets a snapshot
(reason ``schedule``, by ``ptjaas-snapshots``) when due, then its scheduled snapshots beyond the
newest ``keep`` are deleted (``timetravel.schedule_plan``; no other snapshot is ever deleted).
Members see them in the dataset's list, open and restore them as any other.
Rights: the hub's own (list claims, create/list/delete VolumeSnapshots, where datasets live).
"""

from __future__ import annotations

import logging

from .. import audit
from ..snapshots import policy as home_snapshots
from . import policy, timetravel

SERVICE_NAME = timetravel.SCHEDULER
log = logging.getLogger("ptjaas.snapshots")
_UNREAD = object()


async def one_pass(kube, groups: dict, snapshot_classes: dict, team_namespaces: dict, audit_file: str,
                   taken: list, pruned: list) -> None:
    """Take and prune the teams' dataset snapshots (appending the names to ``taken``/``pruned``)."""
    default = _UNREAD
    for team, spec in sorted(groups.items()):
        schedule = spec.get("datasets")
        if not schedule or not policy.team_labels_ok(team):
            continue
        namespace = team_namespaces.get(team) or kube.namespace
        datasets = [policy.describe(c) for c in await kube.list_claims(policy.selector(team), namespace)]
        datasets = [d for d in datasets if d["name"] and not d["deleting"]]
        if not datasets:
            continue
        items = await kube.list_snapshots(f"{policy.TEAM_LABEL}={team}", namespace)
        for d in sorted(datasets, key=lambda d: d["name"]):
            if not d["storage_class"] and default is _UNREAD:  # the cluster's default, read once a pass
                default = await kube.storage_class_name(None)
            snap_class = snapshot_classes.get(d["storage_class"] or default or "")
            if not snap_class:
                log.debug("dataset %s of %s: no snapshot class for its storage class; skipped", d["name"], team)
                continue
            when = home_snapshots.now()
            take, old = timetravel.schedule_plan(d, items, schedule, when)
            if take:
                body = timetravel.snapshot_manifest(d, snap_class, "schedule", SERVICE_NAME, when)
                await kube.create_snapshot(body, namespace)
                taken.append(body["metadata"]["name"])
                log.info("scheduled snapshot %s of dataset %s of team %s", body["metadata"]["name"], d["name"], team)
                audit.write(audit_file, audit.entry("dataset-snapshot", d["creator"] or SERVICE_NAME, by=SERVICE_NAME,
                                                    dataset=d["name"], team=team, namespace=namespace,
                                                    snapshot=body["metadata"]["name"], claim=d["claim"],
                                                    reason="schedule"), log)
            for name in old:
                await kube.delete_snapshot(name, namespace)
                pruned.append(name)
                log.info("pruned scheduled snapshot %s of dataset %s of team %s (keeping the newest %d)",
                         name, d["name"], team, schedule["keep"])
