"""Admin usage page and JSON endpoint, served by the hub process itself (they read the hub's
live quota ledger).

- ``GET /hub/ptjaas/usage``: HTML page (admins only, ``templates/pages/usage.html``), with the daily server-time charts
  (``accounting.handlers``: also ``/hub/ptjaas/usage/me`` and ``/hub/ptjaas/usage.csv``).
- ``GET /hub/api/ptjaas/usage``: JSON, usage by server, user, group (pool), size, image
  version and namespace (the hub's and each team namespace), with the configured limits (needs
  the ``admin:servers`` scope: admins, or a service token with that scope). Both are empty when
  no budget is configured (nothing is counted then).

Registered automatically by ``PtjaasAuthenticator``; with another authenticator add
``c.JupyterHub.extra_handlers = ptjaas_spawner.usagepages.usage_handlers`` (JupyterHub
warns that ``extra_handlers`` is deprecated; it works in JupyterHub 5 and 6).
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from . import hubrequests
from .accounting.handlers import accounting_handlers, admin_charts
from .pagetemplates import render_page
from .quota.budget import QuotaPolicy, fmt, usage_report
from .quota.mixin import LEDGER, QuotaMixin
from .sizes import resources_text

def _policy(handler) -> QuotaPolicy:
    """The hub's spawner class's own quota policy (none for a spawner without quotas)."""
    spawner_class = handler.settings.get("spawner_class")
    if not (isinstance(spawner_class, type) and issubclass(spawner_class, QuotaMixin)):
        return QuotaPolicy()
    return spawner_class.quota_policy_for(handler.settings.get("config") or {})


def _report(handler) -> dict:
    groups = {}
    for c in LEDGER.holders():
        if c.user not in groups:
            u = handler.find_user(c.user)
            groups[c.user] = [g.name for g in u.groups] if u else []
    return usage_report(_policy(handler), LEDGER, groups)


def _is_admin(handler) -> bool:
    return "admin:servers" in handler.expanded_scopes


class UsageAPIHandler(APIHandler):
    def get(self):
        if not self.current_user:
            raise web.HTTPError(403, "Authentication required")
        if not _is_admin(self):
            hubrequests.refuse(self, 403, "refused-access", "", "Only administrators may read the usage of all users")
        hubrequests.check_query(self, "usage", "")
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(_report(self)))


class UsagePageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        if not _is_admin(self):
            hubrequests.refuse(self, 403, "refused-access", "", "Only administrators may see the usage of all users")
        ns = dict(self.template_namespace, report=_report(self), f=fmt, res=resources_text,
                  server_time=admin_charts(self))
        ns["xsrf_token"] = self.xsrf_token.decode("ascii")
        self.write(await render_page(self, "usage.html", ns))


usage_handlers = [
    (r"/ptjaas/usage", UsagePageHandler),
    (r"/api/ptjaas/usage", UsageAPIHandler),
    *accounting_handlers,  # /hub/ptjaas/usage/me, /hub/ptjaas/usage.csv
]
