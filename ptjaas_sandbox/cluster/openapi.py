"""The OpenAPI documents (``/openapi/v2``, ``/openapi/v3``, ``/openapi/v3/{api/v1|apis/G/V}``),
built from Kubernetes' own type definitions as the ``kubernetes-validate`` package ships them
(JSON Schema generated from the upstream OpenAPI, one set per Kubernetes version) for the types
this server serves; what kubectl reads for ``apply``, ``explain`` and field validation.

Types Kubernetes does not define itself (the VolumeSnapshot CRDs) are published as a CRD without
a structural schema is: an object whose fields are not pruned.
"""

import functools
import hashlib
import importlib.util
import json
import os

from .resources import RESOURCE_TYPES
from .objcopy import clone

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_BASE_TYPES = (f"{META}.Status", f"{META}.DeleteOptions", f"{META}.Patch", f"{META}.APIResourceList",
               f"{META}.WatchEvent")


class Unavailable(Exception):
    pass


def _schema_dir(minor):
    spec = importlib.util.find_spec("kubernetes_validate")   # its data only: importing it is slow
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("the OpenAPI documents need the kubernetes-validate package "
                          "(pip install 'ptjaas[demo]')")
    root = os.path.join(list(spec.submodule_search_locations)[0], "kubernetes-json-schema")
    wanted = f"v1.{minor}.0-local"
    if os.path.isdir(os.path.join(root, wanted)):
        return os.path.join(root, wanted)
    versions = sorted((d for d in os.listdir(root) if d.endswith("-local")),
                      key=lambda d: tuple(int(x) for x in d[1:].split("-")[0].split(".")))
    return os.path.join(root, versions[-1])


@functools.lru_cache(maxsize=None)
def definitions(minor):
    """{definition name: JSON Schema} of Kubernetes 1.<minor> (nearest version shipped)."""
    with open(os.path.join(_schema_dir(minor), "_definitions.json")) as f:
        return json.load(f)["$defs"]


def _definition_name(defs, rtype):
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group", ""), gvk["version"], gvk["kind"]) == (rtype.group, rtype.version, rtype.kind):
                return name
    return None


@functools.lru_cache(maxsize=None)
def _definition_name_of(minor, group, version, kind):
    """``_definition_name`` once per type (a scan of every definition, at each write)."""
    return _definition_name(definitions(minor), _GVK(group, version, kind))


class _GVK:
    def __init__(self, group, version, kind):
        self.group, self.version, self.kind = group, version, kind


def _crd_name(rtype, list_kind=False):
    parts = rtype.group.split(".")[::-1]
    return ".".join(parts + [rtype.version, rtype.kind + ("List" if list_kind else "")])


def _crd_schema(rtype, ref, list_kind=False):
    gvk = [{"group": rtype.group, "version": rtype.version, "kind": rtype.kind + ("List" if list_kind else "")}]
    props = {"apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
             "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
             "metadata": {"$ref": ref(f"{META}.ListMeta" if list_kind else f"{META}.ObjectMeta")}}
    if list_kind:
        props["items"] = {"type": "array", "items": {"$ref": ref(_crd_name(rtype))}}
        return {"type": "object", "required": ["items"], "properties": props, "x-kubernetes-group-version-kind": gvk}
    return {"type": "object", "properties": props, "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": gvk}


def _convert(schema, ref, v2, gvk_schema=False):
    """kubernetes-validate's JSON Schema (draft 2020-12) back into OpenAPI's form."""
    if isinstance(schema, list):
        return [_convert(s, ref, v2) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            value = next((t for t in value if t != "null"), "object")
        elif key in ("properties", "patternProperties"):
            value = {k: _convert(v, ref, v2) for k, v in value.items()}
            if gvk_schema:   # kubernetes-validate pins apiVersion/kind with an enum; OpenAPI does not
                for k in ("apiVersion", "kind"):
                    if k in value:
                        value[k].pop("enum", None)
        elif key in ("items", "additionalProperties", "not"):
            value = _convert(value, ref, v2)
        elif key in ("oneOf", "anyOf", "allOf"):
            value = [_convert(v, ref, v2) for v in value]
        out[key] = value
    if "$ref" in schema:
        target = ref(schema["$ref"].rsplit("/", 1)[-1])
        if not out or v2:
            out["$ref"] = target
        else:   # OpenAPI 3.0 ignores siblings of $ref: the real server wraps it
            out["allOf"] = [{"$ref": target}]
    if v2 and "oneOf" in out:   # Swagger 2.0 has no oneOf: what the real v2 document says instead
        kinds = {s.get("type") for s in out.pop("oneOf")}
        out["type"] = "string"
        if "integer" in kinds:
            out["format"] = "int-or-string"
    return out


def _closure(defs, roots):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        text = json.dumps(defs[name])
        for part in text.split('"$ref": "#/$defs/')[1:]:
            todo.append(part.split('"', 1)[0])
    return seen


def _schemas(minor, types, v2):
    defs = definitions(minor)
    ref = (lambda n: f"#/definitions/{n}") if v2 else (lambda n: f"#/components/schemas/{n}")
    roots, crds = list(_BASE_TYPES), {}
    for rtype in types:
        name = _definition_name(defs, rtype)
        if name:
            roots += [name, name + "List"]
        else:
            crds[_crd_name(rtype)] = _crd_schema(rtype, ref)
            crds[_crd_name(rtype, True)] = _crd_schema(rtype, ref, True)
            roots += [f"{META}.ObjectMeta", f"{META}.ListMeta"]
    out = {name: _convert(defs[name], ref, v2, gvk_schema="x-kubernetes-group-version-kind" in defs[name])
           for name in sorted(_closure(defs, roots))}
    out.update(crds)
    return out


# --- paths -----------------------------------------------------------------------------
def _param(name, where, typ="string", description="", required=False, v2=False):
    p = {"name": name, "in": where, "description": description, "uniqueItems": True}
    if required:
        p["required"] = True
    if v2:
        p["type"] = typ
    else:
        p["schema"] = {"type": typ, "uniqueItems": True}
        p.pop("uniqueItems")
    return p


_WRITE_QUERY = [("dryRun", "string", "When present, indicates that modifications should not be persisted."),
                ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
                ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request "
                 "(POST/PUT/PATCH) containing unknown or duplicate fields: Ignore, Warn or Strict.")]
