"""``DataAccessMixin``: the spawner's side of the audit record and of snapshots.

Mixed into ``PtjaasSpawner``. The start and the stop (``start.py``) call it to record server
starts (``audit_started``: image digest, size, each volume with its access mode), stops and
quota refusals (``audit``), and the spawner records option refusals (``audit_choice_refused``,
called where it refuses a choice). Snapshot opening (read-only claims made from snapshots,
mounted under ``~/snapshots/<time>`` and deleted when the server stops) lives in
``snapshots.views`` and is wired in here.
"""

from __future__ import annotations

import asyncio


from . import audit
from .snapshots.views import SnapshotViews


def _bounded(value):
    """A posted value as the record keeps it: as is when short, else cut like the user's
    message shows it (``catalog.shown``)."""
    from .catalog import SHOWN_PREFIX, shown

    if isinstance(value, str) and len(value) <= SHOWN_PREFIX:
        return value
    return shown(value)


def _handler_of(task):
    from tornado.web import RequestHandler

    frame = getattr(task.get_coro(), "cr_frame", None)
    handler = frame.f_locals.get("self") if frame is not None else None
    return handler if isinstance(handler, RequestHandler) else None


def task_requester() -> str | None:
    """Who made the hub request the running task answers (a user, an admin, a service such as
    the culler), None when no request did (the hub shutting down, a server that died).

    JupyterHub hands a spawner no handler for a stop, nor for its form's post (a refused start
    replaces the spawner). Checked against jupyterhub 6.1 and 5.5 with tornado 6: a request runs
    in a task whose coroutine is tornado's ``RequestHandler._execute`` (the form's options are
    read in a task it waits for: ``maybe_future``), and ``BaseHandler.stop_single_user`` runs
    the stop in a task of its own whose coroutine (its inner ``stop()``) holds the request's
    handler as ``self``. Would be replaced by a handler passed to every spawner call (JupyterHub
    passes one to a start)."""
    task = asyncio.current_task()
    if task is None:
        return None
    handler = _handler_of(task)
    if handler is None:  # a task a request's task waits for
        waiting = [t for t in asyncio.all_tasks() if getattr(t, "_fut_waiter", None) is task]
        handler = _handler_of(waiting[0]) if waiting else None
    return getattr(getattr(handler, "current_user", None), "name", None)


class DataAccessMixin(audit.AuditSettings, SnapshotViews):
    """Audit record + snapshot views for a KubeSpawner subclass."""

    def audit_requester(self):
        return task_requester() or super().audit_requester()

    def audit_choice_refused(self, options, availability, message):
        """The user's options were refused (form or API): a quota verdict or a forged/invalid
        option."""
        size = (options or {}).get("size")
        verdict = (availability or {}).get(size) if isinstance(size, str) else None
        quota = verdict is not None and not verdict[0]
        asked = options if isinstance(options, dict) else {}
        self.audit_refused("refused-quota" if quota else "refused-option", message, server=self.name,
                           options={k: _bounded(asked[k]) for k in ("image", "version", "size", "team", "snapshots")
                                    if k in asked})

    def audit_started(self, user=None, by=None):
        """The record of a server start: who, the image (and the digest that ran), the size, and
        each volume with its access mode."""
        pod = {}
        reflector = getattr(self, "pod_reflector", None)
        if reflector is not None:
            pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") or {}
        digest = ""
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == "notebook" or not digest:
                digest = status.get("imageID") or digest
        choice = getattr(self, "choice", None)
        self.audit(
            "server-start", user, server=self.name, by=by,
            image=choice.image if choice else None, version=choice.version if choice else None,
            image_ref=choice.image_ref if choice else self.image, image_digest=digest or None,
            size=choice.size if choice else None,
            volumes=audit.pod_volumes(pod, self.pvc_name, self.snapshot_view_claims(),
                                      [d["claim"] for d, _ in getattr(self.start_plan, "datasets", None) or []]),
            datasets={d["name"]: mode for d, mode in getattr(self.start_plan, "datasets", None) or []} or None,
            connections=list(choice.connections) if choice and choice.connections else None,  # names only
            **(getattr(self.start_plan, "registry_digest", None) or {}),  # a custom image's tag resolved (registrydigest.py)
        )
