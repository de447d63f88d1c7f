"""The time-budget warning (90 %) as a banner on every hub page its user sees, through
JupyterHub's own announcement: ``c.JupyterHub.template_vars`` values may be callables, called
with the page's user (``BaseHandler.template_namespace``), and ``page.html`` shows
``announcement`` in its ``announcement`` block (``home.html``, ``spawn.html``, ... replace it
by ``announcement_home``, ``announcement_spawn``, ... when a site set those).

``install_budget_banner(c)`` wraps the site's own ``announcement`` and any
``announcement_<page>`` it set: the site's text stays (it is HTML, the site's own), the user's
budget warnings are appended, escaped. Used by fragment ``40-ptjaas-templates.py``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from markupsafe import Markup, escape

#: the template_vars JupyterHub's templates read as the page's announcement
ANNOUNCEMENT_KEYS = ("announcement", "announcement_home", "announcement_spawn", "announcement_token",
                     "announcement_login", "announcement_logout")


def banner_html(warnings: Iterable[str]) -> Markup:
    """The warnings as one escaped HTML fragment (empty without warnings)."""
    items = [escape(w[:500]) for w in warnings]
    if not items:
        return Markup("")
    return Markup('<span class="ptjaas-budget-warning">{}</span>').format(Markup("<br>").join(items))


def user_warnings(user) -> list[str]:
    """The budget warnings standing for ``user`` (a JupyterHub user or None) in this hub."""
    from .mixin import _WARNED

    name = getattr(user, "name", None)
    return list(_WARNED.get(name, {}).values()) if name else []


def with_budget_warnings(site: Any, warnings: Callable[[Any], list[str]] = user_warnings) -> Callable:
    """A template_vars callable: the site's announcement (a string, a callable of the user, or
    None), then the user's budget warnings."""

    def announcement(user):
        own = site(user) if callable(site) else site
        banner = banner_html(warnings(user))
        if not banner:
            return own
        return Markup("{}<br>{}").format(Markup(own), banner) if own else banner

    announcement.ptjaas_budget_banner = True
    return announcement


def budget_template_vars(template_vars: dict) -> dict:
    """``template_vars`` with ``announcement`` (and each ``announcement_<page>`` the site set)
    carrying the budget warnings; already wrapped ones are left alone."""
    out = dict(template_vars)
    for key in ANNOUNCEMENT_KEYS:
        if key == "announcement" or key in out:
            if not getattr(out.get(key), "ptjaas_budget_banner", False):
                out[key] = with_budget_warnings(out.get(key))
    return out


def install_budget_banner(c) -> None:
    """Add the banner to a hub config ``c`` (keeps what the site set in template_vars)."""
    from traitlets.config import LazyConfigValue

    hub = c.JupyterHub
    current = hub.template_vars if "template_vars" in hub else {}
    if isinstance(current, LazyConfigValue):
        current = current.get_value({})
    hub.template_vars = budget_template_vars(current)
