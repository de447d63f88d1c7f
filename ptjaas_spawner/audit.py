"""The data-access audit record: one JSON line per data-access decision ptjaas makes.

Written by the hub (``AuditMixin`` in the spawner, the snapshot handlers) to an append-only
file (``c.PtjaasSpawner.audit_log_file``) and, the same line, to the hub log (logger
``ptjaas.audit`` under the hub's log, prefix ``audit:``). Read back by the admin page
(``/hub/ptjaas/audit``, see ``audithandlers``).

Fields of a line (absent when they do not apply):

- ``time``: when (UTC, ISO 8601, microseconds); ``action``: what happened, one of
  ``server-start``, ``server-stop``, ``server-cull`` (written by the culler), ``server-budget-warning``,
  ``server-budget-stop`` (a GPU-/CPU-hour budget at 90 % / used up), ``snapshot-take``, ``snapshot-open``, ``snapshot-restore``,
  ``dataset-create``, ``dataset-delete``, ``dataset-snapshot``, ``dataset-restore``, ``dataset-open`` (a
  snapshot asked to be opened at the next start; the start's ``snapshot-open`` names the
  dataset too) (team datasets: ``dataset``, ``team``, ``claim``, ``write``),
  and the refusals (see ``refusal``): ``refused-quota``, ``refused-option`` (a server option,
  a form field or a team), ``refused-snapshot``, ``refused-claim`` (a home claim not proven to
  be the user's), ``refused-access`` (a token without the right on that user or page),
  ``refused-request`` (a request body or query with an unknown key or an oversized value),
  ``refused-dataset`` (a dataset create, delete or mount refused);
- ``user``: whose data (the JupyterHub user name); ``by``: who asked (a user, an admin, a
  service such as ``ptjaas-snapshots``; absent when no request asked, e.g. a stop at hub shutdown);
- ``server``: the server name ("" = the default server);
- ``image``, ``version``, ``image_ref``, ``image_digest``, ``size``: what a server ran;
- ``volumes``: every volume a server mounted,
  ``[{"kind": "home"|"shared"|"snapshot"|"dataset", "claim", "mount_path", "access": "read-write"|"read-only"}]``;
  ``datasets``: the team datasets a server mounted, ``{name: "rw"|"ro"}``;
- ``snapshot``, ``claim``, ``reason``, ``previous_claim``: for snapshot actions;
- ``message``: what a refused user was told (why); ``options``: what a refused start asked for;
  ``request``: the refused request (method and path) where a hub page or API refused it;
- ``kind``, ``stopped``: for a cull (idle or max-age; whether the hub confirmed the stop).

No secret ever goes in: entries are built from plain fields, keys that look like credentials
(token, secret, password, authorization, cookie, key material) are dropped, strings are bounded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timezone
from typing import Iterable

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from . import appendfile, timestamps

REFUSALS = (
    "refused-quota", "refused-option", "refused-snapshot", "refused-claim", "refused-access", "refused-request",
    "refused-share", "refused-dataset",
)
ACTIONS = (
    "server-start", "server-start-failed", "server-stop", "server-cull", "snapshot-take", "snapshot-open",
    "snapshot-restore", "server-budget-warning", "server-budget-stop", "share-grant", "share-revoke", "share-visit",
    "dataset-create", "dataset-delete", "dataset-snapshot", "dataset-restore", "dataset-open",
    *REFUSALS,
)
_SECRET_KEY = re.compile(r"token|secret|passw|authori[sz]ation|cookie|credential|private[_-]?key|api[_-]?key", re.I)
_MAX_TEXT = 1000
_MAX_ITEMS = 100
log = logging.getLogger("ptjaas.audit")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def clean(value, depth: int = 0):
    """A copy of ``value`` fit for the record: credential-like keys dropped, strings and lists
    bounded, only JSON types."""
    if depth > 6:
        return None
    if isinstance(value, dict):
        return {str(k)[:100]: clean(v, depth + 1) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [clean(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:_MAX_TEXT]


def entry(action: str, user: str, **fields) -> dict:
    """One record (pure): ``time``, ``action``, ``user`` and the given fields (None dropped)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    out = {"time": now_iso(), "action": action, "user": user}
    out.update({k: v for k, v in fields.items() if v is not None})
    return clean(out)


def refusal(action: str, user: str | None, by: str | None, message: str, **fields) -> dict:
    """One refusal record (pure): who asked (``by``), whose data (``user``; '' when the request
    was about no one user), what was refused (``action`` and the fields: ``request``, ``options``,
    ``snapshot``, ``claim``, ...) and why (``message``, what the refused party was told)."""
    if action not in REFUSALS:
        raise ValueError(f"unknown refusal {action!r}")
    return entry(action, user if user is not None else "", by=by, message=message, **fields)


def record_refusal(path: str, hub_log: logging.Logger | None, action: str, user: str | None, by: str | None,
                   message: str, **fields) -> dict:
    """The one way a refusal is written, wherever it is decided (spawner, hub pages, API):
    one line in the record (``write``). Never raises: a failing record is logged as an error."""
    try:
        record = refusal(action, user, by, message, **fields)
        write(path, record, hub_log)
        return record
    except Exception as e:  # noqa: BLE001 - the record must not turn a refusal into a 500
        (hub_log or log).error("Could not write the audit record (%s): %s", path, e)
        return {}


