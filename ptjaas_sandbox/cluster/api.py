"""The Kubernetes REST API over HTTP (tornado): resources (get, list, create, update, patch,
delete, subresources), watch and logs; the application with every route. Discovery and OpenAPI:
``discovery.py``; the ``/_ptjaas/`` controls (fault injection, request counts, compaction):
``controls.py``; what every handler shares: ``httpbase.py``."""

import asyncio
import json
import time
from collections import Counter

from tornado import web
from tornado.iostream import StreamClosedError

from . import errors, negotiation, podlogs, podsecurity, tables, tokenrequest
from .controls import ControlHandler
from .discovery import K8S_MINOR, DiscoveryHandler, OpenAPIHandler
from .httpbase import BaseHandler
from .patch import apply_patch
from .kubeclient import SYSTEM_AGENT
from .resources import BY_PATH, BY_PLURAL
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .objcopy import clone


class ResourceHandler(BaseHandler):
    """Every resource path: /api/v1/... and /apis/{group}/{version}/..."""

    async def prepare(self):
        super().prepare()
        self.route = self._parse()
        # the sandbox's own node agent and provisioner are neither counted nor given the faults
        # injected for the clients under test
        system = self.request.headers.get("User-Agent", "").startswith(SYSTEM_AGENT)
        if not system:
            self.cluster.stats[(self.verb, self.route[0].plural)] += 1
            self.cluster.stats["total"] += 1
        rule = None if system else self.cluster.faults.match(self.verb, self.route[0].plural, self.route[1], self.route[2])
        self.cut_watch = False
        if rule:
            if rule["latency"]:
                await asyncio.sleep(rule["latency"])
            self.cut_watch = rule["cut_watch"]
            if rule["status"]:
                raise errors.ApiError(int(rule["status"]), _reason_for(int(rule["status"])), rule["message"])

    @property
    def verb(self):
        method = self.request.method
        rtype, namespace, name, sub = getattr(self, "route", (None,) * 4)
        if method == "GET":
            if name:
                return "get"
            return "watch" if self.get_query_argument("watch", "") in ("1", "true", "True") else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())

    def _parse(self):
        path = self.request.path
        if path.startswith("/api/v1"):
            group, version, rest = "", "v1", path[len("/api/v1"):]
        else:
            _, _, group, version, *remainder = path.split("/", 4)
            rest = "/" + remainder[0] if remainder else ""
        parts = [p for p in rest.split("/") if p]
        namespace = name = sub = None
        if len(parts) >= 3 and parts[0] == "namespaces" and (group, version, parts[2]) in BY_PATH:
            namespace, plural, rest_parts = parts[1], parts[2], parts[3:]
        elif parts:
            plural, rest_parts = parts[0], parts[1:]
        else:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        rtype = BY_PATH.get((group, version, plural))
        if rtype is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if rest_parts:
            name = rest_parts[0]
        if len(rest_parts) > 1:
            sub = rest_parts[1]
            if sub not in rtype.subresources or len(rest_parts) > 2:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if rtype.namespaced and namespace is None and name is not None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        return rtype, namespace, name, sub

    # --- verbs -------------------------------------------------------------------------
    async def get(self, *args):
        rtype, namespace, name, sub = self.route
        registry = self.cluster.registry
        if name is None:
            if self.verb == "watch":
                return await self.watch(rtype, namespace)
            listing = registry.list(rtype, namespace, self.get_query_argument("labelSelector", ""),
                                    self.get_query_argument("fieldSelector", ""),
                                    int(self.get_query_argument("limit", "0") or 0),
                                    self.get_query_argument("continue", ""))
            if self.table_version:
                return self.write_json(tables.table(rtype, listing["items"], listing.get("metadata"), self.table_version,
                                                    self.get_query_argument("includeObject", "Metadata")))
            return self.write_json(listing)
        obj = registry.get(rtype, namespace, name)
        if sub == "log":
            return await self.logs(obj)
        if self.table_version and sub is None:
            return self.write_json(tables.table(rtype, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                                self.table_version, self.get_query_argument("includeObject", "Metadata")))
        self.write_json(obj)

    @property
    def table_version(self):
        return tables.wants_table(self.request.headers.get("Accept"))

    async def logs(self, pod):
        if not pod["spec"].get("nodeName"):   # no node to ask: 204 No Content, as the real API server
            self.set_status(204)
            return self.finish()
        meta = pod["metadata"]
        await podlogs.serve(self, pod, self.cluster.kubelet,
                            lambda: self.cluster.store.get(podlogs.pod_type(), meta["namespace"], meta["name"]),
                            self.cluster.open_watches)

    def decoded_body(self, patch=False):
        return negotiation.decode(self.request.body, self.request.headers.get("Content-Type"), patch)

    def validate_fields(self, rtype, obj):
        for warning in negotiation.check_fields(rtype, obj, self.get_query_argument("fieldValidation", None), K8S_MINOR):
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.add_header("Warning", f'299 - "{escaped}"')   # RFC 7234 warn-text, as the real server quotes it

    def warn_pod_security(self, namespace, pod):
        """A namespace's ``pod-security.kubernetes.io/warn`` level: a pod admitted that breaks it
        gets the real server's warning."""
        level = podsecurity.policy(self.cluster.store.get(BY_PLURAL["namespaces"], "", namespace), "warn")
        text = level and podsecurity.message(level, pod, prefix="would violate")
        if text:
            self.add_header("Warning", '299 - "{}"'.format(text.replace("\\", "\\\\").replace('"', '\\"')))

    async def post(self, *args):
        rtype, namespace, name, sub = self.route
        body = self.decoded_body()
        if name is None:
            self.validate_fields(rtype, body)
            negotiation.prune(rtype, body, K8S_MINOR)   # what the real server's decoder drops
            obj = self.cluster.registry.create(rtype, namespace, body)
            if rtype.plural == "pods":
                self.warn_pod_security(namespace, obj)
            return self.write_json(obj, 201)
        if sub == "binding" and rtype.plural == "pods":
            pod = self.cluster.registry.get(rtype, namespace, name)
            node = (body.get("target") or {}).get("name")
            self.cluster.scheduler.bind(pod, node)
            return self.write_json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)
        if sub == "token" and rtype.plural == "serviceaccounts":
            answer = tokenrequest.issue(self.cluster.registry, self.cluster.state_dir, namespace, name, body)
            return self.write_json(answer, 201)
        if sub == "eviction" and rtype.plural == "pods":
            self.cluster.registry.delete(rtype, namespace, name, (body.get("deleteOptions") or {}))
            return self.write_json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)
        raise errors.method_not_allowed()

    async def put(self, *args):
        rtype, namespace, name, sub = self.route
        if name is None:
            raise errors.method_not_allowed()
        if sub == "finalize":
            sub = None
        body = self.decoded_body()
        self.validate_fields(rtype, body)
        negotiation.prune(rtype, body, K8S_MINOR)
        obj = self.cluster.registry.update(rtype, namespace, name, body, sub)
        self.write_json(obj)

    async def patch(self, *args):
        rtype, namespace, name, sub = self.route
        if name is None:
            raise errors.method_not_allowed()
        content_type = negotiation.media_type(self.request.headers.get("Content-Type"))
        body = self.decoded_body(patch=True)
        if content_type == negotiation.APPLY:   # server-side apply: create, or merge the applied fields in
            if not isinstance(body, dict):
                raise errors.bad_request("the body of an apply patch must be an object")
            negotiation.check_apply_fields(rtype, body, K8S_MINOR)
            meta = body.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
            if self.cluster.store.get(rtype, namespace, name) is None and sub is None:
                meta["name"] = name
                return self.write_json(self.cluster.registry.create(rtype, namespace, body), 201)
            content_type = "application/strategic-merge-patch+json"
        else:   # the patched object is what gets decoded (and checked) by the real server
            old = self.cluster.store.get(rtype, namespace, name)
            if old is not None:
                patched = apply_patch(clone(old), body, content_type)
                try:
                    self.validate_fields(rtype, patched)
                except errors.ApiError as e:
                    raise negotiation.invalid_patch(patched, e) from None
                if content_type != "application/json-patch+json":   # what the decoder drops never lands
                    negotiation.prune(rtype, body, K8S_MINOR, patch=True)
        obj = self.cluster.registry.patch(rtype, namespace, name, body, content_type, sub)
        self.write_json(obj)

    async def delete(self, *args):
        rtype, namespace, name, sub = self.route
        options = self.decoded_body() if self.request.body else {}
        for arg in ("gracePeriodSeconds", "propagationPolicy"):
            value = self.get_query_argument(arg, None)
            if value is not None:
                options[arg] = int(value) if arg == "gracePeriodSeconds" else value
        if name is None:
            result = self.cluster.registry.delete_collection(rtype, namespace, self.get_query_argument("labelSelector", ""),
                                                             self.get_query_argument("fieldSelector", ""), options)
            return self.write_json(result)
        result = self.cluster.registry.delete(rtype, namespace, name, options)
        self.write_json(result, 200)

    # --- watch -------------------------------------------------------------------------
    async def watch(self, rtype, namespace):
        store = self.cluster.store
        labels = parse_label_selector(self.get_query_argument("labelSelector", ""))
        fields = parse_field_selector(self.get_query_argument("fieldSelector", ""), rtype.plural)
        bookmarks = self.get_query_argument("allowWatchBookmarks", "") in ("1", "true", "True")
        timeout = self.get_query_argument("timeoutSeconds", None)
        deadline = time.monotonic() + (float(timeout) if timeout else 1800.0)
        rv_arg = self.get_query_argument("resourceVersion", "") or ""

        def matches(obj):
            return (obj is not None and (namespace is None or obj["metadata"].get("namespace") == namespace)
                    and labels_match(labels, obj["metadata"].get("labels")) and fields_match(fields, obj))

        queue = asyncio.Queue()

        def watcher(entry):
            if entry[1] == rtype.key:
                queue.put_nowait(entry)

        store.watchers.add(watcher)
        self.cluster.open_watches.add(self)
        self.set_header("Content-Type", "application/json")
        try:
            if rv_arg in ("", "0"):
                backlog = [(store.rv, rtype.key, "ADDED", obj, None)
                           for obj in store.list(rtype, namespace) if matches(obj)]
            else:
                try:
                    since = int(rv_arg)
                except ValueError:
                    raise errors.bad_request(f"invalid resource version: {rv_arg}") from None
                try:
                    backlog = [e for e in store.events_since(since) if e[1] == rtype.key]
                except errors.ApiError as gone:
                    self.write(json.dumps({"type": "ERROR", "object": gone.status()}) + "\n")
                    await self.flush()
                    return self.finish()
                # the backlog already holds everything up to now; skip those in the queue
            seen_rv = store.rv
            initial = self.get_query_argument("sendInitialEvents", "") in ("1", "true", "True")
            if initial and rv_arg not in ("", "0"):   # streaming list: the state as of now, then changes
                backlog = [(store.rv, rtype.key, "ADDED", obj, None) for obj in store.list(rtype, namespace) if matches(obj)]
            for entry in backlog:
                await self._send(entry, matches)
            if initial:   # "watch-list": a bookmark marks the end of the initial state (client-go's WatchListClient)
                await self._write_event("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": {
                    "resourceVersion": str(seen_rv), "annotations": {"k8s.io/initial-events-end": "true"}}})
            last_sent = time.monotonic()
            while not self.cut_watch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(queue.get(), timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    if bookmarks and time.monotonic() - last_sent >= 1.0:
                        await self._write_event("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.api_version,
                                                             "metadata": {"resourceVersion": str(store.rv)}})
                        last_sent = time.monotonic()
                    continue
                batch = [entry]   # what else is queued goes out with it: one flush, not one per event
                while not queue.empty() and len(batch) < 200:
                    batch.append(queue.get_nowait())
                for entry in batch:
                    if entry[0] > seen_rv:
                        await self._send(entry, matches, flush=False)
                await self.flush()
                last_sent = time.monotonic()
            if self.cut_watch:
                self.request.connection.stream.close()
                return
            self.finish()
        except StreamClosedError:
            pass
        finally:
            store.watchers.discard(watcher)
            self.cluster.open_watches.discard(self)

    async def _send(self, entry, matches, flush=True):
        rv, _, event_type, obj, old = entry
        now, before = matches(obj), matches(old) if old is not None else False
        if event_type == "MODIFIED":
            if now and not before:
                event_type = "ADDED"
            elif before and not now:
                event_type = "DELETED"
            elif not now:
                return
        elif not now:
            return
        await self._write_event(event_type, obj, flush)

    async def _write_event(self, event_type, obj, flush=True):
        version = self.table_version
        if version and event_type != "BOOKMARK":   # `kubectl get -w`: each object as a one-row Table
            rtype = self.route[0]
            obj = tables.table(rtype, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, version,
                               self.get_query_argument("includeObject", "Metadata"))
            if getattr(self, "_sent_columns", False):
                obj["columnDefinitions"] = []   # only the first event carries the headers
            self._sent_columns = True
        self.write(json.dumps({"type": event_type, "object": obj}) + "\n")
        if flush:
            await self.flush()

    def on_connection_close(self):
        self.cluster.open_watches.discard(self)


def _reason_for(code):
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}.get(code, "Unknown")


class NotFoundHandler(BaseHandler):
    """Any other path: 401 without credentials, else the real server's 404 Status."""

    def prepare(self):
        super().prepare()
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")


def make_app(cluster):
    cluster.stats = Counter(total=0)
    args = {"cluster": cluster}
    return web.Application([
        (r"/_ptjaas/(faults|stats|compact)", ControlHandler, args),
        (r"/openapi/(v2|v3|v3/.+)", OpenAPIHandler, args),
        (r"(/api/v1/.+)", ResourceHandler, args),
        (r"(/apis/[^/]+/[^/]+/.+)", ResourceHandler, args),
        (r"(/version|/api|/api/v1|/apis|/apis/[^/]+|/apis/[^/]+/[^/]+|/healthz|/readyz|/livez)/?", DiscoveryHandler, args),
    ], default_handler_class=NotFoundHandler, default_handler_args=args, log_function=lambda handler: None)
