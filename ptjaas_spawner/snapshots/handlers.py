"""The snapshot page and REST API, served by the hub.

REST (the user's own token, or an admin's / a service's with the scope on that user):

- ``GET  /hub/api/ptjaas/snapshots/<user>`` (scope ``read:servers``): ``{"user", "enabled",
  "why", "storage_class", "snapshot_class", "snapshots": [{"name", "time", "folder", "reason",
  "size", "ready", "claim", "error", "by"}]}``, newest first (``time`` RFC 3339; ``folder``: the
  time as the page shows it and as ``~/snapshots/<folder>`` names it when opened);
- ``POST /hub/api/ptjaas/snapshots/<user>`` (scope ``servers``, no body or ``{}``): take one now
  (rate-limited: 429 with the seconds left);
- ``POST /hub/api/ptjaas/snapshots/<user>/open`` ``{"snapshots": [names]}`` (``servers``):
  start the user's server with those snapshots mounted read-only under ``~/snapshots/<time>``
  (same image and size as last time). The server option ``snapshots`` of
  ``POST /hub/api/users/<user>/server`` does the same;
- ``POST /hub/api/ptjaas/snapshots/<user>/restore`` ``{"snapshot": name}`` (``servers``):
  make that snapshot the user's home (server stopped; never destructive).

Page: ``/hub/ptjaas/snapshots`` (``?user=`` for admins), also shown on the hub home page when
``c.JupyterHub.template_paths`` includes ``TEMPLATE_DIR`` (``ptjaas_spawner.pages.install``).
A name is only ever looked up among that user's own snapshots. Bodies and query arguments are
strict and bounded (``hubrequests``); every refusal is on the audit record: a snapshot refused
(``refused-snapshot``, with the name asked for), a bad body (``refused-request``), a token
without the right on that user (``refused-access``).
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from .. import hubrequests
from ..pagetemplates import render_page
from ..hubrequests import audited_scope
from . import ops, policy
from .views import SnapshotViews

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")

SNAPSHOT_NAME = {"type": "string", "maxLength": 253}
hubrequests.accept(
    bodies={
        "snapshot-take": hubrequests.object_schema({}),
        "snapshot-restore": hubrequests.object_schema({"snapshot": SNAPSHOT_NAME}, ["snapshot"]),
        "snapshot-open": hubrequests.object_schema(
            {"snapshots": {"type": ["array", "string"], "maxItems": policy.MAX_OPEN, "maxLength": 253,
                           "items": SNAPSHOT_NAME}}, ["snapshots"]),
    },
    queries={"snapshot-list": {}},
    forms={"snapshot-page": ({"action": 20, "restore": 253, "snapshot": 253}, {"snapshot": policy.MAX_OPEN})},
)

def _spawner(handler, user):
    spawner = user.spawner
    if not isinstance(spawner, SnapshotViews):
        raise web.HTTPError(404, "Snapshots need the ptjaas spawner")
    return spawner


def _actor(handler) -> str:
    cur = handler.current_user
    return getattr(cur, "name", None) or "unknown"


async def start_with_views(handler, user, names, by):
    """Start the user's default server with snapshots opened read-only."""
    spawner = _spawner(handler, user)
    names = policy.requested_views(names)
    if not names:
        raise policy.SnapshotRefused("Choose at least one snapshot to open.")
    if spawner.active:
        raise policy.SnapshotRefused("Your server is running: stop it, then open snapshots at the next start.", 409)
    items = await spawner.snapshot_kube().list_snapshots(policy.SELECTOR)
    for name in names:  # refuse early, with the reason (the start checks again)
        policy.find_own(items, user.name, name)
    spawner._snapshot_request_pending = {"names": names, "by": by}
    options = {"same_as_last": True} if getattr(spawner, "_last", None) and spawner.images else {}
    await handler.spawn_single_user(user, "", options)


def _asked(names) -> str | None:
    """The snapshot name(s) a refused request asked for, as the record keeps them."""
    if isinstance(names, (list, tuple)):
        names = ", ".join(str(n) for n in names[:policy.MAX_OPEN])
    return names if isinstance(names, str) else None


