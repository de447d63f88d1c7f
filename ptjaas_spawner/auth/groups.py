"""Pure helpers: read the groups claim of an OpenID Connect user and map it to hub groups.

No I/O. Identity providers disagree on how they send groups (a list, a single string, nested
under ``realm_access.roles``, objects with a ``name``); anything else is *malformed* and yields no
groups plus a human-readable problem, never an exception and never a group per character.
"""

from __future__ import annotations

import re

# JupyterHub stores group names in a 255-character column; we also refuse control characters
# and characters that would be confusing in URLs / Kubernetes label values.
MAX_GROUP_NAME = 255
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\?#%]")

_MISSING = object()


def claim_lookup(data, path: str):
    """``claim_lookup({"a": {"b": 1}}, "a.b") == 1``; a missing key gives the ``_MISSING`` marker.

    A key containing a dot itself (e.g. Auth0's namespaced ``https://example.org/groups``) is
    found when the whole path is a top-level key.
    """
    if isinstance(data, dict) and path in data:
        return data[path]
    cur = data
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def is_missing(value) -> bool:
    return value is _MISSING


def normalize_groups(raw, claim: str = "groups") -> tuple[list[str], list[str]]:
    """Turn a raw claim value into ``(sorted unique group names, problems)``.

    Accepted shapes: a list of strings; a single string (one group, as some providers send when
    a user has exactly one); a list of objects with a ``name`` (or ``displayName``) string.
    Everything else (numbers, booleans, a dict, nested lists) is malformed: no groups from it,
    and a problem message naming the claim. Invalid names inside an otherwise good list are
    dropped one by one, each with a problem message.
    """
    problems: list[str] = []
    if raw is _MISSING or raw is None:
        return [], [f"the identity provider sent no {claim!r} claim"]
    if isinstance(raw, str):
        items = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        return [], [
            f"the {claim!r} claim is malformed: expected a list of group names, got {type(raw).__name__}"
        ]
    groups: set[str] = set()
    for item in items:
        if isinstance(item, dict):
            item = item.get("name", item.get("displayName"))
        if not isinstance(item, str):
            problems.append(f"ignored a non-text entry in the {claim!r} claim: {item!r:.60}")
            continue
        name = item.strip()
        if not name or len(name) > MAX_GROUP_NAME or _BAD_CHARS.search(name.lstrip("/")):
            problems.append(f"ignored an invalid group name in the {claim!r} claim: {item!r:.60}")
            continue
        groups.add(name)
    return sorted(groups), problems


def map_groups(groups, mapping: dict | None = None, pattern: str = "", strip_prefix: str = "") -> list[str]:
    """Apply the admin's renaming and filtering to IdP group names.

    ``strip_prefix`` is removed first (Keycloak full group paths: ``"/"``), then ``mapping``
    renames (``{"idp-name": "hub-name"}``; unlisted names kept), then only names matching the
    regular expression ``pattern`` (full match; empty = keep all) are kept. Names still holding
    a ``/`` (not valid in hub group URLs) are dropped.
    """
    mapping = mapping or {}
    rx = re.compile(pattern) if pattern else None
    out = set()
    for g in groups:
        if strip_prefix and g.startswith(strip_prefix):
            g = g[len(strip_prefix):]
        g = mapping.get(g, g)
        if not g or _BAD_CHARS.search(g) or (rx and not rx.fullmatch(g)):
            continue
        out.add(g)
    return sorted(out)


def refusal_message(username: str, groups, template: str) -> str:
    """The text of the page shown to a user who is in none of the allowed groups."""
    shown = ", ".join(sorted(groups)) if groups else "none"
    return template.format(username=username, groups=shown)
