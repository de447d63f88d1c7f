"""The spawn form's Jinja templates (``ptjaas_spawner/templates/form/``): one environment, with
autoescape on and one escaping path for every value (``escape``: HTML, quotes, and braces, so
that nothing a user or an admin wrote is ever template syntax in the page).

A site overrides a template as KubeSpawner's ``profile_form_template`` is overridden: template
text (``PtjaasSpawner.spawn_form_template``), or directories searched before ptjaas's own
(``PtjaasSpawner.form_template_paths``) holding ``form/spawn_form.html``,
``form/team_section.html`` or the parts they include.
"""

from __future__ import annotations

import html
from functools import lru_cache

import jinja2
from markupsafe import Markup

SPAWN_FORM = "form/spawn_form.html"
TEAM_SECTION = "form/team_section.html"


def escape(value) -> Markup:
    """HTML-escape ``value`` (quotes too) and keep template syntax inert."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True).replace("{", "&#123;").replace("}", "&#125;"))


@lru_cache(maxsize=8)
def environment(paths: tuple[str, ...] = ()) -> jinja2.Environment:
    """The environment whose loader searches ``paths`` first, then ptjaas's templates."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(list(paths)),
                                  jinja2.PackageLoader("ptjaas_spawner", "templates")])
    return jinja2.Environment(loader=loader, autoescape=True, finalize=escape, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


@lru_cache(maxsize=8)
def _from_text(paths: tuple[str, ...], text: str) -> jinja2.Template:
    return environment(paths).from_string(text)


def render(name: str, context: dict, paths=(), text: str = "") -> str:
    """Render the template ``name`` (or the template ``text``, when given) with ``context``."""
    paths = tuple(paths or ())
    template = _from_text(paths, text) if text else environment(paths).get_template(name)
    return template.render(**context).strip()
