"""Time-travel for team datasets: the rules, pure (no I/O).

A dataset's snapshots are VolumeSnapshots in its namespace labelled like the dataset
(``ptjaas.io/dataset``, ``ptjaas.io/team``): taken on demand (``manual``), before a restore
(``before-restore``), before a delete (``before-delete``, ``policy.snapshot_before_delete``) and on
a team's schedule (``schedule``, by the ``ptjaas-snapshots`` service: ``schedule_plan``).

Who may do what (as for homes, where the home's owner is the dataset's writers):

- list: the team's members and admins;
- take, restore: a member who may write the dataset (its write rule, ``policy.may_mount`` with
  ``rw``) and admins;
- everyone else: 404, the dataset is not one they can see.

A restore never loses data: the current claim is snapshotted first, a new claim is made from
the chosen snapshot and becomes the dataset, and the previous claim is kept, no longer labelled
as the dataset (``ptjaas.io/replaced-dataset=<name>``, with when, by whom and why). It is done
only while no server mounts the dataset (409, naming whose server).

Opening a snapshot read-only (as homes' ``snapshots.views``): a member who may mount the dataset
(``ro``: every member) asks for one of its ready snapshots; at their next start a claim made from
it is mounted read-only at ``~/data/<name>@<time>`` and deleted when the server stops.
At most ``MAX_OPEN`` wait for a start; a second ask for the same snapshot changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime

from ..catalog import shown
from ..snapshots import policy as home_snapshots
from . import policy

REASON = home_snapshots.REASON
BY = home_snapshots.BY
REASONS = ("manual", "before-restore", "before-delete", "schedule")
SCHEDULER = home_snapshots.SCHEDULER  # who takes the scheduled ones (the ``snapshotservice``)
RESTORED_FROM = "ptjaas.io/restored-from"
REPLACED_DATASET = "ptjaas.io/replaced-dataset"
_RESTORED_SUFFIX = re.compile(r"-restored-\d{8}-\d{6}$")


def snapshot_selector(dataset: dict) -> str:
    return f"{policy.DATASET_LABEL}={dataset['name']},{policy.TEAM_LABEL}={dataset['team']}"


def may_change(dataset: dict, user: str, user_groups, admin: bool) -> str:
    """'' if ``user`` may snapshot or restore ``dataset``, else why not (for a member)."""
    if admin:
        return ""
    problem = policy.may_mount(dataset, user, user_groups, "rw")
    if not problem:
        return ""
    return (f"You may not snapshot or restore dataset {dataset['name']}: {problem.split(': mount it')[0]}"
            .rstrip(".") + ".")


def snapshot_name(dataset: dict, reason: str, when: datetime) -> str:
    base = _RESTORED_SUFFIX.sub("", dataset["claim"])[:180]
    return f"{base}-{reason}-{when:%Y%m%d-%H%M%S}-{when.microsecond:06d}"


def snapshot_manifest(dataset: dict, snapshot_class: str, reason: str, by: str, when: datetime) -> dict:
    if reason not in REASONS:
        raise ValueError(f"unknown dataset snapshot reason {reason!r}")
    return {"apiVersion": f"{home_snapshots.GROUP}/{home_snapshots.VERSION}", "kind": "VolumeSnapshot",
            "metadata": {"name": snapshot_name(dataset, reason, when), "namespace": dataset["namespace"],
                         "labels": {policy.DATASET_LABEL: dataset["name"], policy.TEAM_LABEL: dataset["team"],
                                    "app.kubernetes.io/managed-by": "ptjaas"},
                         "annotations": {policy.CREATOR: dataset["creator"], BY: by, REASON: reason}},
            "spec": {"source": {"persistentVolumeClaimName": dataset["claim"]},
                     "volumeSnapshotClassName": snapshot_class}}


def summary(snap: dict) -> dict:
    """A dataset snapshot as the API and the page show it, newest first by ``time``."""
    out = home_snapshots.summary(snap)
    reason = ((snap.get("metadata") or {}).get("annotations") or {}).get(REASON)
    out["reason"] = reason if reason in REASONS else "manual"
    return out


def listed(items: list) -> list:
    live = [s for s in items if not (s.get("metadata") or {}).get("deletionTimestamp")]
    return sorted((summary(s) for s in live), key=lambda s: (s["time"], s["name"]), reverse=True)


def find(items: list, dataset: dict, name) -> dict:
    """The dataset's ready snapshot ``name``; ``DatasetRefused`` (404/409) otherwise."""
    if not isinstance(name, str) or not name:
        raise policy.DatasetRefused("Name the snapshot to restore.")
    for snap in items:
        if snap["metadata"]["name"] == name and not snap["metadata"].get("deletionTimestamp"):
            if not (snap.get("status") or {}).get("readyToUse"):
                raise policy.DatasetRefused(f"Snapshot {name} is not ready yet: try again shortly.", 409)
            return snap
    raise policy.DatasetRefused(f"Dataset {dataset['name']} has no snapshot {shown(name)}.", 404)


