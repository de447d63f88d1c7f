"""The object store: every object, one cluster-wide resourceVersion, and the watch event log.

Everything runs on the cluster's single event loop, so no locks are needed. Mutations are
announced to watchers (HTTP watch streams) and to listeners (controllers, the node agent).

Objects are held by kind and namespace, and indexed (by uid, by owner, by label, events by the
object they are about, pods by node and by claim), so that no read or write walks every object.
Events expire ``event_ttl`` seconds after their last write (kube-apiserver's ``--event-ttl``,
1 h by default); what changed is persisted incrementally (journal.py).
"""

import time
import uuid
from collections import OrderedDict, deque
from datetime import datetime, timezone

from ptjaas_spawner.timestamps import parse_time

from . import errors
from .journal import Journal
from .resources import BY_KEY
from .objcopy import clone

EVENT_LOG_SIZE = 20000
EVENT_TTL = 3600.0   # seconds, as kube-apiserver's --event-ttl default
EVENTS = "events"


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _claims(tkey, obj):
    if tkey != "pods":
        return ()
    namespace = obj["metadata"].get("namespace", "")
    return tuple((namespace, (v.get("persistentVolumeClaim") or {}).get("claimName"))
                 for v in (obj.get("spec") or {}).get("volumes") or () if v.get("persistentVolumeClaim"))


# index name -> values an object is found under (its type key given); lookups with ``by(name, value)``
INDEXES = {
    "uid": lambda tkey, o: (o["metadata"].get("uid"),),
    "owner": lambda tkey, o: tuple(r.get("uid") for r in o["metadata"].get("ownerReferences") or ()),
    "label": lambda tkey, o: tuple((tkey, k, v) for k, v in (o["metadata"].get("labels") or {}).items()),
    "involved": lambda tkey, o: ((o.get("involvedObject") or {}).get("uid"),) if tkey == EVENTS else (),
    "node": lambda tkey, o: ((o.get("spec") or {}).get("nodeName"),) if tkey == "pods" else (),
    "claim": _claims,
    "claimref": lambda tkey, o: (((o.get("spec") or {}).get("claimRef") or {}).get("uid"),)
    if tkey == "persistentvolumes" and ((o.get("spec") or {}).get("claimRef") or {}).get("uid") else (),
}


def _event_time(event):
    """When an event was last written (for its TTL after a restart), as epoch seconds."""
    for value in ((event.get("series") or {}).get("lastObservedTime"), event.get("lastTimestamp"),
                  event.get("eventTime"), event["metadata"].get("creationTimestamp")):
        when = parse_time(value)
        if when is not None:
            return when.timestamp()
    return time.time()


