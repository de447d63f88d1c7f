"""Server time on the hub's pages (served by the hub process: they read its accounting record).

- ``/hub/ptjaas/usage`` (admins, ``usagepages``) shows ``admin_section``: daily GPU-hours
  and CPU-hours of the last 30 days per team and per user, as SVG;
- ``GET /hub/ptjaas/usage/me``: the logged-in user's own charts, budgets and runs;
- ``GET /hub/ptjaas/usage.csv``: every run of the last ``days`` days (default 30, at most 3660)
  as CSV, admins only (the ``admin:servers`` scope).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from html import escape

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from .. import hubrequests
from ..quota.timebudget import TimePolicy, budget_line
from ..quota.runs import DAY, HOUR, daily, totals
from .store import store_for
from .svg import charts

DAYS = 30
CSV_FIELDS = ("id", "user", "server", "team", "image", "version", "size", "gpus", "cpu", "memory", "start", "end",
              "end_reason", "gpu_hours", "cpu_hours")

ME_PAGE = """{% extends "page.html" %}
{% block main %}
<div class="container">
  <h1>Your server time</h1>
  {% if line %}<p id="ptjaas-budget-line"><strong>Budget</strong> {{ line }}</p>{% endif %}
  {% for w in warnings %}<p class="alert alert-warning">{{ w }}</p>{% endfor %}
  <h2>GPU-hours and CPU-hours per day, last {{ days }} days</h2>
  {% for name, r, svg in charts %}<figure>{{ svg | safe }}</figure>
  {% else %}<p>No server time in the last {{ days }} days.</p>{% endfor %}
  <h2>Runs</h2>
  <table class="table" id="ptjaas-runs">
    <tr><th>server</th><th>size</th><th>image:version</th><th>start (UTC)</th><th>end (UTC)</th>
        <th>GPU-hours</th><th>CPU-hours</th></tr>
    {% for r in runs %}
    <tr><td>{{ r.server or "(default)" }}</td><td>{{ r.size }}</td><td>{{ r.image }}:{{ r.version }}</td>
      <td>{{ r.start_text }}</td><td>{{ r.end_text }}</td><td>{{ r.gpu_hours }}</td><td>{{ r.cpu_hours }}</td></tr>
    {% endfor %}
  </table>
</div>
{% endblock %}
"""


def _settings(handler, names):
    """The values of ``names`` for the hub's spawner class, from its config sections (the most
    specific section wins, as traitlets resolves them for a spawner)."""
    spawner_class = handler.settings.get("spawner_class")
    config = handler.settings.get("config") or {}
    out = {}
    sections = spawner_class.section_names() if hasattr(spawner_class, "section_names") else []
    for section in sections:
        if section in config:
            for name in names:
                if name in config[section]:
                    out[name] = config[section][name]
    return out


def accounting_of(handler):
    """(store, TimePolicy) of the hub's spawner class."""
    s = _settings(handler, ("accounting_file", "accounting_clock", "quota_default", "quota_users", "quota_groups"))
    store = store_for(s.get("accounting_file", "ptjaas-accounting.jsonl"), s.get("accounting_clock"))
    policy = TimePolicy.from_config(s.get("quota_default"), s.get("quota_users"), s.get("quota_groups"))
    return store, policy


def _cell(value):
    """A CSV cell a spreadsheet will not run as a formula (a name may begin with = + - @)."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _when(t) -> str:
    return "" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def admin_section(handler) -> str:
    """HTML for the admin usage page: per-team and per-user daily charts, a CSV link."""
    store, _ = accounting_of(handler)
    runs, now = list(store.runs.values()), store.now()
    base = escape(handler.base_url)
    out = [f'<h2 id="ptjaas-server-time">Server time, last {DAYS} days</h2>',
           f'<p><a href="{base}ptjaas/usage.csv">CSV of every run</a> · '
           f'<a href="{base}ptjaas/usage/me">your own</a></p>']
    for title, key, css in (("Teams", lambda r: r.team, "ptjaas-team-charts"),
                            ("Users", lambda r: r.user, "ptjaas-user-charts")):
        d = daily(runs, now, DAYS, key=key)
        found = charts({k: v for k, v in d["series"].items() if k}, d["days"])
        out.append(f'<h3>{title}</h3><div id="{css}">')
        out += [f"<figure>{svg}</figure>" for _, _, svg in found] or ["<p>No server time.</p>"]
        out.append("</div>")
    return "\n".join(out)


class MyUsageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        user = self.current_user
        store, policy = accounting_of(self)
        now = store.now()
        runs = store.runs_of(user.name)
        groups = sorted(g.name for g in user.groups)
        team = policy.team_of(groups)
        line = budget_line(policy, store.runs_of(user.name, team), user.name, groups, team, now) if policy.enabled else ""
        from .mixin import _WARNED

        d = daily(runs, now, DAYS, key=lambda r: r.user)
        shown = []
        for r in sorted(runs, key=lambda r: r.start, reverse=True):
            t = totals([r], now - DAYS * DAY, now, now)
            if not t:
                continue
            row = next(iter(t.values()))
            shown.append(dict(server=r.server, size=r.size, image=r.image, version=r.version,
                              start_text=_when(r.start), end_text=_when(r.end) or "running",
                              gpu_hours=f"{row['gpu_hours']:.2f}", cpu_hours=f"{row['cpu_hours']:.2f}"))
        env = self.settings["jinja2_env"]
        ns = dict(self.template_namespace, line=line, warnings=list(_WARNED.get(user.name, {}).values()),
                  charts=charts(d["series"], d["days"]), runs=shown[:200], days=DAYS)
        self.write(await env.from_string(ME_PAGE).render_async(**ns))


class UsageCSVHandler(BaseHandler):
    @web.authenticated
    def get(self):
        if "admin:servers" not in self.expanded_scopes:
            hubrequests.refuse(self, 403, "refused-access", "", "Only administrators may export the usage of all users")
        try:
            days = int(self.get_argument("days", str(DAYS)))
            if not 1 <= days <= 3660:
                raise ValueError
        except ValueError:
            raise web.HTTPError(400, "days must be a whole number of days from 1 to 3660") from None
        store, _ = accounting_of(self)
        now = store.now()
        a = now - days * DAY
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_FIELDS)
        for r in sorted(store.runs.values(), key=lambda r: r.start):
            secs = r.seconds(a, now, now)
            if secs <= 0:
                continue
            w.writerow([_cell(v) for v in (
                r.id, r.user, r.server, r.team, r.image, r.version, r.size, r.gpus, r.cpu, r.memory,
                _when(r.start), _when(r.end), r.end_reason, f"{r.gpus * secs / HOUR:.4f}", f"{r.cpu * secs / HOUR:.4f}")])
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="ptjaas-usage.csv"')
        self.write(buf.getvalue())


accounting_handlers = [
    (r"/ptjaas/usage/me", MyUsageHandler),
    (r"/ptjaas/usage\.csv", UsageCSVHandler),
]
