"""Values checked against ``settings_schema`` by ``jsonschema``, each problem worded for an admin
and placed on the setting it concerns. Pure: plain data in, ``[(path, message)]`` out.

``problems(value, schema)`` returns ``(path, message)`` pairs in the order the keys appear in
``value``; ``path`` is a tuple of keys and list indexes below ``value`` (``("gpu-1", "gpu")``),
which the callers render their way (``c.PtjaasSpawner.sizes['gpu-1']['gpu']`` for the spawner's
config, ``hub.config.PtjaasSpawner.sizes.gpu-1.gpu`` for Helm values). ``None`` stands for
"not set" (Helm's ``null``, a trait left at ``None``) and is never a problem in itself.

How a message is worded (the annotations are documented in ``settings_schema``):

- an unknown key: on the key, ``unknown key; known: a, b, c``;
- a missing required key, or any problem with a property annotated ``needs``: on the entry,
  ``<noun> needs <needs or key>`` (``a size needs mem_limit``);
- a Kubernetes quantity that does not parse (formats ``cpu``, ``bytes``): the parser's words;
- a property annotated ``problem``: ``<problem>, not <value>``;
- otherwise the JSON Schema rule in words (``must be a number, not '1m'``, ``must be >= 0``,
  ``must be one of lab, vscode or a mapping``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

from .quantity import QuantityError, parse_bytes, parse_cpu

_MAX_SHOWN = 80
_WORDS = {"object": "a mapping", "array": "a list", "integer": "an integer", "number": "a number",
          "string": "a string", "boolean": "a boolean", "null": "null"}

FORMATS = FormatChecker(formats=())


def _quantity_format(name, parse):
    def check(value) -> bool:
        # a value of another type is the ``type`` rule's problem, not this one's too
        return isinstance(value, bool) or not isinstance(value, (str, int, float)) or parse(value) is not None

    FORMATS.checks(name, raises=QuantityError)(check)


_quantity_format("cpu", parse_cpu)
_quantity_format("bytes", parse_bytes)

# YAML and traitlets give mappings and lists; a default may be a tuple
_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many({
    "object": lambda checker, value: isinstance(value, Mapping),
    "array": lambda checker, value: isinstance(value, (list, tuple)),
})
Validator = jsonschema.validators.extend(Draft202012Validator, type_checker=_TYPES)


def shown(value) -> str:
    """A bounded repr of a configured value, for a message."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _unset(value):
    """``value`` without the mapping entries that are ``None`` (not set), at any depth."""
    if isinstance(value, Mapping):
        return {k: _unset(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_unset(v) for v in value]
    return value


def _chain(schema, path):
    """[(schema, path prefix)] from ``schema`` down along ``path`` (the schemas a value at that
    path is checked against)."""
    out = [(schema, ())]
    for i, key in enumerate(path):
        if isinstance(key, int):
            schema = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        else:
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            schema = props.get(key) if key in props else (extra if isinstance(extra, dict) else {})
        out.append((schema, tuple(path[: i + 1])))
    return out


def _at(value, path):
    for key in path:
        value = value[key]
    return value


def _form(schema) -> str:
    """One allowed form of a value, in words (for ``oneOf`` / ``anyOf``)."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    kinds = schema.get("type", [])
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return " or ".join(_WORDS.get(k, k) for k in kinds) or "another form"


def _worded(error, root_schema, value) -> list[tuple[tuple, str]]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties" and error.validator_value is False:
        known = ", ".join(sorted(error.schema.get("properties", {})))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        return [(path + (k,), f"unknown key; known: {known}") for k in extra]
    chain = _chain(root_schema, path)
    if kind == "required":
        noun = error.schema.get("noun")
        props = error.schema.get("properties", {})
        missing = [k for k in error.validator_value if k not in error.instance]
        if noun is None:
            return [(path, f"needs {props.get(k, {}).get('needs', repr(k))}") for k in missing]
        return [(path, f"{noun} needs {props.get(k, {}).get('needs', k)}") for k in missing]
    if kind == "format" and isinstance(error.cause, QuantityError):
        return [(path, str(error.cause))]
    # the innermost annotated schema, not beyond the entry the value belongs to
    for i in range(len(chain) - 1, -1, -1):
        schema, where = chain[i]
        if "needs" in schema and i > 0:
            entry, entry_path = chain[i - 1]
            return [(entry_path, f"{entry.get('noun', 'this setting')} needs {schema['needs']}")]
        if "problem" in schema:
            return [(where, f"{schema['problem']}, not {shown(_at(value, where))}")]
        if "noun" in schema:
            break
    if kind == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return [(path, f"must be {' or '.join(_WORDS.get(k, k) for k in kinds)}, not {shown(error.instance)}")]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return [(path, f"must be {sign} {error.validator_value}, not {shown(error.instance)}")]
    if kind in ("oneOf", "anyOf"):
        # the one form the value has the shape of: its own problems, on their settings
        by_form: dict = {}
        for sub in error.context:
            by_form.setdefault(sub.relative_schema_path[0], []).append(sub)
        shaped = [subs for subs in by_form.values()
                  if not any(not sub.relative_path and sub.validator in ("type", "enum") for sub in subs)]
        if len(shaped) == 1:
            return [p for sub in shaped[0] for p in _worded(sub, root_schema, value)]
        forms = " or ".join(_form(s) for s in error.validator_value)
        return [(path, f"must be {forms}, not {shown(error.instance)}")]
    if kind == "pattern":
        return [(path, f"must match {error.validator_value}, not {shown(error.instance)}")]
    if kind == "enum":
        return [(path, f"must be one of {', '.join(map(str, error.validator_value))}, not {shown(error.instance)}")]
    return [(path, f"{error.message[:200]}")]


def _order(value, path):
    """A sort key putting problems in the order of the keys in ``value`` (an entry before its keys)."""
    key = []
    for part in path:
        if isinstance(value, Mapping):
            keys = list(value)
            key.append(keys.index(part) if part in value else len(keys))
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and isinstance(part, int):
            key.append(part)
            value = value[part] if part < len(value) else None
        else:
            key.append(0)
            value = None
    return key


def problems(value, schema) -> list[tuple[tuple, str]]:
    """Every problem of ``value`` against ``schema``, as ``[(path, message)]`` in document order."""
    value = _unset(value)
    if value is None:
        return []
    found = []
    for error in Validator(schema, format_checker=FORMATS).iter_errors(value):
        for problem in _worded(error, schema, value):
            if problem not in found:
                found.append(problem)
    return sorted(found, key=lambda p: _order(value, p[0]))