class Store:
    def __init__(self, event_ttl=EVENT_TTL):
        self.objects = {}          # (type key, namespace, name) -> object dict
        self.kinds = {}            # type key -> {namespace -> {name -> object}}
        self.index = {name: {} for name in INDEXES}   # index name -> {value -> {object key -> object}}
        self.rv = 0
        self.log = deque(maxlen=EVENT_LOG_SIZE)   # (rv, type key, event type, object, previous object)
        self.compacted_rv = 0      # events at or below this resourceVersion are gone
        self.watchers = set()      # callables(log entry)
        self.listeners = []        # callables(event type, rtype, obj, old)
        self.event_ttl = float(event_ttl)
        self.expiry = OrderedDict()   # event key -> deadline (time.time()), oldest first
        self.changed = set()       # keys written since the last save
        self.journal = None

    @property
    def dirty(self):
        return bool(self.changed)

    # --- reads -------------------------------------------------------------------------
    def get(self, rtype, namespace, name):
        return self.objects.get((rtype.key, namespace or "", name))

    def list(self, rtype, namespace=None):
        spaces = self.kinds.get(rtype.key) or {}
        if namespace is None:
            items = [obj for names in spaces.values() for obj in names.values()]
        else:
            items = list((spaces.get(namespace or "") or {}).values())
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    def namespaced_keys(self, namespace):
        """Keys of every object in ``namespace`` (namespaced kinds only)."""
        return [(tkey, namespace, name) for tkey, spaces in self.kinds.items() if namespace
                for name in (spaces.get(namespace) or ())]

    def by(self, index, value):
        """Objects found under ``value`` in ``index`` (see INDEXES), in no particular order."""
        return list((self.index[index].get(value) or {}).values())

    def keys_by(self, index, value):
        return list(self.index[index].get(value) or ())

    # --- writes ------------------------------------------------------------------------
    def _bump(self):
        self.rv += 1
        return str(self.rv)

    def _put(self, key, obj, old):
        if old is not None:
            self._unindex(key, old)
        self.objects[key] = obj
        self.kinds.setdefault(key[0], {}).setdefault(key[1], {})[key[2]] = obj
        for name, values in INDEXES.items():
            for value in values(key[0], obj):
                self.index[name].setdefault(value, {})[key] = obj
        if key[0] == EVENTS:
            self.expiry.pop(key, None)
            self.expiry[key] = time.time() + self.event_ttl
        self.changed.add(key)

    def _unindex(self, key, old):
        for name, values in INDEXES.items():
            for value in values(key[0], old):
                bucket = self.index[name].get(value)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del self.index[name][value]

    def _drop(self, key):
        old = self.objects.pop(key, None)
        if old is None:
            return None
        self._unindex(key, old)
        spaces = self.kinds[key[0]]
        del spaces[key[1]][key[2]]
        if not spaces[key[1]]:
            del spaces[key[1]]
        self.expiry.pop(key, None)
        self.changed.add(key)
        return old

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
        self._put(key, obj, None)
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
        self._put(key, obj, old)
        self._announce("MODIFIED", rtype, obj, old)
        return obj

    def remove(self, rtype, namespace, name):
        key = (rtype.key, namespace or "" if rtype.namespaced else "", name)
        old = self._drop(key)
        if old is None:
            return None
        gone = clone(old)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._announce("DELETED", rtype, gone, old)
        return gone

    def _announce(self, event_type, rtype, obj, old):
        snapshot = clone(obj)
        rv = int(snapshot["metadata"]["resourceVersion"])
        entry = (rv, rtype.key, event_type, snapshot, old)
        if len(self.log) == self.log.maxlen:
            self.compacted_rv = max(self.compacted_rv, self.log[0][0])
        self.log.append(entry)
        for watcher in list(self.watchers):
            watcher(entry)
        for listener in list(self.listeners):
            listener(event_type, rtype, obj, old)

    def expire_events(self, now=None):
        """Remove the events whose TTL has run out (watchers see them DELETED, as etcd's lease
        expiry shows them). Costs only the expired ones: the deadlines are kept oldest first."""
        now = time.time() if now is None else now
        expired = 0
        while self.expiry:
            key, deadline = next(iter(self.expiry.items()))
            if deadline > now:
                break
            self.remove(BY_KEY[key[0]], key[1], key[2])
            expired += 1
        return expired

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

    # --- persistence (journal.py) --------------------------------------------------------
    def dump(self, path, extra=None):
        """Write everything (a snapshot; the journal starts again empty)."""
        self.journal = self.journal or Journal(path)
        self.journal.snapshot(self.rv, self.objects.values(), extra or {})
        self.changed.clear()

    def save(self, path, extra=None):
        """Persist what changed since the last save: appended to the journal, which is folded into
        a new snapshot once it has grown past the snapshot's size."""
        if self.journal is None or not self.journal.exists():
            return self.dump(path, extra)
        puts, deletes = [], []
        for key in self.changed:
            obj = self.objects.get(key)
            if obj is None:
                rtype = BY_KEY[key[0]]
                deletes.append([rtype.api_version, rtype.kind, key[1], key[2]])
            else:
                puts.append(obj)
        self.changed.clear()
        if self.journal.append(self.rv, puts, deletes, extra or {}):
            self.journal.snapshot(self.rv, self.objects.values(), extra or {})

    def load(self, path):
        self.journal = Journal(path)
        rv, objects, extra = self.journal.load()
        self.rv = rv
        self.compacted_rv = self.rv
        kinds = {(t.group, t.kind): t for t in BY_KEY.values()}
        for obj in objects:
            group, _, _ = obj["apiVersion"].rpartition("/")
            rtype = kinds[(group, obj["kind"])]
            meta = obj["metadata"]
            key = (rtype.key, meta.get("namespace", "") if rtype.namespaced else "", meta["name"])
            self._put(key, obj, self.objects.get(key))
            if key[0] == EVENTS:
                self.expiry[key] = _event_time(obj) + self.event_ttl
        self.expiry = OrderedDict(sorted(self.expiry.items(), key=lambda kv: kv[1]))
        self.changed.clear()
        return extra
