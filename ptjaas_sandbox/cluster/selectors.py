"""Label and field selectors as the Kubernetes API server parses them. Pure."""

import re

from .errors import bad_request

_LABEL_TERM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_terms(text):
    terms, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        terms.append(current)
    return terms


def parse_label_selector(text):
    """Return a list of (key, op, values) requirements; op in =, !=, in, notin, exists, !exists."""
    requirements = []
    if not text:
        return requirements
    for term in _split_terms(text):
        m = _LABEL_TERM.match(term)
        if not m:
            raise bad_request(f"unable to parse requirement: {term.strip()!r}: found unexpected token")
        key = m.group("key")
        if m.group("op"):
            if m.group("neg"):
                raise bad_request(f"unable to parse requirement: {term.strip()!r}")
            op = "!=" if m.group("op") == "!=" else "="
            requirements.append((key, op, {m.group("value")}))
        elif m.group("setop"):
            if m.group("neg"):
                raise bad_request(f"unable to parse requirement: {term.strip()!r}")
            values = {v.strip() for v in m.group("values").split(",") if v.strip()}
            requirements.append((key, m.group("setop"), values))
        else:
            requirements.append((key, "!exists" if m.group("neg") else "exists", set()))
    return requirements


def labels_match(requirements, labels):
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        if op == "=" and not (present and value in values):
            return False
        if op == "!=" and present and value in values:
            return False
        if op == "in" and not (present and value in values):
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
    return True


# field selectors the API server supports, per resource (plus metadata.name/namespace everywhere)
_FIELDS = {
    "pods": {"spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName", "spec.hostNetwork"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "nodes": {"spec.unschedulable"},
    "persistentvolumeclaims": set(),
}


def parse_field_selector(text, resource):
    requirements = []
    if not text:
        return requirements
    allowed = _FIELDS.get(resource, set()) | {"metadata.name", "metadata.namespace"}
    for term in text.split(","):
        term = term.strip()
        if not term:
            continue
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not m:
            raise bad_request(f"invalid selector: '{term}'; can't understand '{term}'")
        field, op, value = m.groups()
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')
        requirements.append((field, "!=" if op == "!=" else "=", value))
    return requirements


def _field_value(obj, path):
    if path == "source":
        return (obj.get("source") or {}).get("component", "")
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_match(requirements, obj):
    for field, op, value in requirements:
        actual = _field_value(obj, field)
        if (op == "=") != (actual == value):
            return False
    return True
