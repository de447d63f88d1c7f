"""The events KubeSpawner's event reflector holds, by the object they are about.

A start looks at the events of its own pod several times a second (is it unschedulable? does it
wait for its home volume?). KubeSpawner's ``events`` property sorts every event of the namespace
at each call; with hundreds of starts at once that is most of the hub's CPU. ``events_about``
answers from an index per reflector that is updated incrementally: the reflector's dict keeps
insertion order, so the events added since the last look are the keys after the newest one
already indexed (read from the end). When the reflector lists again (it replaces its dict, at
least every ``restart_seconds``) the index is rebuilt once from the new dict. Deleted events drop
out when they are looked up. No API requests; no I/O.
"""

from __future__ import annotations

import weakref
from collections import defaultdict

_INDEXES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _about(key, event):
    io = event.get("involvedObject") or event.get("regarding") or {}
    namespace = io.get("namespace") or (event.get("metadata") or {}).get("namespace") or key.split("/", 1)[0]
    return namespace, io.get("kind"), io.get("name")


def _when(event):
    return event.get("lastTimestamp") or event.get("eventTime") or ""


class EventIndex:
    """Keys of a reflector's ``resources`` ({"namespace/name": event}) by (namespace, kind, name)."""

    def __init__(self):
        self._source = None
        self._known = set()
        self._by_object = defaultdict(set)

    def _sync(self, resources):
        if resources is not self._source:  # a new list: index it once
            self._source = resources
            self._known = set()
            self._by_object = defaultdict(set)
            new = list(resources)
        else:  # the keys added since the last look are at the end
            new = []
            for key in reversed(resources):
                if key in self._known:
                    break
                new.append(key)
        for key in new:
            self._known.add(key)
            self._by_object[_about(key, resources[key])].add(key)

    def about(self, resources, namespace, kind, name):
        """This object's events, oldest first (as KubeSpawner's ``events`` orders them)."""
        self._sync(resources)
        keys = self._by_object.get((namespace, kind, name))
        if not keys:
            return []
        found = []
        for key in list(keys):
            event = resources.get(key)
            if event is None:  # deleted (expired) since
                keys.discard(key)
                self._known.discard(key)
            else:
                found.append(event)
        return sorted(found, key=_when)


def events_about(reflector, namespace, kind, name):
    """The events ``reflector`` (KubeSpawner's event reflector, or None) holds about one object."""
    if reflector is None:
        return []
    index = _INDEXES.get(reflector)
    if index is None:
        index = _INDEXES[reflector] = EventIndex()
    return index.about(reflector.resources, namespace, kind, name)


def pod_events(spawner):
    """The events about the spawner's pod (any pod of that name; callers match the uid)."""
    return events_about(getattr(spawner, "event_reflector", None), spawner.namespace, "Pod", spawner.pod_name)
