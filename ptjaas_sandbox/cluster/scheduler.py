"""The scheduler (kube-scheduler's part in the embedded cluster): binds each pending pod to a node
where it fits (node selector, taints and tolerations, the node's allocatable resources less what
its pods request, its claims bound or WaitForFirstConsumer), else reports FailedScheduling with
kube-scheduler's message. Driven by ``controllers.Controllers``."""

from decimal import Decimal

from . import admission, errors
from ptjaas_spawner.quantity import parse_quantity
from .resources import BY_PLURAL
from .eventrecorder import SCHEDULER
from .store import now_iso
from .objcopy import clone

T = BY_PLURAL
# reasons no preemption can help with (the rest: "No preemption victims found for incoming pod.")
UNRESOLVABLE = ("node(s) didn't match Pod's node affinity/selector", "node(s) were unschedulable", "untolerated taint")


def node_allocatable(node):
    return {k: parse_quantity(v) for k, v in (node.get("status", {}).get("allocatable") or {}).items()}


class Scheduler:
    """Which node each pod goes to; keeps the pods waiting for one and each node's requested
    resources up to date from the pod changes (``track_pod``)."""

    def __init__(self, store, events, volumes):
        self.store = store
        self.events = events
        self.volumes = volumes             # the claims' storage classes (volumebinding.VolumeBinding)
        self.unscheduled = set()           # keys of pods waiting for a node
        self.usage = {}                    # node name -> {resource: amount requested by its pods}
        self._usage_of = {}                # pod key -> (node name, {resource: amount})
        self.unschedulable_reported = {}   # pod uid -> last FailedScheduling message

    def track_pod(self, key, pod):
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
                _, cls = self.volumes.storage_class_for(pvc)
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


def _tolerates(toleration, taint):
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", "")
