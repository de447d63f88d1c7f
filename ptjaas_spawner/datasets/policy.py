"""Team datasets: the rules, as plain data in and out. Pure: no I/O.

A dataset is a PersistentVolumeClaim in its team's namespace (the team namespace of
``team_namespaces``, else the hub's), labelled ``ptjaas.io/dataset=<name>`` and
``ptjaas.io/team=<team>`` and annotated with its creator and its write rule:

- ``creator``: only its creator mounts it read-write; other members read-only;
- ``team``: every member of the team may mount it read-write;
- ``read-only``: everyone mounts it read-only (an admin changes the annotation
  ``ptjaas.io/dataset-write`` to open it again).

A team may have datasets when its ``quota_groups`` entry has ``datasets: {count, storage}``
(the most datasets and their total requested size). The access class comes from the site's
``c.PtjaasSpawner.dataset_classes`` (class -> ``{storage_class, access_modes, display_name?}``).
Members mount datasets under ``~/data/<name>`` (``"datasets": {"name": "rw"|"ro"}``).
"""

from __future__ import annotations

import re

from ..catalog import shown
from ..errors import SettingError
from ..quantity import format_quantity, parse_bytes

DATASET_LABEL = "ptjaas.io/dataset"
TEAM_LABEL = "ptjaas.io/team"
CREATOR = "ptjaas.io/dataset-creator"
WRITE = "ptjaas.io/dataset-write"
CLASS = "ptjaas.io/dataset-class"
WRITE_RULES = ("creator", "team", "read-only")
MODES = ("rw", "ro")
MAX_NAME = 40           # the claim is "dataset-<name>": well inside a 63-character label
MAX_MOUNTS = 20
MAX_SIZE_TEXT = 20
MOUNT_DIR = "data"      # under the home: ~/data/<name>
SETTING = "c.PtjaasSpawner.dataset_classes"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod")
DEFAULT_CLASSES = {"standard": {"display_name": "Standard (one server at a time may write)",
                                "storage_class": None, "access_modes": ["ReadWriteOnce"]}}


class DatasetRefused(ValueError):
    """A dataset request refused; ``status`` (400, 403, 404, 409) and the message the user reads."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---- settings ---------------------------------------------------------------------------

CLASSES_SCHEMA = {
    "type": "object", "maxProperties": 20,
    "propertyNames": {"pattern": _NAME.pattern, "maxLength": 40},
    "additionalProperties": {
        "type": "object", "additionalProperties": False, "required": ["access_modes"],
        "properties": {
            "display_name": {"type": "string", "maxLength": 100},
            "storage_class": {"type": ["string", "null"], "maxLength": 253},
            "access_modes": {"type": "array", "minItems": 1, "maxItems": 3, "uniqueItems": True,
                             "items": {"enum": list(ACCESS_MODES)}},
        },
    },
}


def check_classes(value) -> dict:
    """``dataset_classes`` checked (jsonschema); ``SettingError`` naming the setting and the key."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(CLASSES_SCHEMA).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = SETTING + "".join(f"[{p!r}]" for p in e.absolute_path)
        raise SettingError(f"{where}: {e.message[:300]}")
    return value


def classes_or_default(classes: dict) -> dict:
    return classes or DEFAULT_CLASSES


def team_limits(quota_groups: dict, team: str) -> dict | None:
    """``{"count": int, "storage": bytes}`` of a team that may have datasets, else None."""
    spec = ((quota_groups or {}).get(team) or {}).get("datasets")
    if spec is None:
        return None
    return {"count": spec["count"], "storage": parse_bytes(spec["storage"])}


def check_team_limits(quota_groups: dict) -> None:
    """Each ``quota_groups.<team>.datasets`` is ``{count: int >= 0, storage: quantity}``."""
    for team, spec in (quota_groups or {}).items():
        ds = (spec or {}).get("datasets") if isinstance(spec, dict) else None
        if ds is None:
            continue
        where = f"c.PtjaasSpawner.quota_groups[{team!r}]['datasets']"
        if not isinstance(ds, dict) or set(ds) != {"count", "storage"}:
            raise SettingError(f"{where} must be {{'count': whole number, 'storage': size such as '100Gi'}}")
        if isinstance(ds["count"], bool) or not isinstance(ds["count"], int) or ds["count"] < 0:
            raise SettingError(f"{where}['count'] must be a whole number >= 0, got {ds['count']!r}")
        try:
            parse_bytes(ds["storage"])
        except ValueError as e:
            raise SettingError(f"{where}['storage'] is invalid: {e}") from None


# ---- reading a claim ----------------------------------------------------------------------

def claim_name(name: str) -> str:
    return f"dataset-{name}"


