"""Server time on the hub's pages (served by the hub process: they read its accounting record).

- ``/hub/ptjaas/usage`` (admins, ``usagepages``) shows ``admin_charts``: daily GPU-hours
  and CPU-hours of the last 30 days per team and per user, as SVG;
- ``GET /hub/ptjaas/usage/me``: the logged-in user's own charts, budgets and runs
  (``templates/pages/usage-me.html``);
- ``GET /hub/ptjaas/usage.csv``: every run of the last ``days`` days (default 30, at most 3660)
  as CSV, admins only (the ``admin:servers`` scope).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from .. import hubrequests
from ..pagetemplates import render_page
from ..quota.timebudget import TimePolicy, budget_line
from ..quota.runs import DAY, HOUR, daily, totals
from .store import store_for
from .svg import charts

DAYS = 30
CSV_FIELDS = ("id", "user", "server", "team", "image", "version", "size", "gpus", "cpu", "memory", "start", "end",
              "end_reason", "gpu_hours", "cpu_hours")

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


def admin_charts(handler) -> dict:
    """The admin usage page's server time (``pages/usage.html``): per-team and per-user daily
    charts of the last ``DAYS`` days, as ``{"days", "sections": [(title, element id, [svg])]}``."""
    store, _ = accounting_of(handler)
    runs, now = list(store.runs.values()), store.now()
    sections = []
    for title, key, css in (("Teams", lambda r: r.team, "ptjaas-team-charts"),
                            ("Users", lambda r: r.user, "ptjaas-user-charts")):
        d = daily(runs, now, DAYS, key=key)
        found = charts({k: v for k, v in d["series"].items() if k}, d["days"])
        sections.append((title, css, [svg for _, _, svg in found]))
    return {"days": DAYS, "sections": sections}


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
        ns = dict(self.template_namespace, line=line, warnings=list(_WARNED.get(user.name, {}).values()),
                  charts=charts(d["series"], d["days"]), runs=shown[:200], days=DAYS)
        self.write(await render_page(self, "usage-me.html", ns))


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
