"""The cells of each kind's rows in a server-side Table (``tables.py``), as kube-apiserver's
printers write them (pkg/printers/internalversion; durations as k8s.io/apimachinery's
``duration.HumanDuration``), and the snapshot CRDs' printer columns. Pure: an object and the time
now in, a row's cells out (``PRINTERS`` by plural, ``default`` for the rest)."""

from ptjaas_spawner.timestamps import parse_time


# --- helpers as in k8s.io/apimachinery/pkg/util/duration and the printers ---------------------
def human_duration(seconds):
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


_parse_time = parse_time  # the one parser (ptjaas_spawner.timestamps)


def since(value, now):
    t = _parse_time(value)
    return "<unknown>" if t is None else human_duration((now - t).total_seconds())


def _age(obj, now):
    return since(obj.get("metadata", {}).get("creationTimestamp"), now)


def _created_at(obj, now):
    t = _parse_time(obj.get("metadata", {}).get("creationTimestamp"))
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else "<unknown>"


def _quantity(value):
    """A quantity as the real server prints it (canonical form for what we store)."""
    return str(value) if value is not None else ""


_MODES = [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]


def _access_modes(modes):
    modes = modes or []
    return ",".join(short for long, short in _MODES if long in modes)


def _selector(labels):
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def _label_selector(selector):
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        values = ",".join(expr.get("values") or [])
        parts.append({"In": f"{expr['key']} in ({values})", "NotIn": f"{expr['key']} notin ({values})",
                      "Exists": expr["key"], "DoesNotExist": f"!{expr['key']}"}.get(op, expr["key"]))
    return ",".join(parts) or "<none>"


# --- printers ---------------------------------------------------------------------------------
def default(obj, now):
    return [obj["metadata"]["name"], _age(obj, now)]


def _pod(pod, now):
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    last_restart = None
    phase = status.get("phase") or "Pending"
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def note_restart(cs):
        nonlocal last_restart
        finished = _parse_time((((cs.get("lastState") or {}).get("terminated")) or {}).get("finishedAt"))
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished

    initializing = False
    inits = spec.get("initContainers") or []
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        note_restart(cs)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            reason = ("Init:" + terminated["reason"]) if terminated.get("reason") else (
                f"Init:Signal:{terminated['signal']}" if terminated.get("signal") else f"Init:ExitCode:{terminated.get('exitCode')}")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(inits)}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in status.get("conditions") or [])
    if not initializing or initialized:
        restarts, last_restart = 0, None
        running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            note_restart(cs)
            state = cs.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("terminated"):
                t = state["terminated"]
                reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}"
            elif cs.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            has_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            reason = "Running" if has_ready else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    ips = status.get("podIPs") or []
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        gates_text = f"{sum(1 for g in gates if g.get('conditionType') in true)}/{len(gates)}"
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, restarts_text, _age(pod, now),
            (ips[0].get("ip") if ips else "") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_text]


