"""Scheduled snapshots of the homes of a group's members: a hub-managed service.

In ``jupyterhub_config.py`` (after ``c.PtjaasSpawner.snapshot_classes``)::

    from ptjaas_spawner.snapshots.scheduler import install_scheduled_snapshots
    install_scheduled_snapshots(c, {"vision": {"every": 86400, "keep": 7}})

Each pass, for every member of a configured group: each home claim of theirs whose
StorageClass has a snapshot class gets a snapshot (reason ``schedule``) when its newest
scheduled one is ``every`` seconds old or more; then the scheduled snapshots of that claim
beyond the newest ``keep`` are deleted. Only snapshots this service made are ever deleted. A
user in several groups gets the shortest ``every`` and the largest ``keep``.

A group (team) may also have a ``datasets`` schedule, ``{"every", "keep"}``: its team datasets
are snapshotted the same way (``datasets.scheduled``); a group given only ``datasets`` has no
home schedule: ``{"vision": {"datasets": {"every": 3600, "keep": 24}}}``.

Smallest rights: on the hub, ``read:groups`` filtered to the configured groups (the members);
in Kubernetes, list claims and create/list/delete VolumeSnapshots (helm-values/manifests/rbac-hub.yaml).
The service itself is ``python -m ptjaas_spawner.snapshotservice [--once]`` (it runs this module's
homes pass, then ``datasets.scheduled``'s); settings in ``$PTJAAS_SNAPSHOT_SCHEDULE``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Mapping
from urllib.parse import quote

from .. import audit, teams
from ..errors import SettingError
from ..objects import label_value
from ..services import service_environment
from . import policy

SERVICE_NAME = "ptjaas-snapshots"
ENV = "PTJAAS_SNAPSHOT_SCHEDULE"
log = logging.getLogger("ptjaas.snapshots")


class ScheduleError(SettingError):
    """``custom.ptjaas.snapshots.schedule`` is invalid; the message names the key."""


def check_groups(groups) -> dict:
    """Validate ``{group: {"every": seconds >= 0, "keep": int >= 1, "datasets"?: {"every", "keep"},
    "homes"?: bool}}``; errors name the key. ``datasets``: the team's datasets' schedule
    (``datasets.scheduled``); a group given only ``datasets`` has no home schedule (``homes``
    false, as the result says; checking the result again gives it back)."""
    if not isinstance(groups, Mapping) or not groups:
        raise ScheduleError("scheduled snapshots: groups must be a non-empty dict group -> {every, keep}")
    out = {}
    for name, spec in groups.items():
        where = f"scheduled snapshots[{name!r}]"
        if not isinstance(spec, Mapping) or set(spec) - {"every", "keep", "datasets", "homes"}:
            raise ScheduleError(f"{where} must be {{'every': seconds, 'keep': count, 'datasets'?: "
                                f"{{'every', 'keep'}}}}, not {spec!r}")
        homes = spec.get("homes", bool(set(spec) - {"datasets"}) or not spec)
        if not isinstance(homes, bool):
            raise ScheduleError(f"{where}['homes'] must be true or false, not {homes!r}")
        out[str(name)] = dict(_every_keep(spec, where), homes=homes)
        if "datasets" in spec:
            inner = spec["datasets"]
            if not isinstance(inner, Mapping) or set(inner) - {"every", "keep"}:
                raise ScheduleError(f"{where}['datasets'] must be {{'every': seconds, 'keep': count}}, not {inner!r}")
            out[str(name)]["datasets"] = _every_keep(inner, f"{where}['datasets']")
        if not homes and "datasets" not in spec:
            raise ScheduleError(f"{where} schedules nothing: 'homes' is false and it has no 'datasets'")
    return out


def _every_keep(spec: Mapping, where: str) -> dict:
    every, keep = spec.get("every", 86400), spec.get("keep", 7)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or every < 0:
        raise ScheduleError(f"{where}['every'] must be a number of seconds >= 0, not {every!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ScheduleError(f"{where}['keep'] must be an integer >= 1, not {keep!r}")
    return {"every": float(every), "keep": keep}


def schedule_for_users(groups: dict, members: Mapping[str, list]) -> dict:
    """{user: {"every", "keep"}} (pure): shortest ``every``, largest ``keep`` over their groups."""
    out: dict = {}
    for group, users in members.items():
        spec = groups.get(group)
        if not spec or not spec.get("homes", True):
            continue
        spec = {"every": spec["every"], "keep": spec["keep"]}
        for user in users:
            cur = out.get(user)
            out[user] = spec.copy() if cur is None else {"every": min(cur["every"], spec["every"]),
                                                          "keep": max(cur["keep"], spec["keep"])}
    return out


def home_claims_of(claims: list, username: str) -> list:
    """The user's home claims (pure): theirs by annotation, not a snapshot view, not replaced."""
    out = []
    for c in claims:
        meta = c.get("metadata") or {}
        labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
        if ann.get(policy.USERNAME) != username or meta.get("deletionTimestamp"):
            continue
        if labels.get(policy.PURPOSE) == policy.VIEW or labels.get("ptjaas.io/replaced") == "true":
            continue
        out.append(c)
    return out


