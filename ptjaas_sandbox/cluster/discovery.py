"""What the embedded API server says about itself, as kube-apiserver does: ``/version``, health,
API discovery (``/api``, ``/apis``, resource lists with verbs, short names and categories) and the
OpenAPI v2 (JSON and protobuf) and v3 documents (``openapi.py``, ``openapiproto.py``)."""

from . import errors, openapi, openapiproto
from .httpbase import BaseHandler
from .resources import RESOURCE_TYPES, groups

K8S_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0+ptjaas", "gitCommit": "ptjaas",
               "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0",
               "compiler": "gc", "platform": "linux/amd64"}


class DiscoveryHandler(BaseHandler):
    def get(self, path):
        path = path.rstrip("/")
        if path in ("/healthz", "/readyz", "/livez"):
            self.set_header("Content-Type", "text/plain")
            return self.finish("ok")
        if path == "/version":
            return self.write_json(K8S_VERSION)
        if path == "/api":
            return self.write_json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.request.host}]})
        if path == "/api/v1":
            return self.write_json(resource_list("", "v1"))
        if path == "/apis":
            return self.write_json({"kind": "APIGroupList", "apiVersion": "v1",
                                    "groups": [api_group(g, v) for g, v in groups().items() if g]})
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[1] in groups():
            return self.write_json(dict(api_group(parts[1], groups()[parts[1]]), kind="APIGroup", apiVersion="v1"))
        if len(parts) == 3 and parts[1] in groups() and parts[2] in groups()[parts[1]]:
            return self.write_json(resource_list(parts[1], parts[2]))
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")


# as the real server's discovery says (of the types served here): what `kubectl get all` lists
CATEGORIES = {"pods": ["all"], "services": ["all"]}
K8S_MINOR = int(K8S_VERSION["minor"].rstrip("+"))


def api_group(group, versions):
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def resource_list(group, version):
    resources = []
    for t in RESOURCE_TYPES:
        if t.group != group or t.version != version:
            continue
        entry = {"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
                 "kind": t.kind, "verbs": list(t.verbs), "shortNames": list(t.short_names)}
        if t.plural in CATEGORIES:
            entry["categories"] = CATEGORIES[t.plural]
        resources.append(entry)
        for sub in t.subresources:
            verbs = ["get"] if sub == "log" else (["create"] if sub in ("binding", "eviction", "token")
                                                  else ["get", "patch", "update"])
            kind = {"log": "Pod", "binding": "Binding", "eviction": "Eviction", "token": "TokenRequest"}.get(sub, t.kind)
            entry = {"name": f"{t.plural}/{sub}", "singularName": "", "namespaced": t.namespaced,
                     "kind": kind, "verbs": verbs}
            if sub == "token":   # a kind of another group, as the real server says
                entry.update(group="authentication.k8s.io", version="v1")
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}


class OpenAPIHandler(BaseHandler):
    """/openapi/v2 and /openapi/v3[/{api/v1|apis/G/V}], built from Kubernetes' type definitions."""

    def get(self, path):
        try:
            if path == "v2":
                accept = self.request.headers.get("Accept", "")
                if openapiproto.wants_protobuf(accept):   # kubectl validating a kind: List
                    doc = openapi.v2_document(K8S_MINOR)   # the same Etag as the JSON, as kube-apiserver's
                    return self._send(openapiproto.v2_protobuf(doc), media=openapiproto.CONTENT_TYPE,
                                      tag=openapi.etag(doc))
                if accept and "json" not in accept and "*/*" not in accept:
                    raise errors.ApiError(406, "NotAcceptable", "only the following media types are accepted: "
                                          "application/json, " + ", ".join(openapiproto.MEDIA_TYPES))
                return self._send(openapi.v2_document(K8S_MINOR))
            if path in ("v3", "v3/"):
                return self.write_json(openapi.v3_index(K8S_MINOR))
            body = openapi.v3_document(K8S_MINOR, path[len("v3/"):]) if path.startswith("v3/") else None
        except openapi.Unavailable as e:
            raise errors.ApiError(503, "ServiceUnavailable", str(e)) from None
        if body is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send(body, immutable=bool(self.get_query_argument("hash", "")))

    def _send(self, body, immutable=False, media="application/json", tag=None):
        self.set_header("Content-Type", media)
        self.set_header("Etag", '"' + (tag or openapi.etag(body)) + '"')
        if immutable:
            self.set_header("Cache-Control", "public, immutable")
        self.finish(body)