def describe(pvc: dict) -> dict:
    """A dataset claim as the API and the page show it."""
    meta = pvc.get("metadata") or {}
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    spec = pvc.get("spec") or {}
    return {"name": labels.get(DATASET_LABEL, ""), "team": labels.get(TEAM_LABEL, ""), "claim": meta.get("name"),
            "namespace": meta.get("namespace"), "creator": ann.get(CREATOR, ""),
            "write": ann.get(WRITE, "read-only") if ann.get(WRITE) in WRITE_RULES else "read-only",
            "class": ann.get(CLASS, ""), "access_modes": list(spec.get("accessModes") or []),
            "storage_class": spec.get("storageClassName"),
            "size": ((spec.get("resources") or {}).get("requests") or {}).get("storage", ""),
            "phase": (pvc.get("status") or {}).get("phase", ""),
            "deleting": bool(meta.get("deletionTimestamp"))}


def team_labels_ok(team) -> bool:
    """Can the team's name label a claim (a Kubernetes label value)?"""
    return isinstance(team, str) and bool(_LABEL_VALUE.match(team))


def selector(team: str | None = None) -> str:
    return f"{DATASET_LABEL},{TEAM_LABEL}={team}" if team else DATASET_LABEL


# ---- decisions ----------------------------------------------------------------------------

def name_problem(name) -> str:
    if not isinstance(name, str) or not name:
        return "A dataset needs a name."
    if len(name) > MAX_NAME:
        return f"Dataset name {shown(name)} is too long ({len(name)} characters, at most {MAX_NAME})."
    if not _NAME.match(name):
        return (f"Dataset name {shown(name)} is not a DNS label: use lowercase letters, digits and '-', "
                "starting and ending with a letter or digit.")
    return ""


def may_see(team: str, user_groups, admin: bool = False) -> bool:
    return admin or team in set(user_groups or ())


def may_create(team: str, user_groups, quota_groups: dict, classes: dict, existing: list, name, size, klass,
               write) -> dict:
    """The checked request: ``{"name", "size" (bytes), "class", "write"}``, or ``DatasetRefused``.
    ``existing``: the team's dataset claims (``describe`` dicts)."""
    if team not in set(user_groups or ()):
        raise DatasetRefused(f"You are not a member of team {shown(team)}.", 403)
    limits = team_limits(quota_groups, team)
    if limits is not None and not team_labels_ok(team):
        raise DatasetRefused(f"Team {shown(team)} cannot have datasets: its name is not a Kubernetes label value "
                             "(letters, digits, '-', '_', '.', at most 63 characters).")
    if limits is None:
        raise DatasetRefused(f"Team {shown(team)} has no datasets on this hub (an admin sets "
                             f"quota_groups.{team[:40]}.datasets).", 403)
    problem = name_problem(name)
    if problem:
        raise DatasetRefused(problem)
    classes = classes_or_default(classes)
    klass = klass or next(iter(classes))
    if klass not in classes:
        raise DatasetRefused(f"Unknown access class {shown(klass)}; classes: {', '.join(classes)}.")
    write = write or "creator"
    if write not in WRITE_RULES:
        raise DatasetRefused(f"Write rule {shown(write)} is not one of {', '.join(WRITE_RULES)}.")
    try:
        if not isinstance(size, str) or len(size) > MAX_SIZE_TEXT:
            raise ValueError("a size such as '10Gi'")
        wanted = parse_bytes(size)
        if wanted <= 0:
            raise ValueError("more than 0")
    except ValueError as e:
        raise DatasetRefused(f"Dataset size {shown(size)} is not valid: {e}.") from None
    if any(d["name"] == name for d in existing):
        raise DatasetRefused(f"Team {team} already has a dataset {name}.", 409)
    if len(existing) + 1 > limits["count"]:
        raise DatasetRefused(f"Team {team} has {len(existing)} of {limits['count']} datasets: delete one first.")
    used = sum(_bytes(d["size"]) for d in existing)
    if used + wanted > limits["storage"]:
        free = max(limits["storage"] - used, 0)
        raise DatasetRefused(f"Dataset size {format_quantity(wanted, 'memory')} is over team {team}'s dataset "
                             f"storage: {format_quantity(free, 'memory')} of "
                             f"{format_quantity(limits['storage'], 'memory')} left.")
    return {"name": name, "size": wanted, "class": klass, "write": write}


def _bytes(text) -> int:
    try:
        return parse_bytes(text)
    except ValueError:
        return 0


def may_mount(dataset: dict, user: str, user_groups, mode: str, admin: bool = False) -> str:
    """'' if ``user`` may mount ``dataset`` (a ``describe`` dict) with ``mode`` ('rw'|'ro'),
    else why not."""
    name = dataset["name"]
    if dataset["team"] not in set(user_groups or ()):
        return f"Dataset {shown(name)} is not one of your teams' datasets."
    if mode not in MODES:
        return f"Dataset {name}: mount mode must be 'rw' or 'ro', not {shown(mode)}."
    if mode == "ro" or admin:
        return ""
    rule = dataset["write"]
    if rule == "read-only":
        return f"Dataset {name} is read-only for everyone: mount it with 'ro'."
    if rule == "creator" and dataset["creator"] != user:
        return f"Only its creator ({dataset['creator']}) may write dataset {name}: mount it with 'ro'."
    return ""


