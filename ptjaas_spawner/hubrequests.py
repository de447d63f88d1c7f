"""Strict requests to ptjaas's hub pages and REST API, and each refusal on the audit record.

- ``BODIES``: the JSON Schema of each JSON request body ptjaas takes, each declared by its
  endpoint's module with ``accept`` (unknown keys refused,
  strings and lists bounded, as a start's ``user_options`` are); ``QUERIES``: the query
  arguments of each endpoint, each bounded. ``body_problem`` / ``query_problem`` say what is
  wrong in words naming the key (pure).
- ``json_body(handler, name, user)`` / ``check_query(handler, name, user)``: the checked body, or
  a 400 with that message, recorded (``refused-request``).
- ``audited_scope(*scopes)``: JupyterHub's ``needs_scope``, with its refusals of an
  authenticated token recorded (``refused-access``: another user's token on a user's endpoint).
- ``refuse(handler, status, action, user, message, **fields)``: record one refusal (who asked,
  whose data, the request, why) and raise the hub's error with the message.

A request without any credentials is JupyterHub's own 403 and is not recorded (nobody to name).
"""

from __future__ import annotations

import functools
import json
import os

from jsonschema import Draft202012Validator
from jupyterhub.scopes import needs_scope
from tornado import web

from . import audit
from .errors import Refusal
from .catalog import shown

MAX_BODY = 16 * 1024  # bytes of a JSON body (the largest valid one is under 3 KiB)
MAX_QUERY_VALUE = 100
# query arguments any hub request may carry (JupyterHub's own)
HUB_QUERY = frozenset({"token", "_xsrf"})


