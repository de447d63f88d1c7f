"""The resource types the embedded API server serves. Pure data."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    group: str          # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple = ()
    subresources: tuple = ()
    verbs: tuple = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self):
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def singular(self):
        return self.kind.lower()


RESOURCE_TYPES = [
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize"),
                 ("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("status", "log", "binding", "eviction")),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",)),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), ("token",)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), ("status",)),
    ResourceType("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    ResourceType("snapshot.storage.k8s.io", "v1", "volumesnapshots", "VolumeSnapshot", True, ("vs",), ("status",)),
    ResourceType("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass", False, ("vsclass",)),
    ResourceType("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents", "VolumeSnapshotContent", False, ("vsc",), ("status",)),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
]

BY_PATH = {(t.group, t.version, t.plural): t for t in RESOURCE_TYPES}
BY_KEY = {t.key: t for t in RESOURCE_TYPES}
BY_KIND = {(t.group, t.kind): t for t in RESOURCE_TYPES}


def groups():
    """{group: [versions]} for the discovery documents, core ("") included."""
    out = {}
    for t in RESOURCE_TYPES:
        out.setdefault(t.group, [])
        if t.version not in out[t.group]:
            out[t.group].append(t.version)
    return out
BY_PLURAL = {t.plural: t for t in RESOURCE_TYPES}   # plurals are unique among the types served here