def may_delete(dataset: dict, user: str, admin: bool, confirm) -> str:
    """'' if ``user`` may delete ``dataset`` with the typed ``confirm``, else why not."""
    if not admin and dataset["creator"] != user:
        return f"Only its creator ({dataset['creator']}) or an admin may delete dataset {dataset['name']}."
    if confirm != dataset["name"]:
        return f"Type the dataset's name ({dataset['name']}) to confirm its deletion."
    return ""


def in_use_elsewhere(dataset: dict, pods: list, own_pod: str | None) -> str:
    """'' unless a ReadWriteOnce ``dataset`` is mounted by another running pod (``pods``: the
    reflector's pods in the dataset's namespace), else who and where in plain words."""
    if "ReadWriteOnce" not in dataset["access_modes"] and "ReadWriteOncePod" not in dataset["access_modes"]:
        return ""
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("name") == own_pod or meta.get("namespace") != dataset["namespace"]:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
            continue
        claims = [((v.get("persistentVolumeClaim") or {}).get("claimName")) for v in (pod.get("spec") or {}).get("volumes") or []]
        if dataset["claim"] in claims:
            who = (meta.get("annotations") or {}).get("hub.jupyter.org/username") or meta.get("name")
            return (f"Dataset {dataset['name']} can be mounted by one server at a time and is in use by "
                    f"{who}'s server (pod {meta.get('name')}): stop that server, or choose a class that "
                    "allows several servers.")
    return ""


def chosen_mounts(option) -> dict:
    """The ``datasets`` server option checked for shape: ``{name: 'rw'|'ro'}``, or ``DatasetRefused``."""
    if option is None:
        return {}
    if not isinstance(option, dict):
        raise DatasetRefused("Server option 'datasets' must be an object of dataset name -> 'rw' or 'ro'.")
    if len(option) > MAX_MOUNTS:
        raise DatasetRefused(f"Too many datasets ({len(option)}, at most {MAX_MOUNTS}).")
    for name, mode in option.items():
        problem = name_problem(name)
        if problem:
            raise DatasetRefused(problem)
        if mode not in MODES:
            raise DatasetRefused(f"Dataset {name}: mount mode must be 'rw' or 'ro', not {shown(mode)}.")
    return dict(option)


# ---- manifests ----------------------------------------------------------------------------

def claim_manifest(team: str, namespace: str, request: dict, creator: str, classes: dict) -> dict:
    klass = classes_or_default(classes)[request["class"]]
    spec = {"accessModes": list(klass["access_modes"]),
            "resources": {"requests": {"storage": format_quantity(request["size"], "memory")}}}
    if klass.get("storage_class"):
        spec["storageClassName"] = klass["storage_class"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name(request["name"]), "namespace": namespace,
                         "labels": {DATASET_LABEL: request["name"], TEAM_LABEL: team,
                                    "app.kubernetes.io/managed-by": "ptjaas"},
                         "annotations": {CREATOR: creator, WRITE: request["write"], CLASS: request["class"]}},
            "spec": spec}


def snapshot_before_delete(dataset: dict, snapshot_class: str, by: str, when) -> dict:
    """The VolumeSnapshot taken of a dataset before its delete (kept: an admin deletes it, or
    makes a claim from it to bring the dataset back). Not one of the home snapshots: its
    ``managed-by`` is ``ptjaas``, so the home snapshot pages never list it."""
    name = f"{dataset['claim']}-before-delete-{when:%Y%m%d-%H%M%S}"
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": dataset["namespace"],
                         "labels": {DATASET_LABEL: dataset["name"], TEAM_LABEL: dataset["team"],
                                    "app.kubernetes.io/managed-by": "ptjaas"},
                         "annotations": {CREATOR: dataset["creator"], "ptjaas.io/snapshot-by": by,
                                         "ptjaas.io/snapshot-reason": "before-delete"}},
            "spec": {"source": {"persistentVolumeClaimName": dataset["claim"]},
                     "volumeSnapshotClassName": snapshot_class}}


def mount_parts(datasets: list, home_mount_path: str) -> tuple[list, list]:
    """``(volumes, volume_mounts)`` for ``[(describe dict, mode)]``: ``~/data/<name>``,
    read-only for 'ro'."""
    volumes, mounts = [], []
    for d, mode in datasets:
        volume = f"dataset-{d['name']}"
        ro = mode == "ro"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": d["claim"], "readOnly": ro}})
        mounts.append({"name": volume, "mountPath": f"{home_mount_path.rstrip('/')}/{MOUNT_DIR}/{d['name']}",
                       "readOnly": ro})
    return volumes, mounts


def startup_problems(section: dict) -> list:
    """The dataset settings of a ``PtjaasSpawner`` config section checked at hub start-up
    (``fragmentcheck``): ``[(setting, message)]``."""
    problems = []
    for check, key in ((check_classes, "dataset_classes"), (check_team_limits, "quota_groups")):
        if key in section:
            try:
                check(section[key])
            except SettingError as e:
                problems.append(("PtjaasSpawner", str(e)))
    return problems
