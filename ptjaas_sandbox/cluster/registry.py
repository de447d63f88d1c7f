"""REST semantics over the store: create, get, list, update, patch, delete, with admission.

The HTTP layer (``api.py``) and the cluster's own controllers both go through here, so a
controller's write looks to a watcher exactly like a client's. What an update may change:
``updaterules.py``; owner references (garbage collection, foreground deletion): ``garbage.py``.
"""

import base64
import json
import random
from datetime import datetime, timedelta, timezone

from . import admission, errors, garbage, podsecurity, updaterules
from .patch import apply_patch
from .resources import BY_KEY, BY_PLURAL
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .store import now_iso
from .objcopy import clone

_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
QUOTA_KINDS = ("pods", "persistentvolumeclaims", "services", "secrets", "configmaps")
_RETURN_OBJECT_ON_DELETE = {"pods", "persistentvolumeclaims", "services", "namespaces", "persistentvolumes",
                            "serviceaccounts", "resourcequotas", "storageclasses"}   # as the client methods declare


def _t(name):
    return BY_PLURAL[name] if name in BY_PLURAL else BY_KEY[name]


class Registry:
    def __init__(self, store):
        self.store = store

    # --- helpers -----------------------------------------------------------------------
    def _require_namespace(self, rtype, namespace, creating=False):
        if not rtype.namespaced:
            return
        ns = self.store.get(_t("namespaces"), "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(rtype.plural, "", f"unable to create new content in namespace {namespace} "
                                   "because it is being terminated", rtype.group)

    def get(self, rtype, namespace, name):
        self._require_namespace_for_read(rtype, namespace)
        obj = self.store.get(rtype, namespace, name)
        if obj is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        return obj

    def _require_namespace_for_read(self, rtype, namespace):
        return None

    def list(self, rtype, namespace=None, label_selector="", field_selector="", limit=0, cont=""):
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rtype.plural)
        start_after = None
        list_rv = str(self.store.rv)
        objects = self._candidates(rtype, namespace, labels) if not cont else self.store.list(rtype, namespace)
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()).decode())
                start_after, list_rv = token["start"], str(token["rv"])
            except Exception:
                raise errors.bad_request("continue key is not valid: illegal base64 data") from None
            if int(list_rv) < self.store.compacted_rv:
                raise errors.gone("The provided continue parameter is too old to display a consistent list result.")
            objects = self._as_of(rtype, namespace, int(list_rv), objects)
        items = [o for o in objects if labels_match(labels, o["metadata"].get("labels")) and fields_match(fields, o)]
        if start_after is not None:
            items = [o for o in items if self._sort_key(o) > tuple(start_after)]
        remaining = None
        next_token = None
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            token = {"rv": int(list_rv), "start": list(self._sort_key(items[-1]))}
            next_token = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
        meta = {"resourceVersion": list_rv}
        if next_token:
            meta["continue"] = next_token
            meta["remainingItemCount"] = remaining
        return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": meta,
                "items": clone(items)}

    def _candidates(self, rtype, namespace, labels):
        """The objects a label selector can match, through the label index when it names a value."""
        exact = [(key, values) for key, op, values in labels if op in ("=", "in")]
        if not exact:
            return self.store.list(rtype, namespace)
        found = None
        for key, values in exact:
            keys = {k for value in values for k in self.store.keys_by("label", (rtype.key, key, value))}
            found = keys if found is None else found & keys
        objects = [self.store.objects[k] for k in found if namespace is None or k[1] == namespace]
        objects.sort(key=self._sort_key)
        return objects

    def _as_of(self, rtype, namespace, rv, objects):
        """The objects as they were at resourceVersion ``rv`` (continued lists are one consistent
        snapshot): undo the logged changes made since, newest first."""
        state = {self._sort_key(o): o for o in objects}
        for entry_rv, key, event_type, obj, old in reversed(self.store.log):
            if entry_rv <= rv:
                break
            if key != rtype.key or (namespace is not None and obj["metadata"].get("namespace") != namespace):
                continue
            if event_type == "ADDED":
                state.pop(self._sort_key(obj), None)
            elif old is not None:
                state[self._sort_key(old)] = old
        return [state[k] for k in sorted(state)]

    @staticmethod
    def _sort_key(obj):
        return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def _objects_for_quota(self, namespace):
        return {kind: [o for o in self.store.list(_t(kind), namespace)
                       if not (kind == "pods" and o["metadata"].get("deletionTimestamp"))]
                for kind in QUOTA_KINDS}

    def _admit_quota(self, rtype, namespace, obj, old=None):
        if rtype.plural not in QUOTA_KINDS:
            return
        quotas = self.store.list(_t("resourcequotas"), namespace)
        if quotas:
            admission.check_quota(rtype.plural, obj, quotas, self._objects_for_quota(namespace), old)

    # --- create ------------------------------------------------------------------------
    def create(self, rtype, namespace, body):
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = clone(body)
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if field == "resourceVersion" and meta.get(field):
                raise errors.bad_request("resourceVersion should not be set on objects to be created")
            meta.pop(field, None)
        if not meta.get("name") and meta.get("generateName"):
            for _ in range(20):
                candidate = meta["generateName"] + "".join(random.choice(_GENERATE_CHARS) for _ in range(5))
                if self.store.get(rtype, namespace, candidate) is None:
                    meta["name"] = candidate
                    break
        admission.default(rtype, obj)
        admission.validate(rtype, obj)
        self._require_namespace(rtype, namespace, creating=True)
        if self.store.get(rtype, namespace, meta["name"]) is not None:
            raise errors.already_exists(rtype.plural, meta["name"], rtype.group)
        if rtype.plural == "pods":
            admission.admit_limit_ranges(obj, self.store.list(_t("limitranges"), namespace))
            enforced = podsecurity.policy(self.store.get(_t("namespaces"), "", namespace))
            refusal = enforced and podsecurity.message(enforced, obj)
            if refusal:   # the PodSecurity admission plugin, after LimitRanger, before ResourceQuota
                raise errors.forbidden("pods", meta["name"], refusal)
        self._admit_quota(rtype, namespace, obj)
        if rtype.plural == "services":
            self._allocate_cluster_ip(obj)
        return self.store.create(rtype, obj)

    def _allocate_cluster_ip(self, svc):
        """A virtual IP from the service range (10.96.0.0/12) unless headless or ExternalName."""
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        if spec.get("clusterIP") in (None, ""):
            taken = {(s.get("spec") or {}).get("clusterIP") for s in self.store.list(_t("services"))}
            index = 10
            while f"10.96.{index // 256}.{index % 256}" in taken:
                index += 1
            spec["clusterIP"] = f"10.96.{index // 256}.{index % 256}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["clusterIP"] != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")

    # --- update ------------------------------------------------------------------------
    def update(self, rtype, namespace, name, body, subresource=None):
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        old = self.store.get(rtype, namespace, name)
        if old is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        meta = body.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.bad_request(f'the name of the object ({meta.get("name")}) does not match the name on the URL ({name})')
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group)
        return self._write(rtype, namespace, name, old, clone(body), subresource)

    def patch(self, rtype, namespace, name, patch, content_type, subresource=None):
        old = self.store.get(rtype, namespace, name)
        if old is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        new = apply_patch(old, patch, content_type)
        if not isinstance(new, dict):
            raise errors.bad_request("the patch did not produce an object")
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group)
        return self._write(rtype, namespace, name, old, new, subresource)

    def _write(self, rtype, namespace, name, old, new, subresource):
        meta = new.setdefault("metadata", {})
        meta["name"] = name
        if rtype.namespaced:
            meta["namespace"] = namespace
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        if subresource == "status":
            merged = clone(old)
            merged["status"] = new.get("status", {})
            merged["metadata"]["labels"] = meta.get("labels", old["metadata"].get("labels"))
            merged["metadata"]["annotations"] = meta.get("annotations", old["metadata"].get("annotations"))
            new = merged
        elif "status" in old and "status" in rtype.subresources:
            new["status"] = clone(old["status"])
        elif "status" in rtype.subresources and rtype.group == "snapshot.storage.k8s.io":
            new.pop("status", None)   # a CRD with the status subresource: status is written there only
        if rtype.plural == "secrets":
            string_data = new.pop("stringData", None) or {}
            for key, value in string_data.items():
                new.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()
        if rtype.plural == "services":   # defaulting applies to every write, as in the real API server
            for port in (new.get("spec") or {}).get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        if rtype.plural == "limitranges":
            admission.default_limit_range(new)
        admission.validate(rtype, new)
        updaterules.check_update(self.store, rtype, old, new)
        if new.get("spec") != old.get("spec") and "generation" in meta:
            meta["generation"] = old["metadata"]["generation"] + 1
        if rtype.plural in QUOTA_KINDS and subresource != "status":
            self._admit_quota(rtype, namespace, new, old)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and self._finalizable(rtype, new):
            self.store.update(rtype, new)
            return self._remove(rtype, namespace, name)
        unchanged = dict(new, apiVersion=rtype.api_version, kind=rtype.kind,
                         metadata=dict(meta, resourceVersion=old["metadata"]["resourceVersion"]))
        if unchanged == old:   # a write that changes nothing keeps the resourceVersion (and sends no event)
            return old
        return self.store.update(rtype, new)

    def _finalizable(self, rtype, obj):
        if rtype.plural == "pods":
            return not obj["spec"].get("nodeName") or admission.pod_is_terminal(obj)
        return rtype.plural != "namespaces"

    # --- delete ------------------------------------------------------------------------
    def delete(self, rtype, namespace, name, options=None):
        options = options or {}
        obj = self.store.get(rtype, namespace, name)
        if obj is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise errors.conflict(rtype.plural, name, rtype.group, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata']['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group, "Precondition failed: resourceVersion in precondition does not match")
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "Background")
        obj = clone(obj)
        meta = obj["metadata"]
        if policy == "Orphan":
            meta.setdefault("annotations", {})["ptjaas.io/orphan-dependents"] = "true"
        if policy == "Foreground" and rtype.plural != "namespaces" and garbage.dependents(self.store, meta["uid"]):
            return garbage.delete_foreground(self, rtype, obj)
        grace = options.get("gracePeriodSeconds")
        if rtype.plural == "pods":
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            running = obj["spec"].get("nodeName") and not admission.pod_is_terminal(obj)
            if running and int(grace) > 0 or meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = _in_seconds(int(grace))
                    meta["deletionGracePeriodSeconds"] = int(grace)
                elif int(grace) < meta.get("deletionGracePeriodSeconds", 30):
                    meta["deletionGracePeriodSeconds"] = int(grace)   # a shorter grace period wins
                    meta["deletionTimestamp"] = _in_seconds(int(grace))
                else:
                    return obj
                return self.store.update(rtype, obj)
        elif rtype.plural == "namespaces":
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_iso()
                obj["status"]["phase"] = "Terminating"
                return self.store.update(rtype, obj)
            return obj
        elif meta.get("finalizers") or self._pvc_in_use(rtype, obj):
            if rtype.plural == "persistentvolumeclaims" and "kubernetes.io/pvc-protection" not in meta.get("finalizers", []):
                meta.setdefault("finalizers", []).append("kubernetes.io/pvc-protection")
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_iso()
                meta["deletionGracePeriodSeconds"] = 0
                return self.store.update(rtype, obj)
            return obj
        if policy == "Orphan":
            self.store.update(rtype, obj)
        gone = self._remove(rtype, namespace, name)
        if rtype.plural in _RETURN_OBJECT_ON_DELETE:
            return gone
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": rtype.group, "kind": rtype.plural, "uid": meta["uid"]}}

    def _pvc_in_use(self, rtype, pvc):
        if rtype.plural != "persistentvolumeclaims":
            return False
        return bool(self.pods_using_claim(pvc["metadata"]["namespace"], pvc["metadata"]["name"]))

    def pods_using_claim(self, namespace, claim):
        """Pods that keep a claim from going (kube-controller-manager's pvc-protection): every pod
        scheduled with it, finished (Succeeded/Failed) ones too, until the pod object is gone."""
        pods = self.store.by("claim", (namespace, claim))
        pods.sort(key=self._sort_key)
        return [pod for pod in pods if (pod.get("spec") or {}).get("nodeName")]

    def _remove(self, rtype, namespace, name):
        gone = self.store.remove(rtype, namespace, name)
        if gone is not None:
            garbage.collect_garbage(self, gone)
            garbage.release_foreground_owners(self, gone)
        return gone

    def finish_delete(self, rtype, namespace, name):
        """Remove an object whose graceful deletion has completed (kubelet, finalizers done)."""
        return self._remove(rtype, namespace, name)

    def delete_collection(self, rtype, namespace, label_selector="", field_selector="", options=None):
        listing = self.list(rtype, namespace, label_selector, field_selector)
        for obj in listing["items"]:
            try:
                self.delete(rtype, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], options)
            except errors.ApiError:
                pass
        return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": listing["items"]}

    # --- convenience for controllers ---------------------------------------------------
    def set_status(self, rtype, obj, status):
        new = clone(obj)
        new["status"] = status
        return self.store.update(rtype, new)


def _in_seconds(seconds):
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