_LIST_QUERY = [("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
               ("continue", "string", "The continue option should be set when retrieving more results from the server."),
               ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
               ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
               ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
               ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
               ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
               ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.")]
_PATCH_TYPES = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json"]


def _operation(action, op_id, gvk, body, response, query, v2, ref, created=False, patch=False):
    op = {"description": f"{action} {gvk['kind']}", "operationId": op_id, "tags": [op_id],
          "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
    params = [_param(n, "query", t, d, v2=v2) for n, t, d in query]
    if patch:
        params.append(_param("force", "query", "boolean", "Force is going to \"force\" Apply requests.", v2=v2))
    types = _PATCH_TYPES if patch else ["application/json", "application/yaml"]
    codes = {"200": "OK", "201": "Created"} if created else {"200": "OK"}
    if v2:
        if body:
            params.insert(0, {"name": "body", "in": "body", "required": True, "schema": {"$ref": ref(body)}})
        op["consumes"] = types if (body or patch) else ["*/*"]
        op["produces"] = ["application/json", "application/yaml"]
        op["responses"] = {c: {"description": d, "schema": {"$ref": ref(response)}} for c, d in codes.items()}
        op["responses"]["401"] = {"description": "Unauthorized"}
        op["schemes"] = ["https"]
    else:
        if body:
            op["requestBody"] = {"content": {t: {"schema": {"$ref": ref(body)}} for t in types}, "required": True}
        op["responses"] = {c: {"description": d, "content": {t: {"schema": {"$ref": ref(response)}}
                                                             for t in ("application/json", "application/yaml")}}
                           for c, d in codes.items()}
        op["responses"]["401"] = {"description": "Unauthorized"}
    if params:
        op["parameters"] = params
    return op


def _paths(minor, types, v2):
    defs = definitions(minor)
    ref = (lambda n: f"#/definitions/{n}") if v2 else (lambda n: f"#/components/schemas/{n}")
    paths = {}
    for rtype in types:
        name = _definition_name(defs, rtype) or _crd_name(rtype)
        list_name = name + "List" if _definition_name(defs, rtype) else _crd_name(rtype, True)
        gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
        prefix = f"/apis/{rtype.group}/{rtype.version}" if rtype.group else "/api/v1"
        tag = "".join(p.capitalize() for p in (rtype.group.split(".")[0] if rtype.group else "core",)) + rtype.version.capitalize()
        scope = "Namespaced" if rtype.namespaced else ""
        base = f"{prefix}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced else f"{prefix}/{rtype.plural}"
        common = [_param("pretty", "query", "string", "If 'true', then the output is pretty printed.", v2=v2)]
        ns_param = [_param("namespace", "path", "string", "object name and auth scope, such as for teams and projects",
                           True, v2)] if rtype.namespaced else []
        name_param = [_param("name", "path", "string", f"name of the {rtype.kind}", True, v2)]
        write = _WRITE_QUERY
        collection = {"parameters": ns_param + common,
                      "get": _operation("list", f"list{tag}{scope}{rtype.kind}", gvk, None, list_name, _LIST_QUERY, v2, ref),
                      "post": _operation("post", f"create{tag}{scope}{rtype.kind}", gvk, name, name, write, v2, ref, created=True),
                      "delete": _operation("deletecollection", f"deletecollection{tag}{scope}{rtype.kind}", gvk,
                                           f"{META}.DeleteOptions", f"{META}.Status", _LIST_QUERY, v2, ref)}
        item = {"parameters": name_param + ns_param + common,
                "get": _operation("get", f"read{tag}{scope}{rtype.kind}", gvk, None, name, [], v2, ref),
                "put": _operation("put", f"replace{tag}{scope}{rtype.kind}", gvk, name, name, write, v2, ref, created=True),
                "patch": _operation("patch", f"patch{tag}{scope}{rtype.kind}", gvk, f"{META}.Patch", name, write, v2, ref,
                                    created=True, patch=True),
                "delete": _operation("delete", f"delete{tag}{scope}{rtype.kind}", gvk, f"{META}.DeleteOptions", name,
                                     [("dryRun", "string", "When present, indicates that modifications should not be persisted."),
                                      ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
                                      ("propagationPolicy", "string", "Whether and how garbage collection will be performed.")],
                                     v2, ref)}
        paths[base] = collection
        paths[base + "/{name}"] = item
        if rtype.namespaced:
            paths[f"{prefix}/{rtype.plural}"] = {
                "parameters": common,
                "get": _operation("list", f"list{tag}{rtype.kind}ForAllNamespaces", gvk, None, list_name, _LIST_QUERY, v2, ref)}
        if "status" in rtype.subresources:
            paths[base + "/{name}/status"] = {
                "parameters": name_param + ns_param + common,
                "get": _operation("get", f"read{tag}{scope}{rtype.kind}Status", gvk, None, name, [], v2, ref),
                "put": _operation("put", f"replace{tag}{scope}{rtype.kind}Status", gvk, name, name, write, v2, ref, created=True),
                "patch": _operation("patch", f"patch{tag}{scope}{rtype.kind}Status", gvk, f"{META}.Patch", name, write, v2,
                                    ref, created=True, patch=True)}
    for item in paths.values():
        for op in item.values():
            if isinstance(op, dict) and v2 is False:
                op.pop("consumes", None)
    return paths


def _k8s_info(minor):
    return {"title": "Kubernetes", "version": f"v1.{minor}.0"}


@functools.lru_cache(maxsize=None)
def v2_document(minor):
    doc = {"swagger": "2.0", "info": _k8s_info(minor), "paths": _paths(minor, RESOURCE_TYPES, True),
           "definitions": _schemas(minor, RESOURCE_TYPES, True),
           "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey",
                                                   "name": "authorization", "in": "header"}},
           "security": [{"BearerToken": []}]}
    return json.dumps(doc).encode()


def group_versions():
    """The v3 documents' names: "api/v1", "apis/storage.k8s.io/v1", ..."""
    names = []
    for rtype in RESOURCE_TYPES:
        gv = f"apis/{rtype.group}/{rtype.version}" if rtype.group else "api/v1"
        if gv not in names:
            names.append(gv)
    return names


@functools.lru_cache(maxsize=None)
def v3_document(minor, gv):
    types = [t for t in RESOURCE_TYPES if (f"apis/{t.group}/{t.version}" if t.group else "api/v1") == gv]
    if not types:
        return None
    doc = {"openapi": "3.0.0", "info": _k8s_info(minor), "paths": _paths(minor, types, False),
           "components": {"schemas": _schemas(minor, types, False),
                          "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication",
                                                              "name": "authorization", "in": "header"}}},
           "security": [{"BearerToken": []}]}
    return json.dumps(doc).encode()


