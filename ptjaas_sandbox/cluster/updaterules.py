"""What an update may change, as kube-apiserver's update validation decides: immutable fields of
claims and pods, claim expansion (bound, of a class with ``allowVolumeExpansion``, never below
its capacity) and the snapshot CRDs' rules (``snapshotschema``), with the real server's messages."""

from . import errors, snapshotschema
from ptjaas_spawner.quantity import parse_quantity
from .resources import BY_PLURAL
from .objcopy import clone


def check_update(store, rtype, old, new):
    """Refuse an update that changes what may not change (kube-apiserver's update validation):
    the snapshot CRDs' rules, a claim's spec but its size (expanded only where its class allows,
    never below its capacity), a pod's spec but images, deadline and tolerations."""
    name = old["metadata"]["name"]
    causes = snapshotschema.update_causes(rtype.plural, old, new) if rtype.group == snapshotschema.GROUP else []
    if causes:
        raise errors.invalid(rtype.kind, name, causes, rtype.group)
    if rtype.plural == "persistentvolumeclaims":
        old_spec, new_spec = old.get("spec", {}), new.get("spec", {})
        old_size = parse_quantity(old_spec["resources"]["requests"]["storage"])
        new_size = parse_quantity(new_spec["resources"]["requests"]["storage"])
        capacity = parse_quantity(((old.get("status") or {}).get("capacity") or {}).get("storage") or "0")
        if new_size < old_size and new_size < capacity:   # a failed expansion may be undone, down to capacity
            raise errors.invalid(rtype.kind, name, [("spec.resources.requests.storage",
                                                     "Forbidden: field can not be less than status.capacity")])
        rest_old = {k: v for k, v in old_spec.items() if k not in ("resources", "volumeName")}
        rest_new = {k: v for k, v in new_spec.items() if k not in ("resources", "volumeName")}
        if rest_old != rest_new:
            raise errors.invalid(rtype.kind, name, [("spec", "Forbidden: spec is immutable after creation except "
                                                     "resources.requests and volumeAttributesClassName for bound claims")])
        if new_size != old_size:
            check_expandable(store, old)
    elif rtype.plural == "pods":
        def strip(spec):
            spec = clone(spec or {})
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                c.pop("image", None)
            spec.pop("activeDeadlineSeconds", None)
            spec.pop("tolerations", None)
            spec.pop("nodeName", None)
            return spec
        if strip(old.get("spec")) != strip(new.get("spec")):
            raise errors.invalid("Pod", name, [("spec", "Forbidden: pod updates may not change fields other than "
                                                "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                                                "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions "
                                                "to existing tolerations) or `spec.terminationGracePeriodSeconds`")])


def check_expandable(store, pvc):
    name = pvc["metadata"]["name"]
    why = ("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc "
           "must support resize")
    if pvc.get("status", {}).get("phase") != "Bound":
        raise errors.invalid("PersistentVolumeClaim", name, [("spec", "Forbidden: spec is immutable after creation "
                                                               "except resources.requests for bound claims")])
    cls = store.get(BY_PLURAL["storageclasses"], "", pvc["spec"].get("storageClassName") or "")
    if cls is None or not cls.get("allowVolumeExpansion"):
        raise errors.forbidden("persistentvolumeclaims", name, why)
