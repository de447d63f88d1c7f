"""Admin usage page and JSON endpoint, served by the hub process itself (they read the hub's
live quota ledger).

- ``GET /hub/ptjaas/usage``: HTML page (admins only), with the daily server-time charts
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
from .accounting.handlers import accounting_handlers, admin_section
from .quota.budget import QuotaPolicy, fmt, usage_report
from .quota.mixin import LEDGER, QuotaMixin
from .sizes import resources_text

PAGE = """{% extends "page.html" %}
{% block main %}
<div class="container">
  <h1>Server quotas and usage</h1>
  <h2>Groups</h2>
  <table class="table" id="ptjaas-groups">
    <tr><th>group</th><th>GPUs</th><th>CPU</th><th>memory</th><th>servers</th><th>holders</th></tr>
    {% for name, g in report.groups.items() %}
    <tr><td>{{ name }}</td>
      {% for r in ["gpus", "cpu", "memory", "servers"] %}
      <td>{{ f(r, g.used[r]) }} of {{ f(r, g.limits[r]) }}</td>
      {% endfor %}
      <td>{{ g.holders | join(", ") }}</td></tr>
    {% endfor %}
  </table>
  <h2>Namespaces</h2>
  <table class="table" id="ptjaas-namespaces">
    <tr><th>namespace</th><th>servers</th><th>GPUs</th><th>CPU and memory (guarantee &rarr; limit)</th>
        <th>users</th></tr>
    {% for name, n in report.namespaces.items() %}
    <tr><td>{{ name }}</td><td>{{ n.servers }}</td><td>{{ n.gpus }}</td>
      <td>{{ res(n.cpu, n.cpu_limit, n.memory, n.memory_limit) }}</td><td>{{ n.users | join(", ") }}</td></tr>
    {% endfor %}
  </table>
  <h2>Users</h2>
  <table class="table" id="ptjaas-users">
    <tr><th>user</th><th>servers</th><th>GPUs</th><th>CPU and memory (guarantee &rarr; limit)</th>
        <th>budget</th></tr>
    {% for name, u in report.users.items() %}
    <tr><td>{{ name }}</td>
      <td>{{ u.servers }}{% if u.limits.servers is not none %} of {{ u.limits.servers }}{% endif %}</td>
      <td>{{ u.gpus }}{% if u.limits.gpus is not none %} of {{ u.limits.gpus }}{% endif %}</td>
      <td>{{ res(u.cpu, u.cpu_limit, u.memory, u.memory_limit) }}</td>
      <td>{% for r in ["cpu", "memory"] %}{% if u.limits[r] is not none -%}
        {{ r }} {{ f(r, u[r]) }} of {{ f(r, u.limits[r]) }};
      {% endif %}{% endfor %}</td></tr>
    {% endfor %}
  </table>
  <h2>Servers</h2>
  <table class="table" id="ptjaas-servers">
    <tr><th>user</th><th>server</th><th>group pool</th><th>namespace</th><th>size</th><th>image:version</th>
        <th>GPUs</th><th>CPU and memory (guarantee &rarr; limit)</th></tr>
    {% for s in report.servers %}
    <tr><td>{{ s.user }}</td><td>{{ s.server or "(default)" }}</td><td>{{ s.pool or "-" }}</td>
      <td>{{ s.namespace or "-" }}</td><td>{{ s.size }}</td><td>{{ s.image }}:{{ s.version }}</td><td>{{ s.gpus }}</td>
      <td>{{ res(s.cpu, s.cpu_limit, s.memory, s.memory_limit) }}</td></tr>
    {% endfor %}
  </table>
  {{ server_time | safe }}
  <p><a href="{{ base_url }}api/ptjaas/usage">JSON</a> · Prometheus metrics: <code>{{ base_url }}metrics</code></p>
</div>
{% endblock %}
"""


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
        env = self.settings["jinja2_env"]
        ns = dict(self.template_namespace, report=_report(self), f=fmt, res=resources_text,
                  server_time=admin_section(self))
        ns["xsrf_token"] = self.xsrf_token.decode("ascii")
        self.write(await env.from_string(PAGE).render_async(**ns))


usage_handlers = [
    (r"/ptjaas/usage", UsagePageHandler),
    (r"/api/ptjaas/usage", UsageAPIHandler),
    *accounting_handlers,  # /hub/ptjaas/usage/me, /hub/ptjaas/usage.csv
]