def _storage_class(obj):
    return (obj.get("spec") or {}).get("storageClassName") or \
        (obj["metadata"].get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class", "")


def _vac(obj):
    return (obj.get("spec") or {}).get("volumeAttributesClassName") or "<unset>"


def _pvc(pvc, now):
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    phase = "Terminating" if pvc["metadata"].get("deletionTimestamp") else status.get("phase", "Pending")
    capacity = modes = ""
    if spec.get("volumeName"):
        modes = _access_modes(status.get("accessModes"))
        capacity = _quantity((status.get("capacity") or {}).get("storage"))
    return [pvc["metadata"]["name"], phase, spec.get("volumeName", ""), capacity, modes, _storage_class(pvc),
            _vac(pvc), _age(pvc, now), spec.get("volumeMode") or "Filesystem"]


def _pv(pv, now):
    spec, status = pv.get("spec") or {}, pv.get("status") or {}
    claim = spec.get("claimRef") or {}
    phase = "Terminating" if pv["metadata"].get("deletionTimestamp") else status.get("phase", "Pending")
    return [pv["metadata"]["name"], _quantity((spec.get("capacity") or {}).get("storage")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", "Retain"), phase,
            f"{claim['namespace']}/{claim['name']}" if claim.get("name") else "", _storage_class(pv), _vac(pv),
            status.get("reason", ""), _age(pv, now), spec.get("volumeMode") or "Filesystem"]


def _node(node, now):
    status, spec, labels = node.get("status") or {}, node.get("spec") or {}, node["metadata"].get("labels") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None or ready.get("status") == "Unknown" else (
        "Ready" if ready.get("status") == "True" else "NotReady")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]} |
                   ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    addresses = status.get("addresses") or []
    internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "<none>")
    external = next((a["address"] for a in addresses if a.get("type") == "ExternalIP"), "<none>")
    info = status.get("nodeInfo") or {}
    kernel = info.get("kernelVersion") or "<unknown>"
    if info.get("architecture") and info.get("kernelVersion"):
        kernel = f"{kernel} ({info['architecture']})"
    return [node["metadata"]["name"], state, ",".join(roles) or "<none>", _age(node, now), info.get("kubeletVersion", ""),
            internal, external, info.get("osImage") or "<unknown>", kernel,
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event(ev, now):
    first = since(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") else since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1
    if ev.get("series"):
        last = since(ev["series"].get("lastObservedTime"), now)
        count = ev["series"].get("count", count)
    obj = ev.get("involvedObject") or {}
    target = f"{(obj.get('kind') or '').lower()}/{obj['name']}" if obj.get("name") else (obj.get("kind") or "").lower()
    source = ev.get("source") or {}
    if source.get("component") or source.get("host"):
        src = source.get("component", "") + (f", {source['host']}" if source.get("host") else "")
    else:
        src = ev.get("reportingComponent", "") + (f", {ev['reportingInstance']}" if ev.get("reportingInstance") else "")
    return [last, ev.get("type", ""), ev.get("reason", ""), target, obj.get("fieldPath", ""), src,
            (ev.get("message") or "").strip(), first, int(count), ev["metadata"]["name"]]


def _service(svc, now):
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    kind = spec.get("type") or "ClusterIP"
    external = "<none>"
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        external = ",".join(ingress + list(spec.get("externalIPs") or [])) or "<pending>"
    elif kind == "ExternalName":
        external = spec.get("externalName", "<none>")
    elif spec.get("externalIPs"):
        external = ",".join(spec["externalIPs"])
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        ports.append(f"{p['port']}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p['port']}/{proto}")
    return [svc["metadata"]["name"], kind, spec.get("clusterIP") or "<none>", external, ",".join(ports) or "<none>",
            _age(svc, now), _selector(spec.get("selector"))]


def _endpoints(ep, now):
    addrs = []
    for subset in ep.get("subsets") or []:
        for a in subset.get("addresses") or []:
            for p in subset.get("ports") or [{}]:
                addrs.append(f"{a['ip']}:{p['port']}" if p.get("port") else a["ip"])
    text = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
    return [ep["metadata"]["name"], text or "<none>", _age(ep, now)]


def _quota(q, now):
    status = q.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests, limits = [], []
    for name in sorted(hard):
        target = limits if name.split(".")[0] == "limits" and "." in name else requests
        target.append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [q["metadata"]["name"], ", ".join(requests), ", ".join(limits), _age(q, now)]


def _storageclass(sc, now):
    name = sc["metadata"]["name"]
    ann = sc["metadata"].get("annotations") or {}
    if ann.get("storageclass.kubernetes.io/is-default-class") == "true" or \
            ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, sc.get("provisioner", ""), sc.get("reclaimPolicy") or "Delete",
            sc.get("volumeBindingMode") or "Immediate", bool(sc.get("allowVolumeExpansion")), _age(sc, now)]


def _rolebinding(rb, now):
    ref = rb.get("roleRef") or {}
    subjects = rb.get("subjects") or []
    users = ",".join(s["name"] for s in subjects if s.get("kind") == "User")
    groups = ",".join(s["name"] for s in subjects if s.get("kind") == "Group")
    sas = ",".join(f"{s.get('namespace', '')}/{s['name']}" for s in subjects if s.get("kind") == "ServiceAccount")
    return [rb["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(rb, now), users, groups, sas]


def _json_path(obj, path):
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _crd_columns(*paths, dates=()):
    """A custom resource's additionalPrinterColumns (``.spec.x`` paths, then Age): missing values
    are null cells, dates are printed as ages, as kube-apiserver does."""
    def printer(obj, now):
        cells = [obj["metadata"]["name"]]
        for path in paths:
            value = _json_path(obj, path)
            cells.append(since(value, now) if path in dates and value is not None else value)
        return cells + [_age(obj, now)]
    return printer


PRINTERS = {
    # the snapshot CRDs (shared/schemas/snapshot)
    "volumesnapshots": _crd_columns("status.readyToUse", "spec.source.persistentVolumeClaimName",
                                    "spec.source.volumeSnapshotContentName", "status.restoreSize",
                                    "spec.volumeSnapshotClassName", "status.boundVolumeSnapshotContentName",
                                    "status.creationTime", dates=("status.creationTime",)),
    "volumesnapshotcontents": _crd_columns("status.readyToUse", "status.restoreSize", "spec.deletionPolicy",
                                           "spec.driver", "spec.volumeSnapshotClassName",
                                           "spec.volumeSnapshotRef.name", "spec.volumeSnapshotRef.namespace"),
    "volumesnapshotclasses": _crd_columns("driver", "deletionPolicy"),
    "pods": _pod,
    "persistentvolumeclaims": _pvc,
    "persistentvolumes": _pv,
    "nodes": _node,
    "events": _event,
    "services": _service,
    "endpoints": _endpoints,
    "resourcequotas": _quota,
    "storageclasses": _storageclass,
    "rolebindings": _rolebinding,
    "namespaces": lambda o, now: [o["metadata"]["name"], (o.get("status") or {}).get("phase", "Active"), _age(o, now)],
    "configmaps": lambda o, now: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o, now)],
    "secrets": lambda o, now: [o["metadata"]["name"], o.get("type") or "Opaque", len(o.get("data") or {}), _age(o, now)],
    "serviceaccounts": lambda o, now: [o["metadata"]["name"], _age(o, now)],
    "limitranges": lambda o, now: [o["metadata"]["name"], _created_at(o, now)],
    "roles": lambda o, now: [o["metadata"]["name"], _created_at(o, now)],
    "networkpolicies": lambda o, now: [o["metadata"]["name"], _label_selector((o.get("spec") or {}).get("podSelector")), _age(o, now)],
    "leases": lambda o, now: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""), _age(o, now)],
}
