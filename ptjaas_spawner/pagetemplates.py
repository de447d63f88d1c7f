"""The hub pages' Jinja templates (``ptjaas_spawner/templates/pages/``), rendered with the hub's
own Jinja environment, so they extend JupyterHub's ``page.html`` (navigation, styles, the
announcement) like JupyterHub's pages do, and escape as JupyterHub's templates do.

A site overrides a page as it overrides JupyterHub's: a ``pages/<name>`` in a directory of
``c.JupyterHub.template_paths``. Without one (or without ptjaas's template directory in
``template_paths``: another authenticator and no ``pages.install``), ptjaas's own file is used.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import jinja2


@lru_cache(maxsize=16)
def _packaged(name: str) -> str:
    return files("ptjaas_spawner").joinpath("templates", "pages", name).read_text(encoding="utf-8")


async def render_page(handler, name: str, namespace: dict) -> str:
    """The page ``pages/<name>`` rendered for ``handler`` (a JupyterHub ``BaseHandler``)."""
    env = handler.settings["jinja2_env"]
    try:
        template = env.get_template(f"pages/{name}")  # a site's own, or ptjaas's on template_paths
    except jinja2.TemplateNotFound:
        template = env.from_string(_packaged(name))
    return await template.render_async(**namespace)