_RESOLVED: dict = {}  # path as configured -> absolute path


def _resolved(path: str) -> str:
    """``path`` made absolute once per path (a relative path is resolved at its first record,
    as the hub's working directory is then)."""
    absolute = _RESOLVED.get(path)
    if absolute is None:
        absolute = _RESOLVED[path] = os.path.abspath(path)
    return absolute


def write(path: str, record: dict, hub_log: logging.Logger | None = None) -> None:
    """Append ``record`` to ``path`` (created 0600 if missing, its directory too; '' = no file)
    and log it. The file is kept open between lines and opened again when it was rotated or
    removed (``appendfile``)."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":"))
    (hub_log or log).info("audit: %s", line)
    if not path:
        return
    appendfile.append_line(_resolved(path), line, make_dirs=True)


def parse_time(text: str | None, what: str) -> datetime | None:
    """'2026-11-30' or '2026-11-30T12:00[:00][Z|+hh:mm]' -> aware datetime (UTC if no zone)."""
    if not text:
        return None
    value = timestamps.parse_time(text)
    if value is None:
        raise ValueError(f"{what} must be a date or time like 2026-11-30 or 2026-11-30T12:00, not {text[:40]!r}")
    return value


def matches(record: dict, user: str | None = None, since: datetime | None = None,
            until: datetime | None = None, action: str | None = None, dataset: str | None = None) -> bool:
    """Does a record pass the admin page's filters (pure)? ``dataset``: a team dataset's own lines
    and the server starts that mounted it."""
    if user and record.get("user") != user and record.get("by") != user:
        return False
    if action and record.get("action") != action:
        return False
    if dataset and record.get("dataset") != dataset and not any(
            isinstance(m, dict) and dataset in m for m in (record.get("datasets"), (record.get("options") or {}).get("datasets"))):
        return False
    if since or until:
        try:
            t = parse_time(record.get("time"), "time")
        except ValueError:
            return False
        if t is None or (since and t < since) or (until and t > until):
            return False
    return True


def read(path: str, limit: int = 500, **filters) -> list[dict]:
    """The newest ``limit`` records of ``path`` that match ``filters``, newest first."""
    if not path or not os.path.exists(path):
        return []
    out: list[dict] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and matches(record, **filters):
                out.append(record)
    return out[::-1][:limit]


def pod_volumes(pod: dict, home_claim: str | None, snapshot_claims: Iterable[str] = (),
                dataset_claims: Iterable[str] = ()) -> list[dict]:
    """The claim-backed volumes a pod mounts, for the record (pure)."""
    spec = pod.get("spec") or {}
    claims = {}
    for v in spec.get("volumes") or []:
        pvc = v.get("persistentVolumeClaim")
        if pvc:
            claims[v["name"]] = (pvc.get("claimName"), bool(pvc.get("readOnly")))
    snapshot_claims, dataset_claims = set(snapshot_claims), set(dataset_claims)
    out = []
    for container in (spec.get("containers") or [])[:1]:
        for m in container.get("volumeMounts") or []:
            if m.get("name") not in claims:
                continue
            claim, ro = claims[m["name"]]
            kind = ("home" if claim == home_claim else "snapshot" if claim in snapshot_claims
                    else "dataset" if claim in dataset_claims else "shared")
            out.append({"kind": kind, "claim": claim, "mount_path": m.get("mountPath"),
                        "access": "read-only" if ro or m.get("readOnly") else "read-write"})
    return out


class AuditSettings(LoggingConfigurable):
    """Where the record goes (mixed into the spawner: ``c.PtjaasSpawner.audit_log_file``)."""

    audit_log_file = Unicode(
        "ptjaas-audit.jsonl",
        config=True,
        help="""Append-only JSON-lines audit record of every data-access decision (server
        start/stop with image digest, size and each volume mounted with its access mode;
        snapshots taken, opened and restored and by whom; quota and option refusals). A
        relative path is relative to the hub's working directory (z2jh: /srv/jupyterhub, on the
        hub's database volume). Every line also goes to the hub log. '' = hub log only. Admins
        read it at /hub/ptjaas/audit.""",
    )

    def audit(self, action: str, user: str | None = None, **fields) -> dict:
        """Record one action (never raises: a failing record is logged as an error)."""
        try:
            record = entry(action, user if user is not None else self.user.name, **fields)
            write(self.audit_log_file, record, self.log)
            return record
        except Exception as e:  # noqa: BLE001 - the record must not break a start or a stop
            self.log.error("Could not write the audit record (%s): %s", self.audit_log_file, e)
            return {}

    def audit_refused(self, action: str, message: str, user: str | None = None, by: str | None = None,
                      **fields) -> dict:
        """Record one refusal of a request about this spawner's user (``record_refusal``);
        ``by`` defaults to whoever made the hub request being answered (``audit_requester``)."""
        return record_refusal(self.audit_log_file, self.log, action, user if user is not None else self.user.name,
                              by if by is not None else self.audit_requester(), message, **fields)

    def audit_requester(self) -> str | None:
        """Who made the hub request this spawner is answering (JupyterHub hands a spawner the
        handler of its start and of its spawn form), None if not known."""
        requester = getattr(getattr(self, "handler", None), "current_user", None)
        return getattr(requester, "name", None)