def mounted_by(dataset: dict, pods: list) -> str:
    """'' unless a live pod mounts the dataset's claim, else whose server, in plain words."""
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        claims = [(v.get("persistentVolumeClaim") or {}).get("claimName")
                  for v in (pod.get("spec") or {}).get("volumes") or []]
        if dataset["claim"] in claims:
            who = (meta.get("annotations") or {}).get("hub.jupyter.org/username") or meta.get("name")
            return (f"Dataset {dataset['name']} is mounted by {who}'s server (pod {meta.get('name')}): "
                    "it can be restored only while no server mounts it; stop that server first.")
    return ""


def restored_claim_name(dataset: dict, when: datetime) -> str:
    return f"{_RESTORED_SUFFIX.sub('', dataset['claim'])[:200]}-restored-{when:%Y%m%d-%H%M%S}"


def restored_claim(current: dict, snap: dict, new_name: str) -> dict:
    """The dataset's new claim from ``snap``: the current claim's labels, annotations and
    spec, at least the snapshot's size."""
    meta, spec = current["metadata"], current.get("spec") or {}
    size = _bigger((snap.get("status") or {}).get("restoreSize"),
                   ((spec.get("resources") or {}).get("requests") or {}).get("storage"))
    new_spec = {"accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "resources": {"requests": {"storage": size}},
                "dataSource": {"apiGroup": home_snapshots.GROUP, "kind": "VolumeSnapshot",
                               "name": snap["metadata"]["name"]}}
    if spec.get("storageClassName"):
        new_spec["storageClassName"] = spec["storageClassName"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("ptjaas.io/")}
    annotations[RESTORED_FROM] = snap["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": new_name, "namespace": meta.get("namespace"),
                         "labels": dict(meta.get("labels") or {}), "annotations": annotations},
            "spec": new_spec}


def replaced_patch(dataset: dict, snapshot: str, by: str, when: datetime) -> dict:
    """The previous claim kept, no longer the dataset (an admin deletes it when unwanted)."""
    stamp = when.isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"metadata": {
        "labels": {policy.DATASET_LABEL: None, REPLACED_DATASET: dataset["name"]},
        "annotations": {home_snapshots.REPLACED_AT: stamp, home_snapshots.REPLACED_BY: by,
                        home_snapshots.REPLACED_WHY: f"dataset {dataset['name']} restored from snapshot {snapshot} "
                                                     "(kept until an admin deletes it)"}}}


def _bigger(a, b):
    from ..quantity import parse_quantity

    if not a or not b:
        return a or b
    return a if parse_quantity(a) >= parse_quantity(b) else b


# ---- opening a snapshot read-only at the next start ------------------------------------------

MAX_OPEN = home_snapshots.MAX_OPEN


