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


class DataAccessMixin(audit.AuditSettings, SnapshotViews):
    """Audit record + snapshot views for a KubeSpawner subclass."""

    def audit_choice_refused(self, options, availability, message):
        """The user's options were refused (form or API): a quota verdict or a forged/invalid
        option."""
        size = (options or {}).get("size")
        verdict = (availability or {}).get(size) if isinstance(size, str) else None
        quota = verdict is not None and not verdict[0]
        asked = options if isinstance(options, dict) else {}
        self.audit("refused-quota" if quota else "refused-option", server=self.name,
                   options={k: _bounded(asked[k]) for k in ("image", "version", "size", "team", "snapshots")
                            if k in asked},
                   message=message)

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
            self.audit("refused-quota", who[0], server=self.name, message=getattr(e, "jupyterhub_message", str(e)))
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
        )

    async def stop(self, now=False):
        in_start = startplan.in_start()  # KubeSpawner's stop of a leftover pod, or a failed start's
        try:
            return await super().stop(now=now)
        finally:
            if not in_start:
                self.audit("server-stop", server=self.name)
                await self.snapshot_views_cleanup()
