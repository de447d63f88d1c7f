"""The control plane's event recorder: ``Event`` objects written straight to the store, a repeat
of (object, reason, message) counted on the event already there (found through the store's
index of events by the object they are about, not by a scan)."""

import secrets
import socket

from .resources import BY_PLURAL
from .store import now_iso, now_micro
from .objcopy import clone

T = BY_PLURAL
SCHEDULER = "default-scheduler"


class EventRecorder:
    def __init__(self, store):
        self.store = store

    def record(self, obj, event_type, reason, message, component="ptjaas-cluster"):
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        for ev in self.store.by("involved", meta.get("uid")) if meta.get("uid") else ():
            if ev["metadata"].get("namespace") == namespace and ev.get("reason") == reason and ev.get("message") == message:
                new = clone(ev)
                if ev.get("eventTime"):   # an events.k8s.io event repeats as a series
                    new["series"] = {"count": (ev.get("series") or {}).get("count", 1) + 1, "lastObservedTime": now_micro()}
                else:
                    new["count"] = ev.get("count", 1) + 1
                    new["lastTimestamp"] = now_iso()
                return self.store.update(T["events"], new)
        group, _, _ = obj.get("apiVersion", "v1").rpartition("/")
        event = {
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {"kind": obj.get("kind"), "namespace": meta.get("namespace", ""), "name": meta["name"],
                               "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": event_type, "count": 1,
            "source": {"component": component}, "firstTimestamp": now_iso(), "lastTimestamp": now_iso(),
            "eventTime": None, "reportingComponent": component, "reportingInstance": "",
        }
        if component == SCHEDULER:   # kube-scheduler writes events.k8s.io/v1 events: eventTime and action
            event.update({"source": {}, "firstTimestamp": None, "lastTimestamp": None, "eventTime": now_micro(),
                          "action": "Binding" if reason == "Scheduled" else "Scheduling",
                          "reportingInstance": f"{SCHEDULER}-{socket.gethostname()}"})
            del event["count"]
        return self.store.create(T["events"], event)
