"""Controllers: scheduler, volume provisioner, PVC protection, quota status, namespace
termination (snapshots: the snapshotter, an API client). They react to the objects that changed
and converge (events are written by eventrecorder.py)."""

import logging
from decimal import Decimal

from . import admission, errors
from ptjaas_spawner.quantity import parse_quantity
from .registry import QUOTA_KINDS
from .resources import BY_KEY, BY_PLURAL
from .eventrecorder import SCHEDULER
from .store import now_iso
from .objcopy import clone

log = logging.getLogger("ptjaas.cluster")
T = BY_PLURAL
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
# reasons no preemption can help with (the rest: "No preemption victims found for incoming pod.")
UNRESOLVABLE = ("node(s) didn't match Pod's node affinity/selector", "node(s) were unschedulable", "untolerated taint")
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                       "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed "
                       "across distributions of Kubernetes clusters.")


def node_allocatable(node):
    return {k: parse_quantity(v) for k, v in (node.get("status", {}).get("allocatable") or {}).items()}


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
        self.unscheduled = set()           # keys of pods waiting for a node
        self.deleting = {"persistentvolumeclaims": set(), "persistentvolumes": set()}   # waiting for protection to lift
        self.usage = {}                    # node name -> {resource: amount requested by its pods}
        self._usage_of = {}                # pod key -> (node name, {resource: amount})
        self.unschedulable_reported = {}   # pod uid -> last FailedScheduling message

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
            self._track_pod(key, None if gone else obj)
            if gone:
                self.unschedulable_reported.pop(meta["uid"], None)
        elif rtype.plural in self.deleting:
            if meta.get("deletionTimestamp") and not gone:
                self.deleting[rtype.plural].add(key)
            else:
                self.deleting[rtype.plural].discard(key)
        if self.changed is not None:
            self.changed.setdefault(rtype.plural, set()).add(key)
        self.kick()

    def _track_pod(self, key, pod):
        """Keep the set of pods to schedule and each node's requested resources up to date."""
        if pod is not None and not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp") \
                and not admission.pod_is_terminal(pod):
            self.unscheduled.add(key)
        else:
            self.unscheduled.discard(key)
        before = self._usage_of.pop(key, None)
        if before is not None:
            used = self.usage[before[0]]
            for name, amount in before[1].items():
                used[name] -= amount
        if pod is not None and pod["spec"].get("nodeName") and not admission.pod_is_terminal(pod):
            wanted = {k[len("requests."):]: v for k, v in admission.pod_requests(pod).items() if k.startswith("requests.")}
            wanted["pods"] = wanted.get("pods", Decimal(0)) + 1
            node = pod["spec"]["nodeName"]
            used = self.usage.setdefault(node, {})
            for name, amount in wanted.items():
                used[name] = used.get(name, Decimal(0)) + amount
            self._usage_of[key] = (node, wanted)

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
                self._track_pod(key, self.store.objects.get(key))
            for plural, waiting in self.deleting.items():
                waiting.update(k for k in changed[plural] if self.store.objects[k]["metadata"].get("deletionTimestamp"))
        steps = [(self.ensure_service_accounts, changed), (self.provision, changed), (self.schedule,),
                 (self.protect_claims,), (self.protect_volumes,), (self.update_quotas, changed),
                 (self.terminate_namespaces, changed)]
        for step, *args in steps:
            try:
                step(*args)
            except Exception:   # a controller bug must not take the API server down
                log.exception("controller %s failed", step.__name__)

    def _changed_objects(self, changed, plural):
        return [obj for obj in map(self.store.objects.get, sorted(changed.get(plural) or ())) if obj is not None]

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

    # --- storage -------------------------------------------------------------------------
    def storage_class_for(self, pvc):
        spec = pvc["spec"]
        if "storageClassName" in spec and spec["storageClassName"] is not None:
            return spec["storageClassName"], self.store.get(T["storageclasses"], "", spec["storageClassName"])
        for cls in self.store.list(T["storageclasses"]):
            if (cls["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
                return cls["metadata"]["name"], cls
        return None, None

    def provision(self, changed):
        """The PV controller's part: hand claims of a class to its (external) provisioner, and bind
        each claim to the volume made for it (``claimRef`` with the claim's uid)."""
        waiting = {}
        claims = set(changed.get("persistentvolumeclaims") or ())
        for pv in self._changed_objects(changed, "persistentvolumes"):
            ref = pv["spec"].get("claimRef") or {}
            if ref.get("uid") and (pv.get("status") or {}).get("phase") != "Bound":
                waiting[ref["uid"]] = pv
                claims.add((T["persistentvolumeclaims"].key, ref.get("namespace", ""), ref.get("name", "")))
        if changed.get("storageclasses"):   # a class appeared or changed: every claim still waiting may go on
            claims |= {(T["persistentvolumeclaims"].key, p["metadata"]["namespace"], p["metadata"]["name"])
                       for p in self.store.list(T["persistentvolumeclaims"])}
        for pvc in filter(None, map(self.store.objects.get, sorted(claims))):
            if pvc["metadata"].get("deletionTimestamp") or pvc.get("status", {}).get("phase") == "Bound":
                continue
            pv = waiting.get(pvc["metadata"]["uid"]) or self._volume_made_for(pvc)
            if pv is not None:
                self._bind(pvc, pv)
                continue
            name, cls = self.storage_class_for(pvc)
            if name is None or name == "":
                self._event_once(pvc, "Normal", "FailedBinding",
                                 "no persistent volumes available for this claim and no storage class is set")
                continue
            if cls is None:
                self._event_once(pvc, "Warning", "ProvisioningFailed", f'storageclass.storage.k8s.io "{name}" not found')
                continue
            selected = (pvc["metadata"].get("annotations") or {}).get("volume.kubernetes.io/selected-node")
            if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and not selected:
                self._event_once(pvc, "Normal", "WaitForFirstConsumer",
                                 "waiting for first consumer to be created before binding")
                continue
            self._hand_to_provisioner(pvc, cls)

    def _volume_made_for(self, pvc):
        """The volume whose claimRef names this claim, not bound yet (None if there is none)."""
        for pv in self.store.by("claimref", pvc["metadata"]["uid"]):
            if (pv.get("status") or {}).get("phase") != "Bound":
                return pv
        return None

    def _event_once(self, obj, event_type, reason, message):
        for ev in self.store.by("involved", obj["metadata"]["uid"]):
            if ev["reason"] == reason and ev["message"] == message:
                return
        self.events.record(obj, event_type, reason, message, "persistentvolume-controller")

    def _hand_to_provisioner(self, pvc, cls):
        annotations = pvc["metadata"].get("annotations") or {}
        if annotations.get("volume.kubernetes.io/storage-provisioner") == cls["provisioner"]:
            return
        new = clone(pvc)
        new["metadata"].setdefault("annotations", {}).update({
            "volume.kubernetes.io/storage-provisioner": cls["provisioner"],
            "volume.beta.kubernetes.io/storage-provisioner": cls["provisioner"]})
        if new["spec"].get("storageClassName") is None:
            new["spec"]["storageClassName"] = cls["metadata"]["name"]
        updated = self.store.update(T["persistentvolumeclaims"], new)
        self._event_once(updated, "Normal", "ExternalProvisioning",
                         f"Waiting for a volume to be created either by the external provisioner '{cls['provisioner']}' "
                         "or manually by the system administrator. If volume creation is delayed, please verify that "
                         "the provisioner is running and correctly registered.")

    def _bind(self, pvc, pv):
        pv = clone(pv)
        pv["metadata"].setdefault("finalizers", [])
        if "kubernetes.io/pv-protection" not in pv["metadata"]["finalizers"]:
            pv["metadata"]["finalizers"].append("kubernetes.io/pv-protection")
        pv["status"] = {"phase": "Bound"}
        self.store.update(T["persistentvolumes"], pv)
        new = clone(pvc)
        new["spec"]["volumeName"] = pv["metadata"]["name"]
        if new["spec"].get("storageClassName") is None:
            new["spec"]["storageClassName"] = pv["spec"].get("storageClassName")
        new["metadata"].setdefault("annotations", {}).update(
            {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"})
        new["metadata"].setdefault("finalizers", [])
        if "kubernetes.io/pvc-protection" not in new["metadata"]["finalizers"]:
            new["metadata"]["finalizers"].append("kubernetes.io/pvc-protection")
        new["status"] = {"phase": "Bound", "accessModes": pv["spec"]["accessModes"],
                         "capacity": dict(pv["spec"]["capacity"])}
        self.store.update(T["persistentvolumeclaims"], new)

    def protect_claims(self):
        for pvc in filter(None, map(self.store.objects.get, sorted(self.deleting["persistentvolumeclaims"]))):
            meta = pvc["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            if self.registry.pods_using_claim(meta["namespace"], meta["name"]):
                continue
            finalizers = [f for f in meta.get("finalizers", []) if f != "kubernetes.io/pvc-protection"]
            if finalizers:
                if finalizers != meta.get("finalizers"):
                    new = clone(pvc)
                    new["metadata"]["finalizers"] = finalizers
                    self.store.update(T["persistentvolumeclaims"], new)
                continue
            self.registry.finish_delete(T["persistentvolumeclaims"], meta["namespace"], meta["name"])
            self.release_volume(pvc)

    def protect_volumes(self):
        """pv-protection: a deleted volume goes once no claim is bound to it."""
        for pv in filter(None, map(self.store.objects.get, sorted(self.deleting["persistentvolumes"]))):
            meta = pv["metadata"]
            if not meta.get("deletionTimestamp") or (pv.get("status") or {}).get("phase") == "Bound":
                continue
            finalizers = [f for f in meta.get("finalizers", []) if f != "kubernetes.io/pv-protection"]
            if finalizers != meta.get("finalizers", []):
                new = clone(pv)
                new["metadata"]["finalizers"] = finalizers
                self.store.update(T["persistentvolumes"], new)
            if not finalizers:
                self.registry.finish_delete(T["persistentvolumes"], "", meta["name"])

    def release_volume(self, pvc):
        """The claim is gone: its volume is Released (its provisioner deletes it per reclaimPolicy)."""
        pv = self.store.get(T["persistentvolumes"], "", pvc["spec"].get("volumeName") or "")
        if pv is None:
            return
        new = clone(pv)
        new["status"] = {"phase": "Released"}
        self.store.update(T["persistentvolumes"], new)

    # --- scheduling ----------------------------------------------------------------------
    def schedule(self):
        for pod in filter(None, map(self.store.objects.get, sorted(self.unscheduled))):
            self.try_schedule(pod)

    def _claims_problem(self, pod):
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.store.get(T["persistentvolumeclaims"], pod["metadata"]["namespace"], claim)
            if pvc is None:
                return f'persistentvolumeclaim "{claim}" not found'
            if pvc["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{claim}" is being deleted'
            if pvc.get("status", {}).get("phase") != "Bound":
                _, cls = self.storage_class_for(pvc)
                if not (cls and cls.get("volumeBindingMode") == "WaitForFirstConsumer"):
                    return "pod has unbound immediate PersistentVolumeClaims"
        return None

    def node_usage(self, node_name):
        """What the pods bound to the node request (kept up to date from the pod changes)."""
        return self.usage.get(node_name) or {}

    def _node_reasons(self, pod, node):
        reasons = []
        spec = pod["spec"]
        labels = node["metadata"].get("labels") or {}
        if node["spec"].get("unschedulable"):
            return ["node(s) were unschedulable"]
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return ["node(s) didn't match Pod's node affinity/selector"]
        for taint in node["spec"].get("taints") or []:
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if not any(_tolerates(t, taint) for t in spec.get("tolerations") or []):
                return ["node(s) had untolerated taint(s)"]   # 1.36 names no taint
        allocatable = node_allocatable(node)
        used = self.node_usage(node["metadata"]["name"])
        wanted = {k[len("requests."):]: v for k, v in admission.pod_requests(pod).items() if k.startswith("requests.")}
        wanted["pods"] = Decimal(1)
        for name in sorted(wanted):
            if wanted[name] <= 0:
                continue
            if used.get(name, Decimal(0)) + wanted[name] > allocatable.get(name, Decimal(0)):
                reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
        return reasons

    def try_schedule(self, pod):
        problem = self._claims_problem(pod)
        nodes = self.store.list(T["nodes"])
        if problem is None:
            counts = {}
            for node in nodes:
                reasons = self._node_reasons(pod, node)
                if not reasons:
                    return self.bind(pod, node["metadata"]["name"], provision=True)
                for reason in reasons:
                    counts[reason] = counts.get(reason, 0) + 1
            detail = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
            message = f"0/{len(nodes)} nodes are available: {detail}." if nodes else "no nodes available to schedule pods"
            if nodes:
                hopeless = all(any(u in r for u in UNRESOLVABLE) for r in counts)
                message += (f" no new claims to deallocate, preemption: 0/{len(nodes)} nodes are available: {len(nodes)} "
                            + ("Preemption is not helpful for scheduling." if hopeless
                               else "No preemption victims found for incoming pod."))
        else:
            message = f"0/{len(nodes)} nodes are available: {problem}. no new claims to deallocate, preemption: " \
                      f"0/{len(nodes)} nodes are available: " \
                      f"{len(nodes)} Preemption is not helpful for scheduling."
        if self.unschedulable_reported.get(pod["metadata"]["uid"]) != message:
            self.unschedulable_reported[pod["metadata"]["uid"]] = message
            self.events.record(pod, "Warning", "FailedScheduling", message, SCHEDULER)
            new = clone(pod)
            new["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": message, "lastProbeTime": None,
                                            "lastTransitionTime": now_iso()}]
            self.store.update(T["pods"], new)

    def bind(self, pod, node_name, provision=False):
        """Bind a pod to a node; the scheduler (``provision``) first has its WaitForFirstConsumer claims
        provisioned for that node, and binds the pod once they are bound."""
        if self.store.get(T["nodes"], "", node_name or "") is None:
            raise errors.not_found("nodes", node_name or "")
        if pod["spec"].get("nodeName"):
            raise errors.conflict("pods", pod["metadata"]["name"], why=f"pod {pod['metadata']['name']} is already assigned to node \"{pod['spec']['nodeName']}\"")
        unbound = False
        for volume in (pod["spec"].get("volumes") or []) if provision else []:   # WaitForFirstConsumer claims: provisioned for this node
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            pvc = claim and self.store.get(T["persistentvolumeclaims"], pod["metadata"]["namespace"], claim)
            if pvc and pvc.get("status", {}).get("phase") != "Bound":
                unbound = True
                annotations = pvc["metadata"].get("annotations") or {}
                if annotations.get("volume.kubernetes.io/selected-node") != node_name:
                    new = clone(pvc)
                    new["metadata"].setdefault("annotations", {})["volume.kubernetes.io/selected-node"] = node_name
                    self.store.update(T["persistentvolumeclaims"], new)
        if unbound:   # the pod is bound once its claims are (the next pass)
            return None
        new = clone(pod)
        new["spec"]["nodeName"] = node_name
        new["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                        "lastTransitionTime": now_iso()}]
        self.unschedulable_reported.pop(pod["metadata"]["uid"], None)
        bound = self.store.update(T["pods"], new)
        self.events.record(bound, "Normal", "Scheduled",
                           f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to {node_name}",
                           SCHEDULER)
        return bound

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


def _tolerates(toleration, taint):
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", "")
