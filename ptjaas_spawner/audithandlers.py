"""The admin page of the audit record, served by the hub.

- ``GET /hub/ptjaas/audit?user=&since=&until=&action=&dataset=``: HTML table, newest first (admins);
- ``GET /hub/api/ptjaas/audit?...``: the same records as JSON (scope ``admin:users``).

``user`` matches the user whose data it was or who acted; ``dataset`` a team dataset's
create, delete, refusal or mount; ``since``/``until`` take a date or
a time (2026-11-30, 2026-11-30T12:00, UTC unless a zone is given). A bad filter is answered
with 400 naming it. The file is ``c.PtjaasSpawner.audit_log_file``.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from . import audit, hubrequests
from .pagetemplates import render_page
from .hubrequests import audit_path

LIMIT = 500


def _filters(handler) -> dict:
    problem = hubrequests.query_problem("audit", handler.request.query_arguments)
    if problem:
        raise ValueError(problem)
    raw = {k: handler.get_argument(k, "") for k in ("user", "since", "until", "action", "dataset")}
    if raw["action"] and raw["action"] not in audit.ACTIONS:
        raise ValueError(f"action must be one of {', '.join(audit.ACTIONS)}")
    return raw


def _records(handler, raw) -> list:
    return audit.read(audit_path(handler), LIMIT, user=raw["user"] or None,
                      since=audit.parse_time(raw["since"], "since"), until=audit.parse_time(raw["until"], "until"),
                      action=raw["action"] or None, dataset=raw.get("dataset") or None)


def _details(record) -> str:
    skip = {"time", "action", "user", "by"}
    return json.dumps({k: v for k, v in record.items() if k not in skip}, sort_keys=True)


class AuditAPIHandler(APIHandler):
    def get(self):
        if not self.current_user:
            raise web.HTTPError(403, "Only administrators may read the audit record")
        if "admin:users" not in self.expanded_scopes:
            hubrequests.refuse(self, 403, "refused-access", "", "Only administrators may read the audit record")
        try:
            records = _records(self, _filters(self))
        except ValueError as e:
            hubrequests.refuse(self, 400, "refused-request", "", str(e))
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"records": records, "limit": LIMIT}))


class AuditPageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        if "admin:users" not in self.expanded_scopes:
            hubrequests.refuse(self, 403, "refused-access", "", "Only administrators may read the audit record")
        error, records, raw = "", [], {}
        try:
            raw = _filters(self)
            records = _records(self, raw)
        except ValueError as e:
            error = str(e)
        ns = dict(self.template_namespace, records=records, f=raw, error=error, limit=LIMIT,
                  actions=audit.ACTIONS, details=_details, path=audit_path(self))
        self.write(await render_page(self, "audit.html", ns))


audit_handlers = [
    (r"/ptjaas/audit", AuditPageHandler),
    (r"/api/ptjaas/audit", AuditAPIHandler),
]