def etag(body):
    return hashlib.sha512(body).hexdigest().upper()


def v3_index(minor):
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={etag(v3_document(minor, gv))}"}
                      for gv in group_versions()}}


# --- server-side field validation (fieldValidation=Strict) ------------------------------
def unknown_fields(minor, rtype, obj, prune=False, patch=False):
    """Paths of the fields of ``obj`` its type does not define (".spec.foo"), as the real
    server's strict decoding reports them; [] for types without a schema. ``prune`` removes
    them (what the real server's decoder drops); ``patch``: ``obj`` is a strategic merge patch,
    whose ``$`` directives are not fields."""
    defs = definitions(minor)
    name = _definition_name_of(minor, rtype.group, rtype.version, rtype.kind)
    schema = defs[name] if name is not None else crd_schemas().get(rtype.plural)
    if schema is None:
        return []
    found = []
    _walk(defs, schema, obj, "", found, prune, patch)
    return found


@functools.lru_cache(maxsize=None)
def crd_schemas():
    """{plural: structural schema} of the snapshot CRDs (external-snapshotter's, as
    shared/schemas/snapshot has them; descriptions and CEL rules left out): what the real
    server prunes, and refuses under Strict, for these custom resources."""
    with open(os.path.join(os.path.dirname(__file__), "snapshot_crd_schemas.json")) as f:
        return json.load(f)


def _resolve(defs, schema):
    while isinstance(schema, dict) and "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _walk(defs, schema, value, path, found, prune=False, patch=False):
    schema = _resolve(defs, schema)
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in list(value.items()):
            if patch and key.startswith("$"):
                continue
            if props is not None and key in props:
                _walk(defs, props[key], sub, f"{path}.{key}", found, prune, patch)
            elif isinstance(extra, dict):
                _walk(defs, extra, sub, f"{path}.{key}", found, prune, patch)
            elif props is not None:
                found.append(f"{path}.{key}")
                if prune:
                    del value[key]
    elif isinstance(value, list) and "items" in schema:
        for i, sub in enumerate(value):
            _walk(defs, schema["items"], sub, f"{path}[{i}]", found, prune, patch)


def copy_of(doc):
    return clone(doc)
