"""Sphinx extension: the config reference, generated at build time from the traitlets classes.

    ```{ptjaas-config} ptjaas_spawner.spawner.PtjaasSpawner
    :helm: hub.config
    ```

Options: ``:helm: PREFIX`` shows the Helm values path, ``:cli:`` the command-line flag,
``:defined-here:`` limits the list to traits the class itself adds (presets built on
another documented class).

renders every configurable trait that ptjaas itself defines on the class (those it inherits
from KubeSpawner / OAuthenticator are documented upstream) with its type, default, the Helm
values path (with ``:helm:``) and its ``help=`` text, so the reference cannot drift from the
code. A class that cannot be imported, or a trait without help text, is a build warning (an
error with ``-W``).
"""

import importlib
import inspect

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

OWN_PREFIX = "ptjaas_spawner"


def import_class(path):
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def own_traits(cls, defined_here=False):
    """Configurable traits defined by ptjaas's classes (the class itself or its ptjaas mixins),
    or with ``defined_here`` only those the class itself adds (for presets on another class)."""
    traits = cls.class_traits(config=True)
    return {
        name: trait
        for name, trait in sorted(traits.items())
        if (trait.this_class is cls if defined_here
            else getattr(trait.this_class, "__module__", "").startswith(OWN_PREFIX))
    }


def type_text(trait):
    kind = type(trait).__name__
    values = getattr(trait, "values", None)
    if kind in ("Enum", "CaselessStrEnum") and values:
        return f"{kind} ({', '.join(repr(v) for v in values)})"
    return kind


def default_text(trait):
    try:
        text = trait.default_value_repr()
    except Exception:  # a dynamic default (computed per instance)
        return "computed at start-up"
    return text if len(text) <= 120 else text[:117] + "..."


def trait_rst(cls_name, name, trait, helm_prefix, cli):
    lines = [f".. describe:: c.{cls_name}.{name}", ""]
    facts = [f"**Type:** {type_text(trait)}", f"**Default:** ``{default_text(trait)}``"]
    if helm_prefix:
        facts.append(f"**Helm:** ``{helm_prefix}.{cls_name}.{name}``")
    if cli:
        facts.append(f"**Command line:** ``--{name.replace('_', '-')}``")
    lines += ["   " + " · ".join(facts), ""]
    help_text = inspect.cleandoc(trait.help or "")
    lines += ["   " + line if line else "" for line in help_text.splitlines()]
    lines.append("")
    return lines


class PtjaasConfigDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"helm": directives.unchanged, "cli": directives.flag, "defined-here": directives.flag}

    def run(self):
        path = self.arguments[0]
        try:
            cls = import_class(path)
        except Exception as e:  # noqa: BLE001 - any failure means the reference would be wrong
            logger.warning("ptjaas-config: cannot import %s: %s", path, e, location=self.get_location())
            return []
        traits = own_traits(cls, defined_here="defined-here" in self.options)
        if not traits:
            logger.warning("ptjaas-config: %s defines no configurable traits", path, location=self.get_location())
        lines = []
        for name, trait in traits.items():
            if not (trait.help or "").strip():
                logger.warning("ptjaas-config: %s.%s has no help= text", cls.__name__, name,
                               location=self.get_location())
            lines += trait_rst(cls.__name__, name, trait, self.options.get("helm"), "cli" in self.options)
        if type(self.state).__module__.startswith("myst_parser"):
            # in a MyST page, nested content is parsed as Markdown: hand the RST to eval-rst
            lines = ["````{eval-rst}", *lines, "````"]
        content = StringList(lines, source=f"<ptjaas-config {path}>")
        container = nodes.container(classes=["ptjaas-config"])
        nested_parse_with_titles(self.state, content, container)
        return [container]


def schema_rst(path, schema):
    """One values table from ``ptjaas_spawner.settings_schema``."""
    from ptjaas_spawner.settings_schema import CULLER, Z2JH_CULL, options

    required = set(schema.get("required", ()))
    culler_options = options(schema) if schema in (CULLER, Z2JH_CULL) else {}
    lines = [f"**{path}** ({schema.get('title', '')})", "", ".. list-table::", "   :header-rows: 1",
             "   :widths: 20 15 15 50", "", "   * - key", "     - type", "     - default", "     - meaning"]
    for key, prop in schema["properties"].items():
        kind = prop.get("type", "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        if "minimum" in prop:
            kind += f" >= {prop['minimum']}"
        default = "required" if key in required else (f"``{prop['default']}``" if "default" in prop else "")
        text = prop.get("description", "").replace("`", "``")
        if key in culler_options:
            text += f" (culler option ``--{culler_options[key].replace('_', '-')}``)"
        lines += [f"   * - ``{key}``", f"     - {kind}", f"     - {default}", f"     - {text}"]
    return lines + [""]


class PtjaasValuesDirective(SphinxDirective):
    """The keys of ptjaas's catalog entries and culler values, from ``settings_schema``."""

    def run(self):
        from ptjaas_spawner import settings_schema

        lines = []
        for path, schema in settings_schema.VALUES.items():
            if not schema.get("properties"):
                continue
            for key, prop in schema["properties"].items():
                if not prop.get("description"):
                    logger.warning("ptjaas-values: %s.%s has no description", path, key, location=self.get_location())
            lines += schema_rst(path, schema)
        if type(self.state).__module__.startswith("myst_parser"):
            lines = ["````{eval-rst}", *lines, "````"]
        container = nodes.container(classes=["ptjaas-values"])
        nested_parse_with_titles(self.state, StringList(lines, source="<ptjaas-values>"), container)
        return [container]


def setup(app):
    app.add_directive("ptjaas-config", PtjaasConfigDirective)
    app.add_directive("ptjaas-values", PtjaasValuesDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
