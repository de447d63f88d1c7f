"""The PersistentVolume controller's part (kube-controller-manager): claims handed to their class's
external provisioner (or bound to a volume made for them), volumes bound by ``claimRef``, and the
pvc-protection and pv-protection finalizers lifted once nothing uses a claim or volume. Driven by
``controllers.Controllers``."""

from .resources import BY_PLURAL
from .objcopy import clone

T = BY_PLURAL
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class VolumeBinding:
    """Claims and volumes: provisioning, binding, protection."""

    def __init__(self, store, registry, events):
        self.store = store
        self.registry = registry
        self.events = events
        self.deleting = {"persistentvolumeclaims": set(), "persistentvolumes": set()}   # waiting for protection to lift

    def _changed_objects(self, changed, plural):
        return [obj for obj in map(self.store.objects.get, sorted(changed.get(plural) or ())) if obj is not None]

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
