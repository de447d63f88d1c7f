"""Validation, defaulting and ResourceQuota admission, as the real API server does them. Pure."""

import base64
import re
from decimal import Decimal

from . import errors, podsecurity, snapshotschema
from ptjaas_spawner.quantity import QuantityError, format_quantity, parse_quantity

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

# these names must be RFC 1123 labels (services too since Kubernetes 1.34's relaxed service names:
# a digit may come first)
LABEL_NAMED = {"namespaces", "services"}


def _name_cause(resource, name):
    if resource in LABEL_NAMED:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            return ("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                    "alphanumeric characters or '-', and must start and end with an alphanumeric character "
                    "(e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return ("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                "(e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


def _label_causes(labels, field="metadata.labels"):
    causes = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if not name or len(name) > 63 or not QUALIFIED_NAME.match(name) or (prefix and not DNS1123_SUBDOMAIN.match(prefix)):
            causes.append((field, f'Invalid value: "{key}": name part must consist of alphanumeric characters, '
                           "'-', '_' or '.', and must start and end with an alphanumeric character"))
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append((field, f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                           "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                           "character, and be at most 63 characters"))
    return causes


def validate(rtype, obj):
    """Raise 422 Invalid with every problem found."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        cause = _name_cause(rtype.plural, name)
        if cause:
            causes.append(cause)
    causes += _label_causes(meta.get("labels"))
    for key in (meta.get("annotations") or {}):
        if not isinstance(meta["annotations"][key], str):
            causes.append(("metadata.annotations", f'Invalid value: "{key}": annotation values must be strings'))
    checker = _CHECKS.get(rtype.plural)
    if checker:
        causes += checker(obj)
    if causes:
        raise errors.invalid(rtype.kind, name, causes, rtype.group)


def _quantity_causes(resources, field):
    causes = []
    parsed = {}
    for kind in ("requests", "limits"):
        for res, value in ((resources or {}).get(kind) or {}).items():
            try:
                parsed[(kind, res)] = parse_quantity(value)
            except QuantityError as e:
                causes.append((f"{field}.{kind}[{res}]", f'Invalid value: "{value}": {e.reason}'))
                continue
            if parsed[(kind, res)] < 0:
                causes.append((f"{field}.{kind}[{res}]", f'Invalid value: "{value}": must be greater than or equal to 0'))
    for (kind, res), amount in parsed.items():
        if kind == "requests" and ("limits", res) in parsed and amount > parsed[("limits", res)]:
            causes.append((f"{field}.requests", f'Invalid value: "{(resources["requests"][res])}": must be less than '
                           f"or equal to {res} limit of {resources['limits'][res]}"))
        if "/" in res and kind == "requests" and ("limits", res) in parsed and amount != parsed[("limits", res)]:
            causes.append((f"{field}.requests[{res}]", f'Invalid value: "{resources["requests"][res]}": must be '
                           "equal to " + f"{res} limit of {resources['limits'][res]}"))
    return causes


def _check_pod(obj):
    spec = obj.get("spec") or {}
    causes = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("spec.containers", "Required value"))
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            field = f"spec.{kind}[{i}]"
            if not c.get("name"):
                causes.append((f"{field}.name", "Required value"))
            elif not DNS1123_LABEL.match(c["name"]):
                causes.append((f"{field}.name", f'Invalid value: "{c["name"]}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''))
            if not c.get("image"):
                causes.append((f"{field}.image", "Required value"))
            causes += _quantity_causes(c.get("resources"), f"{field}.resources")
            volumes = {v.get("name") for v in spec.get("volumes") or []}
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in volumes:
                    causes.append((f"{field}.volumeMounts[{j}].name", f'Not found: "{m.get("name")}"'))
                if not str(m.get("mountPath", "")).startswith("/"):
                    causes.append((f"{field}.volumeMounts[{j}].mountPath", f'Invalid value: "{m.get("mountPath")}": must be an absolute path'))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"'))
    return causes


def _check_pvc(obj):
    spec = obj.get("spec") or {}
    causes = []
    if not spec.get("accessModes"):
        causes.append(("spec.accessModes", "Required value: at least 1 access mode is required"))
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.append(("spec.resources[storage]", "Required value"))
    else:
        try:
            if parse_quantity(storage) <= 0:
                causes.append(("spec.resources[storage]", f'Invalid value: "{storage}": must be greater than zero'))
        except QuantityError as e:
            causes.append(("spec.resources[storage]", f'Invalid value: "{storage}": {e.reason}'))
    return causes


def _check_quota(obj):
    causes = []
    for res, value in ((obj.get("spec") or {}).get("hard") or {}).items():
        try:
            parse_quantity(value)
        except QuantityError as e:
            causes.append((f"spec.hard[{res}]", f'Invalid value: "{value}": {e.reason}'))
    return causes


def _check_secret(obj):
    causes = []
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(value, validate=True)
        except Exception:
            causes.append((f"data[{key}]", "Invalid value: illegal base64 data"))
    return causes


def _check_storageclass(obj):
    return [] if obj.get("provisioner") else [("provisioner", "Required value")]


def _check_namespace(obj):
    return podsecurity.label_causes((obj.get("metadata") or {}).get("labels"))


_CHECKS = {"namespaces": _check_namespace, "pods": _check_pod, "persistentvolumeclaims": _check_pvc, "resourcequotas": _check_quota,
           "secrets": _check_secret, "storageclasses": _check_storageclass, **snapshotschema.CHECKS}


# --- defaults ----------------------------------------------------------------------------
def _quantities_as_strings(mapping):
    """The API server serialises every quantity as a string (2 -> "2", 0.5 -> "500m")."""
    for name, value in list((mapping or {}).items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            mapping[name] = format_quantity(parse_quantity(value), name)


def default_limit_range(obj):
    """SetDefaults_LimitRangeItem: in a Container item, a missing default limit is the max, a
    missing default request the default limit (every write, as the real API server decodes)."""
    for item in (obj.get("spec") or {}).get("limits") or []:
        for part in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _quantities_as_strings(item.get(part))
        if item.get("type") != "Container":
            continue
        for name, value in (item.get("max") or {}).items():
            item.setdefault("default", {}).setdefault(name, value)
        for name, value in (item.get("default") or {}).items():
            item.setdefault("defaultRequest", {}).setdefault(name, value)


def admit_limit_ranges(pod, limit_ranges):
    """The LimitRanger admission plugin for a new pod: each container without a limit (request)
    gets the Container items' default (defaultRequest); a limit above an item's max is a 403."""
    name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    items = [i for lr in limit_ranges for i in (lr.get("spec") or {}).get("limits") or [] if i.get("type") == "Container"]
    for item in items:
        for c in containers:
            resources = c.setdefault("resources", {})
            for res, value in (item.get("default") or {}).items():
                resources.setdefault("limits", {}).setdefault(res, value)
            for res, value in (item.get("defaultRequest") or {}).items():
                resources.setdefault("requests", {}).setdefault(res, value)
    for item in items:
        for c in containers:
            limits = (c.get("resources") or {}).get("limits") or {}
            for res, cap in (item.get("max") or {}).items():
                if res in limits and parse_quantity(limits[res]) > parse_quantity(cap):
                    raise errors.forbidden("pods", name, f"maximum {res} usage per Container is {cap}, "
                                                         f"but limit is {limits[res]}")
    if items:
        pod.setdefault("status", {})["qosClass"] = qos_class(spec)


def default(rtype, obj):
    kind = rtype.plural
    if kind == "limitranges":
        default_limit_range(obj)
    for c in ((obj.get("spec") or {}).get("initContainers") or []) + ((obj.get("spec") or {}).get("containers") or []):
        for part in ("requests", "limits"):
            _quantities_as_strings((c.get("resources") or {}).get(part))
    if kind == "persistentvolumeclaims":
        _quantities_as_strings(((obj.get("spec") or {}).get("resources") or {}).get("requests"))
    if kind == "resourcequotas":
        _quantities_as_strings((obj.get("spec") or {}).get("hard"))
    if kind == "pods":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        for c in (spec.get("initContainers") or []) + spec.get("containers", []):
            image = c.get("image", "")
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            c.setdefault("imagePullPolicy", "IfNotPresent" if tagged and not image.endswith(":latest") else "Always")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            resources = c.setdefault("resources", {})
            if resources.get("limits"):
                requests = resources.setdefault("requests", {})
                for res, value in resources["limits"].items():
                    requests.setdefault(res, value)
            for port in c.get("ports") or []:
                port.setdefault("protocol", "TCP")
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    elif kind == "persistentvolumeclaims":
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Pending"}
    elif kind == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) if (obj.get("data") or string_data) else obj.get("data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()
    elif kind == "resourcequotas":
        obj["status"] = {"hard": dict((obj.get("spec") or {}).get("hard") or {}), "used": {}}
    elif kind == "storageclasses":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif rtype.group == "snapshot.storage.k8s.io" and "status" in rtype.subresources:
        obj.pop("status", None)   # as for a CRD with the status subresource: set through it only
    if rtype.plural not in ("events", "secrets", "configmaps", "namespaces", "nodes") and "spec" in obj:
        obj["metadata"].setdefault("generation", 1)


def qos_class(spec):
    containers = spec.get("containers") or []
    requests_any = any((c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits") for c in containers)
    if not requests_any:
        return "BestEffort"
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or parse_quantity(requests.get(name, limits[name])) != parse_quantity(limits[name]):
                return "Burstable"
    return "Guaranteed"


# --- ResourceQuota -----------------------------------------------------------------------
def pod_requests(pod):
    """Effective requests and limits of a pod: {"requests.cpu": Decimal, "limits.memory": ...}."""
    total = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for name, value in (res.get(kind) or {}).items():
                key = f"{kind}.{name}"
                total[key] = total.get(key, Decimal(0)) + parse_quantity(value)
    return total


def pod_is_terminal(pod):
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def usage_of(kind, obj):
    """What one object counts against the quota resources it can touch."""
    if kind == "pods":
        if pod_is_terminal(obj):
            return {}
        used = {"pods": Decimal(1), "count/pods": Decimal(1)}
        for key, amount in pod_requests(obj).items():
            used[key] = amount
            if key.startswith("requests."):
                name = key[len("requests."):]
                if name in ("cpu", "memory", "ephemeral-storage"):
                    used[name] = amount
        return used
    if kind == "persistentvolumeclaims":
        storage = parse_quantity(obj["spec"]["resources"]["requests"]["storage"])
        used = {"persistentvolumeclaims": Decimal(1), "requests.storage": storage,
                "count/persistentvolumeclaims": Decimal(1)}
        cls = obj["spec"].get("storageClassName")
        if cls:
            used[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = storage
            used[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Decimal(1)
        return used
    if kind in ("services", "secrets", "configmaps"):
        return {kind: Decimal(1), f"count/{kind}": Decimal(1)}
    return {}


def quota_used(quota, objects_by_kind):
    hard = (quota.get("spec") or {}).get("hard") or {}
    used = {name: Decimal(0) for name in hard}
    for kind, objects in objects_by_kind.items():
        for obj in objects:
            for name, amount in usage_of(kind, obj).items():
                if name in used:
                    used[name] += amount
    return used


def check_quota(kind, obj, quotas, objects_by_kind, old=None):
    """Raise 403 `exceeded quota` where creating (or growing to) ``obj`` passes a quota's hard limit."""
    wanted = usage_of(kind, obj)
    previous = usage_of(kind, old) if old is not None else {}
    name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
    for quota in quotas:
        hard = (quota.get("spec") or {}).get("hard") or {}
        if kind == "pods":
            missing = [res for res in hard if (res.startswith(("requests.", "limits.")) or res in ("cpu", "memory"))
                       and res.split(".", 1)[-1] in ("cpu", "memory")
                       and _needs(res) not in wanted]
            if missing and not pod_is_terminal(obj):
                names = ",".join(sorted({_needs(r) for r in missing}))
                raise errors.forbidden(kind, name, f"failed quota: {quota['metadata']['name']}: must specify {names}")
        used = quota_used(quota, objects_by_kind)
        over = []
        for res, limit in hard.items():
            delta = wanted.get(res, Decimal(0)) - previous.get(res, Decimal(0))
            if delta > 0 and used[res] + delta > parse_quantity(limit):
                over.append(res)
        if over:
            over.sort()
            requested = ",".join(f"{r}={format_quantity(wanted.get(r, 0) - previous.get(r, 0), r)}" for r in over)
            used_s = ",".join(f"{r}={format_quantity(used[r], r)}" for r in over)
            limited = ",".join(f"{r}={hard[r]}" for r in over)
            raise errors.forbidden(kind, name, f"exceeded quota: {quota['metadata']['name']}, "
                                   f"requested: {requested}, used: {used_s}, limited: {limited}")


def _needs(res):
    return res if res.startswith(("requests.", "limits.")) else f"requests.{res}"


def format_used(used):
    return {name: format_quantity(amount, name) for name, amount in used.items()}