def object_schema(properties: dict, required=()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


# each page's or endpoint's own, added by its module with ``accept`` (the snapshot endpoints':
# snapshots/handlers.py): JSON bodies (JSON Schema), query arguments (argument -> longest value),
# form posts (field -> longest value, and the fields a form may repeat, how often)
BODIES: dict = {}
QUERIES = {
    "usage": {},
    "audit": {"user": MAX_QUERY_VALUE, "since": MAX_QUERY_VALUE, "until": MAX_QUERY_VALUE, "action": MAX_QUERY_VALUE,
              "dataset": MAX_QUERY_VALUE},
}
FORMS = {
    "sharing-page": ({"action": 20, "kind": 20, "name": 100, "mode": 20}, {}),
}
_VALIDATORS: dict = {}


def accept(bodies=None, queries=None, forms=None) -> None:
    """Declare what a module's endpoints take (at its import), by endpoint name."""
    for name, schema in (bodies or {}).items():
        BODIES[name] = schema
        _VALIDATORS[name] = Draft202012Validator(schema)
    QUERIES.update(queries or {})
    FORMS.update(forms or {})
_TYPE_WORDS = {"string": "a string", "array": "a list", "object": "an object", "integer": "a whole number",
               "boolean": "true or false", "number": "a number"}


def _names(keys) -> str:
    keys = sorted(str(k) for k in keys)
    text = ", ".join(shown(k) for k in keys[:5])
    return text + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _message(error, schema: dict) -> str:
    path = list(error.absolute_path)
    field = shown(path[0]) + "".join(f"[{p}]" for p in path[1:]) if path else "The request body"
    value = error.instance
    kind = error.validator
    if kind == "additionalProperties":
        unknown = set(value) - set(schema.get("properties") or {})
        known = ", ".join(sorted(schema.get("properties") or {})) or "none"
        return f"Unknown key(s) in the request body: {_names(unknown)}. Known keys: {known}."
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"The request body needs {_names(missing)}."
    if kind == "maxLength":
        return f"{field} is too long ({len(value)} characters, at most {error.validator_value}): {shown(value)}."
    if kind == "maxItems":
        return f"{field} has {len(value)} items, at most {error.validator_value}."
    if kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{field} must be {' or '.join(_TYPE_WORDS.get(t, t) for t in wanted)}, not {shown(value)}."
    return f"{field} is not valid: {shown(value)}."


def body_problem(name: str, body) -> str:
    """'' if ``body`` is a valid body of ``BODIES[name]``, else why not (pure)."""
    errors = list(_VALIDATORS[name].iter_errors(body))
    if not errors:
        return ""
    # an unknown key first, then the first bad key in order
    errors.sort(key=lambda e: (e.validator != "additionalProperties", len(e.absolute_path),
                               [str(p) for p in e.absolute_path]))
    return _message(errors[0], BODIES[name])


def query_problem(name: str, arguments: dict) -> str:
    """'' if the query ``arguments`` ({name: [values]}) fit ``QUERIES[name]``, else why not (pure)."""
    return _arguments_problem("Query argument", QUERIES[name], {}, arguments)


def form_problem(name: str, arguments: dict) -> str:
    """'' if a page's form post ``arguments`` ({name: [values]}) fit ``FORMS[name]``, else why not
    (pure)."""
    allowed, repeats = FORMS[name]
    return _arguments_problem("Form field", allowed, repeats, arguments)


def _arguments_problem(what: str, allowed: dict, repeats: dict, arguments: dict) -> str:
    unknown = [k for k in arguments if k not in allowed and k not in HUB_QUERY]
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        return f"Unknown {what.lower()}(s): {_names(unknown)}. Known: {known}."
    for key, values in arguments.items():
        if key in HUB_QUERY:
            continue
        most = repeats.get(key, 1)
        if len(values) > most:
            return f"{what} {shown(key)} is given {len(values)} times, at most {'once' if most == 1 else most}."
        for value in values:
            if len(value) > allowed[key]:
                return (f"{what} {shown(key)} is too long ({len(value)} characters, at most "
                        f"{allowed[key]}): {shown(value.decode('utf-8', 'replace') if isinstance(value, bytes) else value)}.")
    return ""


# ---- the hub side: tornado handlers ------------------------------------------------------------

def audit_path(handler) -> str:
    """The audit record's file, as the hub's config sets it (``c.PtjaasSpawner.audit_log_file``)."""
    return config_audit_path(handler.settings.get("config") or {})


def config_audit_path(cfg) -> str:
    """``audit_path`` from the hub's config itself (where there is no request handler)."""
    for section in ("PtjaasSpawner", "AuditSettings"):
        if section in cfg and "audit_log_file" in cfg[section]:
            path = cfg[section]["audit_log_file"]
            break
    else:
        path = audit.AuditSettings.audit_log_file.default_value
    return os.path.abspath(path) if path else ""


def requester(handler) -> str | None:
    return getattr(handler.current_user, "name", None)


def record(handler, action: str, user: str | None, message: str, **fields) -> dict:
    """Record one refusal a hub page or API made (who: the request's user or service)."""
    request = f"{handler.request.method} {handler.request.path}"
    return audit.record_refusal(audit_path(handler), handler.log, action, user, requester(handler), message,
                                request=request, **fields)


def refuse(handler, status: int, action: str, user: str | None, message: str, **fields):
    """Record the refusal, then raise the hub's error with ``message`` (shown to the caller)."""
    record(handler, action, user, message, **fields)
    raise Refusal(status, message)


def json_body(handler, name: str, user: str | None) -> dict:
    """The request's JSON body, checked against ``BODIES[name]``; else a recorded 400."""
    raw = handler.request.body or b""
    if len(raw) > MAX_BODY:
        refuse(handler, 400, "refused-request", user,
               f"The request body is too large ({len(raw)} bytes, at most {MAX_BODY}).")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        refuse(handler, 400, "refused-request", user, "The request body must be JSON.")
    problem = body_problem(name, body)
    if problem:
        refuse(handler, 400, "refused-request", user, problem)
    return body


def check_query(handler, name: str, user: str | None) -> None:
    """Refuse (recorded 400) query arguments ``QUERIES[name]`` does not list, or too long."""
    problem = query_problem(name, handler.request.query_arguments)
    if problem:
        refuse(handler, 400, "refused-request", user, problem)


def check_form(handler, name: str, user: str | None) -> None:
    """Refuse (recorded 400) form fields ``FORMS[name]`` does not list, repeated or too long."""
    problem = form_problem(name, handler.request.body_arguments)
    if problem:
        refuse(handler, 400, "refused-request", user, problem)


def audited_scope(*scopes):
    """``jupyterhub.scopes.needs_scope(*scopes)``; a refusal of an authenticated request (a token
    without the scope on that user: 403 or 404) is recorded as ``refused-access``."""

    def decorate(method):
        checked = needs_scope(*scopes)(method)

        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            try:
                return checked(self, *args, **kwargs)  # the scope check runs here, the method later
            except web.HTTPError as e:
                if self.current_user is not None:
                    user = kwargs.get("user_name", args[0] if args else None)
                    record(self, "refused-access", user, str(e.log_message or e.reason or e.status_code))
                raise

        return wrapper

    return decorate
