"""``DataAccessMixin``: the spawner's side of the audit record and of snapshots.

Mixed into ``PtjaasSpawner`` before ``QuotaMixin``. It wraps ``start``/``stop`` to record
server starts (image digest, size, each volume with its access mode), stops and quota
refusals (``audit``), and records option refusals (``audit_choice_refused``, called by the
spawner where it refuses a choice). Snapshot opening (read-only claims made from snapshots,
mounted under ``~/snapshots/<time>`` and deleted when the server stops) lives in
``snapshots.views`` and is wired in here.
"""

from __future__ import annotations

import asyncio

from tornado import web

from . import audit, startplan
from .quota.mixin import QuotaExceeded
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

    def start(self):
        # who, read once as the start begins (JupyterHub hands the spawner the request that
        # started it): the record is made from what the start holds, with no database load
        requester = getattr(getattr(self, "handler", None), "current_user", None)
        who = (self.user.name, getattr(requester, "name", None))
        inner = super().start()
        return asyncio.ensure_future(self._audited_start(inner, who))

    async def _audited_start(self, inner, who=(None, None)):
        try:
            url = await inner
        except QuotaExceeded as e:
            self.audit_refused("refused-quota", getattr(e, "jupyterhub_message", str(e)), user=who[0],
                               by=who[1] or None, server=self.name)
            raise
        except web.HTTPError:
            raise  # option refusals are recorded where they are decided
        except BaseException:
            await self.snapshot_views_cleanup()
            raise
        self._audit_started(*who)
        return url

    def _audit_started(self, user=None, by=None):
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
            volumes=audit.pod_volumes(pod, self.pvc_name, self.snapshot_view_claims()),
            connections=list(choice.connections) if choice and choice.connections else None,  # names only
        )

    async def stop(self, now=False):
        in_start = startplan.in_start()  # KubeSpawner's stop of a leftover pod, or a failed start's
        try:
            return await super().stop(now=now)
        finally:
            if not in_start:
                self.audit("server-stop", server=self.name, by=task_requester())
                await self.snapshot_views_cleanup()