class SnapshotAPIHandler(APIHandler):
    def _user(self, user_name):
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, "No such user")
        return user

    def _refused(self, e: policy.SnapshotRefused, user, asked=None, reason=None):
        hubrequests.record(self, "refused-snapshot", user, str(e), snapshot=_asked(asked), reason=reason)
        self.set_status(e.status)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"status": e.status, "message": str(e)}))

    @audited_scope("read:servers")
    async def get(self, user_name):
        hubrequests.check_query(self, "snapshot-list", user_name)
        user = self._user(user_name)
        spawner = _spawner(self, user)
        status = await ops.home_status(spawner)
        snaps = await ops.list_user(spawner)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(dict(status, user=user.name, snapshots=snaps)))

    @audited_scope("servers")
    async def post(self, user_name, action=None):
        body = hubrequests.json_body(self, f"snapshot-{action or 'take'}", user_name)
        hubrequests.check_query(self, "snapshot-list", user_name)
        user = self._user(user_name)
        spawner = _spawner(self, user)
        by = _actor(self)
        asked = body.get("snapshot") or body.get("snapshots")
        try:
            if action is None:
                result = await ops.take(spawner, by)
                self.set_status(201)
            elif action == "restore":
                result = await ops.restore(spawner, body["snapshot"], by,
                                           limited="admin:users" not in self.expanded_scopes)
                self.set_status(200)
            else:
                await start_with_views(self, user, body["snapshots"], by)
                result = {"started": True}
                self.set_status(202)
        except policy.SnapshotRefused as e:
            return self._refused(e, user.name, asked, reason="manual" if action is None else None)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(result))


class SnapshotPageHandler(BaseHandler):
    def _target(self):
        cur = self.current_user
        name = self.get_argument("user", "") or cur.name
        if name != cur.name and not cur.admin:
            hubrequests.refuse(self, 403, "refused-access", name[:100], "You may only see your own snapshots")
        user = self.find_user(name)
        if user is None:
            raise web.HTTPError(404, "No such user")
        return user

    @web.authenticated
    async def get(self):
        user = self._target()
        spawner = _spawner(self, user)
        status = await ops.home_status(spawner)
        snaps = await ops.list_user(spawner)
        own = user.name == self.current_user.name
        message = self.get_argument("message", "")[:300]
        taken = next((s for s in snaps if s["name"] == self.get_argument("taken", "")[:253]), None)
        if taken is not None:  # said as the row is now, not as it was when taken
            message = policy.taken_message(taken)
        ns = dict(self.template_namespace, status=status, snapshots=snaps, own=own, target=user.name,
                  running=bool(spawner.active), message=message, mount_dir=spawner.snapshot_mount_dir,
                  query="" if own else f"?user={user.name}", xsrf=self.xsrf_token.decode("ascii"))
        section = await render_page(self, "snapshots-section.html", ns)
        if not self.get_argument("embed", ""):
            section = await render_page(self, "snapshots.html", dict(self.template_namespace, section=section))
        self.write(section)

    @web.authenticated
    async def post(self):
        user = self._target()
        hubrequests.check_form(self, "snapshot-page", user.name)
        spawner = _spawner(self, user)
        by = self.current_user.name
        action = self.get_argument("action", "")
        restore = self.get_argument("restore", "")
        try:
            if restore:
                out = await ops.restore(spawner, restore, by, limited=not self.current_user.admin)
                message = (f"Your home is now restored from snapshot {restore}. The previous home is kept "
                           f"as {out['previous_claim']} (snapshot {out['before_restore_snapshot']}).")
            elif action == "take":
                out = await ops.take(spawner, by)
                query = {"taken": out["name"]} if user.name == self.current_user.name else \
                    {"taken": out["name"], "user": user.name}
                return self.redirect(self.hub.base_url + "ptjaas/snapshots?" + urlencode(query))
            elif action == "open":
                await start_with_views(self, user, self.get_arguments("snapshot"), by)
                return self.redirect(self.hub.base_url + "spawn-pending/" + user.escaped_name)
            else:
                hubrequests.refuse(self, 400, "refused-request", user.name, "Unknown action: choose take, open or restore.")
        except policy.SnapshotRefused as e:
            message = str(e)
            hubrequests.record(self, "refused-snapshot", user.name, message,
                               snapshot=_asked(restore or self.get_arguments("snapshot") or None),
                               reason="manual" if action == "take" and not restore else None)
        query = {"message": message}
        if user.name != self.current_user.name:
            query["user"] = user.name
        self.redirect(self.hub.base_url + "ptjaas/snapshots?" + urlencode(query))


snapshot_handlers = [
    (r"/ptjaas/snapshots", SnapshotPageHandler),
    (r"/api/ptjaas/snapshots/([^/]+)", SnapshotAPIHandler),
    (r"/api/ptjaas/snapshots/([^/]+)/(restore|open)", SnapshotAPIHandler),
]
