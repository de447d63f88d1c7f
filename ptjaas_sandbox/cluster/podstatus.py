"""A pod's status as a kubelet writes it (pure): conditions with their transition times, container
statuses, and what the last status says about a container (restarts, running)."""

from .store import now_iso


def set_condition(status, ctype, value, reason=None):
    conditions = status.setdefault("conditions", [])
    entry = next((c for c in conditions if c["type"] == ctype), None)
    if entry is None:
        entry = {"type": ctype}
        conditions.append(entry)
    if entry.get("status") != value:
        entry["lastTransitionTime"] = now_iso()
    entry.update({"status": value, "lastProbeTime": None})
    if reason:
        entry["reason"] = reason
    else:
        entry.pop("reason", None)


def waiting_status(container, reason, status):
    return {"name": container["name"], "ready": False, "restartCount": 0, "image": container["image"],
            "imageID": "", "started": False, "state": {"waiting": {"reason": reason}}}


def restart_count(pod, name):
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == name:
            return cs.get("restartCount", 0)
    return 0


def was_running(pod, name):
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == name:
            return "running" in (cs.get("state") or {})
    return False