async def homes_pass(hub, kube, groups: dict, snapshot_classes: dict, audit_file: str = "") -> dict:
    """One pass over the scheduled groups' members' homes; returns {"taken": [...], "pruned": [...]}
    (the service, ``ptjaas_spawner.snapshotservice``, runs it, then the teams' datasets' pass)."""
    members = {}
    for group in [g for g, spec in groups.items() if spec.get("homes", True)]:
        _, model = await hub.request("GET", f"/groups/{quote(group, safe='')}")
        members[group] = list(model.get("users") or [])
    plan = schedule_for_users(groups, members)
    taken, pruned = [], []
    existing = await kube.list_snapshots(f"{policy.MANAGED_BY}={policy.SCHEDULER}")
    for user, spec in sorted(plan.items()):
        claims = await kube.list_claims(f"{policy.USER_LABEL}={label_value(user)}")
        for claim in home_claims_of(claims, user):
            cname = claim["metadata"]["name"]
            snap_class = snapshot_classes.get((claim.get("spec") or {}).get("storageClassName") or "")
            if not snap_class:
                log.debug("no snapshot class for the storage class of %s; skipped", cname)
                continue
            mine = [s for s in existing if policy.owner_of(s) == user
                    and ((s.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName") == cname]
            when = policy.now()
            if policy.due(mine, spec["every"], when):
                name = policy.snapshot_name(cname, "schedule", when)
                body = policy.snapshot_manifest(name=name, claim=cname, snapshot_class=snap_class, user=user,
                                                reason="schedule", by=SERVICE_NAME, managed_by=policy.SCHEDULER)
                made = await kube.create_snapshot(body)
                mine.append(made)
                taken.append(name)
                log.info("scheduled snapshot %s of %s's home %s", name, user, cname)
                audit.write(audit_file, audit.entry("snapshot-take", user, by=SERVICE_NAME, snapshot=name,
                                                    claim=cname, reason="schedule"), log)
            for old in policy.to_prune(mine, spec["keep"]):
                await kube.delete_snapshot(old)
                pruned.append(old)
                log.info("pruned scheduled snapshot %s of %s (keeping the newest %d)", old, cname, spec["keep"])
    return {"taken": taken, "pruned": pruned}


def service_config(groups: Mapping, *, snapshot_classes: Mapping, namespace: str | None = None,
                   audit_file: str | None = None, interval: float = 0, name: str = SERVICE_NAME,
                   python: str | None = None, team_namespaces: Mapping | None = None) -> dict:
    """``{"services": [...], "load_roles": [...]}`` for the scheduled-snapshot service."""
    groups = check_groups(groups)
    if not snapshot_classes:
        raise ScheduleError("scheduled snapshots need c.PtjaasSpawner.snapshot_classes (StorageClass -> "
                            "VolumeSnapshotClass)")
    everies = [g["every"] for g in groups.values() if g["homes"]] + [g["datasets"]["every"] for g in groups.values()
                                                                      if g.get("datasets")]
    interval = interval or max(10.0, min(everies) / 4)
    settings = {"groups": groups, "snapshot_classes": dict(snapshot_classes), "namespace": namespace or "",
                "team_namespaces": teams.expand_team_namespaces(team_namespaces or {}),
                "audit_file": os.path.abspath(audit_file) if audit_file else "", "interval": interval}
    env = service_environment()
    env[ENV] = json.dumps(settings, sort_keys=True)
    service = {"name": name, "command": [python or sys.executable, "-m", "ptjaas_spawner.snapshotservice"],
               "environment": env}
    scopes = [f"read:groups!group={g}" for g, spec in groups.items() if spec["homes"]]
    role = {"name": name, "description": "ptjaas scheduled snapshots: read the members of the scheduled groups",
            "scopes": scopes, "services": [name]}
    return {"services": [service], "load_roles": [role] if scopes else []}  # datasets only: no hub right


def install_scheduled_snapshots(c, groups: Mapping, **kwargs) -> dict:
    """Add the service and its role to ``c`` (reads ``c.PtjaasSpawner.snapshot_classes``,
    ``namespace`` and ``audit_log_file`` unless given)."""
    spawner = c.PtjaasSpawner
    kwargs.setdefault("snapshot_classes", spawner.snapshot_classes if "snapshot_classes" in spawner else {})
    if "namespace" not in kwargs:
        for cls in ("PtjaasSpawner", "KubeSpawner"):
            if "namespace" in c[cls]:
                kwargs["namespace"] = c[cls].namespace
                break
    if "team_namespaces" not in kwargs and "team_namespaces" in spawner:  # where the teams' datasets are
        kwargs["team_namespaces"] = spawner.team_namespaces
    if "audit_file" not in kwargs:
        kwargs["audit_file"] = spawner.audit_log_file if "audit_log_file" in spawner else "ptjaas-audit.jsonl"
    entries = service_config(groups, **kwargs)
    hub = c.JupyterHub
    hub.services = list(hub.services if "services" in hub else []) + entries["services"]
    hub.load_roles = list(hub.load_roles if "load_roles" in hub else []) + entries["load_roles"]
    return entries
