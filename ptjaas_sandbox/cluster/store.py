"""The object store: every object, one cluster-wide resourceVersion, and the watch event log.

Everything runs on the cluster's single event loop, so no locks are needed. Mutations are
announced to watchers (HTTP watch streams) and to listeners (controllers, the node agent).
"""

import copy
import json
import os
import uuid
from collections import deque
from datetime import datetime, timezone

from . import errors
from .auth import write_private_json
from .resources import BY_KEY

EVENT_LOG_SIZE = 20000


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    def __init__(self):
        self.objects = {}          # (type key, namespace, name) -> object dict
        self.rv = 0
        self.log = deque(maxlen=EVENT_LOG_SIZE)   # (rv, type key, event type, object, previous object)
        self.compacted_rv = 0      # events at or below this resourceVersion are gone
        self.watchers = set()      # callables(log entry)
        self.listeners = []        # callables(event type, rtype, obj, old)
        self.dirty = False

    # --- reads -------------------------------------------------------------------------
    def get(self, rtype, namespace, name):
        return self.objects.get((rtype.key, namespace or "", name))

    def list(self, rtype, namespace=None):
        items = [obj for (key, ns, _), obj in self.objects.items()
                 if key == rtype.key and (namespace is None or ns == namespace)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    # --- writes ------------------------------------------------------------------------
    def _bump(self):
        self.rv += 1
        self.dirty = True
        return str(self.rv)

    def create(self, rtype, obj):
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        key = (rtype.key, namespace, meta["name"])
        if key in self.objects:
            raise errors.already_exists(rtype.plural, meta["name"], rtype.group)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        meta["resourceVersion"] = self._bump()
        self.objects[key] = obj
        self._announce("ADDED", rtype, obj, None)
        return obj

    def update(self, rtype, obj):
        """Store a new version of an existing object (no precondition checks: callers do them)."""
        meta = obj["metadata"]
        key = (rtype.key, meta.get("namespace", "") if rtype.namespaced else "", meta["name"])
        old = self.objects.get(key)
        if old is None:
            raise errors.not_found(rtype.plural, meta["name"], rtype.group)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        meta["uid"] = old["metadata"]["uid"]
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        meta["resourceVersion"] = self._bump()
        self.objects[key] = obj
        self._announce("MODIFIED", rtype, obj, old)
        return obj

    def remove(self, rtype, namespace, name):
        key = (rtype.key, namespace or "" if rtype.namespaced else "", name)
        old = self.objects.pop(key, None)
        if old is None:
            return None
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._announce("DELETED", rtype, gone, old)
        return gone

    def _announce(self, event_type, rtype, obj, old):
        snapshot = copy.deepcopy(obj)
        rv = int(snapshot["metadata"]["resourceVersion"])
        entry = (rv, rtype.key, event_type, snapshot, old)
        if len(self.log) == self.log.maxlen:
            self.compacted_rv = max(self.compacted_rv, self.log[0][0])
        self.log.append(entry)
        for watcher in list(self.watchers):
            watcher(entry)
        for listener in list(self.listeners):
            listener(event_type, rtype, obj, old)

    # --- watch support -----------------------------------------------------------------
    def events_since(self, rv):
        """Events after resourceVersion ``rv``; raises 410 Gone where they were compacted."""
        if rv < self.compacted_rv:
            raise errors.gone(f"too old resource version: {rv} ({self.compacted_rv + 1})")
        return [entry for entry in self.log if entry[0] > rv]

    def compact(self):
        """Forget the event log, as etcd compaction does: older resourceVersions answer 410."""
        self.compacted_rv = self.rv
        self.log.clear()

    # --- persistence -------------------------------------------------------------------
    def dump(self, path, extra=None):
        data = {"resourceVersion": self.rv, "objects": list(self.objects.values()), "extra": extra or {}}
        write_private_json(path, data)   # holds every Secret and the API token: 0600
        self.dirty = False

    def load(self, path):
        with open(path) as f:
            data = json.load(f)
        self.rv = int(data["resourceVersion"])
        self.compacted_rv = self.rv
        for obj in data["objects"]:
            group, _, _ = obj["apiVersion"].rpartition("/")
            rtype = next(t for t in BY_KEY.values() if t.group == group and t.kind == obj["kind"])
            meta = obj["metadata"]
            self.objects[(rtype.key, meta.get("namespace", "") if rtype.namespaced else "", meta["name"])] = obj
        return data.get("extra", {})
