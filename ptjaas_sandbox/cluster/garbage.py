"""Owner references, as kube-controller-manager's garbage collector follows them: a removed owner's
dependents deleted (Background) or orphaned (Orphan), and Foreground deletion (the owner held by
the ``foregroundDeletion`` finalizer until its dependents are gone). Called by ``registry``."""

from . import errors
from .resources import BY_KEY, BY_PLURAL
from .store import now_iso
from .objcopy import clone


def _t(name):
    return BY_PLURAL[name] if name in BY_PLURAL else BY_KEY[name]


def dependents(store, uid):
    return [(_t(key[0]), store.objects[key]) for key in sorted(store.keys_by("owner", uid))]


def delete_foreground(registry, rtype, obj):
    """Foreground propagation: the owner stays (deletionTimestamp, finalizer ``foregroundDeletion``)
    until its dependents are gone; they are deleted first."""
    meta = obj["metadata"]
    if "foregroundDeletion" not in meta.setdefault("finalizers", []):
        meta["finalizers"].append("foregroundDeletion")
    if not meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = now_iso()
        meta["deletionGracePeriodSeconds"] = 0
    held = registry.store.update(rtype, obj)
    for dep_type, dep in dependents(registry.store, meta["uid"]):
        try:
            registry.delete(dep_type, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                            {"propagationPolicy": "Foreground"})
        except errors.ApiError:
            pass
    return held


def release_foreground_owners(registry, dependent):
    """The last dependent of an owner in foreground deletion is gone: the owner goes too."""
    for ref in dependent["metadata"].get("ownerReferences") or []:
        for (key, ns, name) in registry.store.keys_by("uid", ref.get("uid")):
            owner = registry.store.objects[(key, ns, name)]
            finalizers = owner["metadata"].get("finalizers") or []
            if (owner["metadata"]["uid"] != ref.get("uid") or "foregroundDeletion" not in finalizers
                    or dependents(registry.store, ref.get("uid"))):
                continue
            new = clone(owner)
            new["metadata"]["finalizers"] = [f for f in finalizers if f != "foregroundDeletion"]
            registry.store.update(_t(key), new)
            if not new["metadata"]["finalizers"]:
                registry._remove(_t(key), ns, name)


def collect_garbage(registry, owner):
    """Delete (or orphan) the dependents of a removed owner, as the garbage collector does."""
    uid = owner["metadata"]["uid"]
    orphan = (owner["metadata"].get("annotations") or {}).get("ptjaas.io/orphan-dependents") == "true"
    for (key, ns, name) in sorted(registry.store.keys_by("owner", uid)):
        obj = registry.store.objects.get((key, ns, name))
        if obj is None:   # gone with an earlier dependent
            continue
        refs = obj["metadata"].get("ownerReferences") or []
        rtype = _t(key)
        if orphan:
            new = clone(obj)
            new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
            registry.store.update(rtype, new)
        elif len(refs) == 1 or all(_owner_gone(registry.store, r) for r in refs if r.get("uid") != uid):
            try:
                registry.delete(rtype, ns, name, {"propagationPolicy": "Background"})
            except errors.ApiError:
                pass


def _owner_gone(store, ref):
    return not store.keys_by("uid", ref.get("uid"))