def may_open(dataset: dict, user: str, user_groups, admin: bool) -> str:
    """'' if ``user`` may open ``dataset``'s snapshots read-only (whoever may mount it 'ro')."""
    problem = policy.may_mount(dataset, user, user_groups, "ro", admin=admin)
    return f"You may not open snapshots of dataset {dataset['name']}: {problem}" if problem else ""


def view_mount_path(home_mount: str, dataset: dict, snap: dict) -> str:
    """``<home>/data/<name>@<time>`` (``time``: the snapshot's folder, 2026-11-30_12-00-00, UTC)."""
    return f"{home_mount.rstrip('/')}/{policy.MOUNT_DIR}/{dataset['name']}@{home_snapshots.time_label(snap)}"


def open_request(dataset: dict, snapshot: str, by: str) -> dict:
    return {"team": dataset["team"], "dataset": dataset["name"], "snapshot": snapshot, "by": by}


def with_open_request(pending: list, request: dict) -> list:
    """``pending`` with ``request`` added (kept as is when already there); ``DatasetRefused``
    (409) beyond ``MAX_OPEN``."""
    pending = list(pending or [])
    key = (request["team"], request["dataset"], request["snapshot"])
    if any((p["team"], p["dataset"], p["snapshot"]) == key for p in pending):
        return pending
    if len(pending) >= MAX_OPEN:
        raise policy.DatasetRefused(f"At most {MAX_OPEN} snapshots can wait to be opened at your next start.", 409)
    return pending + [request]


def view_problem(request: dict, datasets: dict, user: str, user_groups, admin: bool, items: list) -> tuple:
    """``(dataset, snapshot, '')`` for an open request at a start, or ``(None, None, why not)``:
    ``datasets``: the user's teams' datasets where the server runs, by name; ``items``: the
    VolumeSnapshots of those datasets there."""
    d = datasets.get(request.get("dataset"))
    if d is None or d["team"] != request.get("team"):
        return None, None, (f"there is no dataset {shown(request.get('dataset'))} of team {shown(request.get('team'))} "
                            "where your server runs")
    problem = may_open(d, user, user_groups, admin)
    if problem:
        return None, None, problem
    mine = [s for s in items if ((s.get("metadata") or {}).get("labels") or {}).get(policy.DATASET_LABEL) == d["name"]
            and s["metadata"]["labels"].get(policy.TEAM_LABEL) == d["team"]]
    try:
        return d, find(mine, d, request.get("snapshot")), ""
    except policy.DatasetRefused as e:
        return None, None, str(e)


# ---- scheduled snapshots (the ``ptjaas-snapshots`` service, ``snapshotservice``) ----------

def scheduled_of(items: list, dataset: dict) -> list:
    """The dataset's snapshots the scheduler took (the only ones it ever deletes)."""
    out = []
    for snap in items:
        meta = snap.get("metadata") or {}
        labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
        if (labels.get(policy.DATASET_LABEL) == dataset["name"] and labels.get(policy.TEAM_LABEL) == dataset["team"]
                and ann.get(REASON) == "schedule" and ann.get(BY) == SCHEDULER and not meta.get("deletionTimestamp")):
            out.append(snap)
    return out


def schedule_plan(dataset: dict, items: list, spec: dict, when: datetime) -> tuple[bool, list]:
    """``(take one now?, names to delete)`` for ``dataset`` on its team's schedule ``spec``
    (``{"every": seconds, "keep": count}``): one is due when it has none, or its newest scheduled
    one is ``every`` seconds old; then only the newest ``keep`` scheduled ones stay (the one taken
    now counts). Snapshots taken on demand, before a restore or a delete are never deleted."""
    mine = scheduled_of(items, dataset)
    take = home_snapshots.due(mine, spec["every"], when)
    return take, home_snapshots.to_prune(mine, spec["keep"] - 1 if take else spec["keep"])
