"""JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes strategic merge patch. Pure."""


from . import errors
from .objcopy import clone

# list fields that strategic merge patch merges by a key, as Kubernetes' struct tags declare
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "ports": ("containerPort", "port"), "imagePullSecrets": "name", "conditions": "type",
    "ownerReferences": "uid", "finalizers": None, "hostAliases": "ip",
    "containerStatuses": "name", "initContainerStatuses": "name", "topologySpreadConstraints": "topologyKey",
}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}   # copied once, then merged into
    _merge_into(result, patch)
    return result


def _merge_into(result, patch):
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if not isinstance(result.get(key), dict):
                result[key] = {}
            _merge_into(result[key], value)
        else:
            result[key] = clone(value)


def strategic_merge_patch(target, patch):
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    if patch.get("$patch") == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, dict):
            result[key] = strategic_merge_patch(result.get(key), value)
        else:
            result[key] = clone(value)
    return result


def _merge_list(current, patch, merge_key):
    if isinstance(merge_key, tuple):   # the same field name, merged by different keys (container vs. service ports)
        items = [i for i in list(patch) + list(current) if isinstance(i, dict)]
        merge_key = next((k for k in merge_key if any(k in i for i in items)), merge_key[0])
    if merge_key is None:   # a list of primitives / unkeyed items: union, keeping order
        out = list(current)
        for item in patch:
            if item not in out:
                out.append(clone(item))
        return out
    out = [clone(item) for item in current]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise errors.bad_request(f"map: {item!r} does not contain declared merge key: {merge_key}")
        index = next((i for i, old in enumerate(out) if isinstance(old, dict) and old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append({k: v for k, v in clone(item).items() if k != "$patch"})
        else:
            out[index] = strategic_merge_patch(out[index], item)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.bad_request(f"json patch path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc, parts, path):
    for part in parts:
        if isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise errors.ApiError(422, "Invalid", f"json patch: path {path!r} does not exist") from None
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            raise errors.ApiError(422, "Invalid", f"jsonpatch: path {path!r} does not exist: missing value")
    return doc


def json_patch(target, operations):
    if not isinstance(operations, list):
        raise errors.bad_request("json patch must be a list of operations")
    doc = clone(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise errors.bad_request(f"invalid json patch operation {op!r}")
        kind, path = op["op"], op["path"]
        parts = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise errors.bad_request(f"json patch {kind} operation {path!r} has no value")
        if kind == "test":
            if _walk(doc, parts, path) != op["value"]:
                raise errors.ApiError(422, "Invalid", f"jsonpatch: test operation for path {path!r} failed")
            continue
        if kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = clone(_walk(doc, source, op.get("from")))
            if kind == "move":
                doc = _remove(doc, source, op.get("from"))
            doc = _add(doc, parts, value, path)
        elif kind == "add":
            doc = _add(doc, parts, clone(op["value"]), path)
        elif kind == "remove":
            doc = _remove(doc, parts, path)
        elif kind == "replace":
            doc = _remove(doc, parts, path)
            doc = _add(doc, parts, clone(op["value"]), path)
        else:
            raise errors.bad_request(f"unknown json patch operation {kind!r}")
    return doc


def _add(doc, parts, value, path):
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError:
                raise errors.ApiError(422, "Invalid", f"json patch: bad list index in {path!r}") from None
            if index > len(parent):
                raise errors.ApiError(422, "Invalid", f"json patch: index out of range in {path!r}")
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise errors.ApiError(422, "Invalid", f"json patch: cannot add at {path!r}")
    return doc


def _remove(doc, parts, path):
    if not parts:
        return None
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    try:
        if isinstance(parent, list):
            parent.pop(int(last))
        else:
            del parent[last]
    except (KeyError, ValueError, IndexError, TypeError):
        raise errors.ApiError(422, "Invalid", f"jsonpatch: path {path!r} does not exist: missing value") from None
    return doc


def apply_patch(target, patch, content_type):
    content_type = (content_type or "").split(";")[0].strip()
    if content_type == "application/json-patch+json":
        return json_patch(target, patch)
    if content_type == "application/merge-patch+json":
        return merge_patch(target, patch)
    if content_type == "application/strategic-merge-patch+json":
        return strategic_merge_patch(target, patch)
    raise errors.unsupported_media(content_type)
