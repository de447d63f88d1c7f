"""Controllers: what reacts to the objects that changed and converges, one pass per loop turn:
namespaces (default ServiceAccount, ``kube-root-ca.crt``, termination), claims and volumes
(``volumebinding.py``), scheduling (``scheduler.py``), quota status (snapshots: the snapshotter, an
API client). Events are written by eventrecorder.py."""

import logging

from . import admission, errors
from .registry import QUOTA_KINDS
from .resources import BY_KEY, BY_PLURAL
from .scheduler import Scheduler
from .volumebinding import VolumeBinding
from .objcopy import clone

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                       "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed "
                       "across distributions of Kubernetes clusters.")


class Controllers:
    """Reconciles what changed: each store change queues its object, and one pass per loop turn
    looks at the queued objects (and at what waits on them: unscheduled pods, claims and volumes
    being deleted), never at every object. The first pass after start looks at everything."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.store = cluster.store
        self.registry = cluster.registry
        self.events = cluster.events
        self._pending = False
        self.changed = None                # plural -> {object key}; None: everything (the first pass)
        self.volumes = VolumeBinding(self.store, self.registry, self.events)
        self.scheduler = Scheduler(self.store, self.events, self.volumes)

    def on_event(self, event_type, rtype, obj, old):
        if rtype.plural == "events":   # only a terminating namespace waits on its events
            namespace = obj["metadata"].get("namespace", "")
            ns = self.store.get(T["namespaces"], "", namespace)
            if ns is not None and ns["metadata"].get("deletionTimestamp") and self.changed is not None:
                self.changed.setdefault("namespaces", set()).add((T["namespaces"].key, "", namespace))
                self.kick()
            return
        meta = obj["metadata"]
        key = (rtype.key, meta.get("namespace", "") if rtype.namespaced else "", meta["name"])
        gone = event_type == "DELETED"
        if rtype.plural == "pods":
            self.scheduler.track_pod(key, None if gone else obj)
            if gone:
                self.scheduler.unschedulable_reported.pop(meta["uid"], None)
        elif rtype.plural in self.volumes.deleting:
            if meta.get("deletionTimestamp") and not gone:
                self.volumes.deleting[rtype.plural].add(key)
            else:
                self.volumes.deleting[rtype.plural].discard(key)
        if self.changed is not None:
            self.changed.setdefault(rtype.plural, set()).add(key)
        self.kick()

    def kick(self):
        if not self._pending and self.cluster.loop is not None:
            self._pending = True
            self.cluster.loop.call_soon(self._run)

    def _run(self):
        self._pending = False
        changed, self.changed = self.changed, {}
        if changed is None:   # everything, once: what was loaded from disk or seeded
            changed = {t.plural: {(t.key, ns, name) for ns, names in self.store.kinds.get(t.key, {}).items()
                                  for name in names} for t in BY_KEY.values()}
            for key in changed["pods"]:
                self.scheduler.track_pod(key, self.store.objects.get(key))
            for plural, waiting in self.volumes.deleting.items():
                waiting.update(k for k in changed[plural] if self.store.objects[k]["metadata"].get("deletionTimestamp"))
        steps = [(self.ensure_service_accounts, changed), (self.volumes.provision, changed), (self.scheduler.schedule,),
                 (self.volumes.protect_claims,), (self.volumes.protect_volumes,), (self.update_quotas, changed),
                 (self.terminate_namespaces, changed)]
        for step, *args in steps:
            try:
                step(*args)
            except Exception:   # a controller bug must not take the API server down
                log.exception("controller %s failed", step.__name__)

    # --- namespaces ----------------------------------------------------------------------
    def ensure_service_accounts(self, changed):
        """Every namespace gets its ``default`` ServiceAccount and the ``kube-root-ca.crt``
        ConfigMap (the cluster's CA, as kube-controller-manager's root-ca-cert-publisher does)."""
        names = {key[2] for key in changed.get("namespaces") or ()}
        names |= {key[1] for plural in ("serviceaccounts", "configmaps") for key in changed.get(plural) or ()}
        for ns in filter(None, (self.store.get(T["namespaces"], "", n) for n in sorted(names))):
            name = ns["metadata"]["name"]
            if ns["metadata"].get("deletionTimestamp"):
                continue
            if self.store.get(T["serviceaccounts"], name, "default") is None:
                self.store.create(T["serviceaccounts"], {"metadata": {"name": "default", "namespace": name}})
            if self.store.get(T["configmaps"], name, ROOT_CA_CONFIGMAP) is None:
                self.store.create(T["configmaps"], {
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": name,
                                 "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                    "data": {"ca.crt": self.cluster.ca_pem()}})

    def terminate_namespaces(self, changed):
        touched = {key[2] for key in changed.get("namespaces") or ()}
        touched |= {key[1] for keys in changed.values() for key in keys if key[1]}
        for ns in filter(None, (self.store.get(T["namespaces"], "", n) for n in sorted(touched))):
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            left = [(key, n) for (key, _, n) in self.store.namespaced_keys(name)]
            for key, n in left:
                obj = self.store.get(BY_KEY[key], name, n)
                if obj is not None and not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.registry.delete(BY_KEY[key], name, n, {})
                    except errors.ApiError:
                        pass
            if not self.store.namespaced_keys(name):
                self.registry.finish_delete(T["namespaces"], "", name)

    # --- quota status --------------------------------------------------------------------
    def update_quotas(self, changed):
        spaces = {key[1] for plural in QUOTA_KINDS + ("resourcequotas",) for key in changed.get(plural) or ()}
        for quota in [q for ns in sorted(spaces) for q in self.store.list(T["resourcequotas"], ns)]:
            namespace = quota["metadata"]["namespace"]
            used = admission.format_used(admission.quota_used(quota, self.registry._objects_for_quota(namespace)))
            hard = dict((quota.get("spec") or {}).get("hard") or {})
            if quota.get("status") != {"hard": hard, "used": used}:
                new = clone(quota)
                new["status"] = {"hard": hard, "used": used}
                self.store.update(T["resourcequotas"], new)


