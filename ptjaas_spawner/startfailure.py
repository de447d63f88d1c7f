"""Why a start fails, in words a user understands: the events of the home claim and of the pod,
read as the real control plane writes them. Pure (plain dicts in, strings out).

- A claim's events are matched by the claim's uid (and time), never by name alone: the API
  server keeps events for an hour after their object is gone, so a claim deleted and made again
  under the same name must not inherit the old claim's failures.
- A Normal ``FailedBinding`` event "no storage class is set" means no StorageClass is configured
  and the cluster has no default one: the claim would stay Pending forever.
- The scheduler's ``FailedScheduling`` messages ("0/3 nodes are available: 3 Insufficient
  nvidia.com/gpu. preemption: ...") become plain words ("no node has a free GPU right now").
  "pod has unbound immediate PersistentVolumeClaims" is not a failure: the home volume is still
  being provisioned (a first start), and the user is told that instead.
"""

import re

from .errors import Refusal
from .timestamps import parse_time

from .connections import missing_secret

STORAGE_CLASS_SETTING = "c.PtjaasSpawner.home_volume_storage_class"
STORAGE_CLASS_SETTING_Z2JH = "hub.config.PtjaasSpawner.home_volume_storage_class"


class StartFailed(Refusal):
    """A start that cannot succeed; the message is what the user reads (progress page and the
    API's answer, with ``status_code``)."""

    def __init__(self, message, status_code=500):
        super().__init__(status_code, message)

    def __str__(self):
        return self.message


# ---- times ---------------------------------------------------------------------------------

def event_time(event):
    """The latest time an event (core/v1 or events.k8s.io written) says it happened."""
    times = [parse_time((event or {}).get(k)) for k in ("lastTimestamp", "eventTime", "firstTimestamp")]
    series = (event or {}).get("series") or {}
    times.append(parse_time(series.get("lastObservedTime")))
    meta = (event or {}).get("metadata") or {}
    times.append(parse_time(meta.get("creationTimestamp")))
    times = [t for t in times if t is not None]
    return max(times) if times else None


# ---- the home claim ------------------------------------------------------------------------

def events_of(obj, events, kind="PersistentVolumeClaim"):
    """The events about exactly this object: same uid when the event names one (the API server
    always does), otherwise same name and not older than the object (second resolution)."""
    meta = (obj or {}).get("metadata") or {}
    uid, name = meta.get("uid"), meta.get("name")
    created = parse_time(meta.get("creationTimestamp"))
    mine = []
    for ev in events or ():
        io = ev.get("involvedObject") or ev.get("regarding") or {}
        if io.get("kind") not in (None, kind) or io.get("name") != name:
            continue
        if io.get("uid") and uid:
            if io["uid"] != uid:
                continue
        else:
            when = event_time(ev)
            if created is not None and when is not None and when < created:
                continue
        mine.append(ev)
    return mine


def _text(ev):
    return f"{ev.get('reason') or ev.get('type') or 'Event'}: {ev.get('message') or ev.get('note') or ''}".strip()


def no_storage_class(events) -> bool:
    """Does a claim event say that no StorageClass applies (none set, no default class)?"""
    return any(
        ev.get("reason") == "FailedBinding" and "no storage class is set" in (ev.get("message") or "")
        for ev in events or ()
    )


def claim_problem(claim, events, storage_class=None) -> str:
    """Why the home claim cannot bind, as one message for the user ('' if nothing is wrong yet).

    ``events`` may hold events of any object; only this claim's (``events_of``) count."""
    name = ((claim or {}).get("metadata") or {}).get("name") or "?"
    mine = events_of(claim, events)
    if not storage_class and not ((claim or {}).get("spec") or {}).get("storageClassName") and no_storage_class(mine):
        return (
            f"Your home volume ({name}) cannot be created: no StorageClass is set for home volumes "
            f"and the cluster has no default StorageClass. An administrator must set "
            f"{STORAGE_CLASS_SETTING} (z2jh: {STORAGE_CLASS_SETTING_Z2JH}) to an existing "
            f"StorageClass, or mark one as the cluster's default."
        )
    warnings = []
    for ev in mine:
        if ev.get("type") == "Warning":
            text = _text(ev)
            if text not in warnings:
                warnings.append(text)
    if warnings:
        return f"Your home volume ({name}) cannot be provisioned: {'; '.join(warnings)}"
    return ""


# ---- the scheduler -------------------------------------------------------------------------

VOLUME_WAIT = (
    "unbound immediate PersistentVolumeClaims",
    "waiting for first consumer",
    # 'persistentvolumeclaim "x" not found', 'persistentvolume "pvc-..." not found' (a scheduler
    # whose cache is behind the provisioner, e.g. after an API server restart)
    "persistentvolume",
    "binding volumes",
)

HOME_PROVISIONING = "Your home volume is being created; the server starts as soon as it is ready."

_GPU_WORDS = ("gpu", "nvidia.com/", "amd.com/", "gpu.intel.com/")


def _resource_words(resource: str) -> str:
    r = resource.lower()
    if any(w in r for w in _GPU_WORDS):
        return "a free GPU"
    if r == "cpu":
        return "enough free CPU"
    if r == "memory":
        return "enough free memory"
    if r == "pods":
        return "room for another server"
    if r == "ephemeral-storage":
        return "enough free local disk"
    return f"enough free {resource}"


def is_volume_wait(message: str) -> bool:
    """A FailedScheduling message that only means a volume is not bound yet (not a failure)."""
    text = (message or "").lower()
    return any(w.lower() in text for w in VOLUME_WAIT)


def unschedulable_reason(message: str) -> str:
    """Plain words for a scheduler's FailedScheduling message ('' for volume waits).

    ``0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint
    {x}. preemption: ...`` -> "no node has a free GPU right now"."""
    if not message or is_volume_wait(message):
        return ""
    head = message.split(" preemption:")[0]
    head = head.split(":", 1)[1] if ":" in head else head
    parts = [p.strip().rstrip(".") for p in head.split(",") if p.strip()]
    phrases = []
    for part in parts:
        part = re.sub(r"^\d+\s+", "", part)
        m = re.match(r"Insufficient (\S+)", part)
        if m:
            phrase = f"no node has {_resource_words(m.group(1))} right now"
        elif part.startswith("Too many pods"):
            phrase = "no node has room for another server right now"
        elif "affinity/selector" in part or "node affinity" in part:
            phrase = "no node matches this size's node selector"
        elif "untolerated taint" in part:
            phrase = "the nodes that could run it are reserved (tainted) for other work"
        elif "unschedulable" in part:
            phrase = "the nodes are cordoned for maintenance"
        elif "no nodes available" in message or part.startswith("no nodes"):
            phrase = "the cluster has no node to run it"
        else:
            phrase = part
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    if not phrases and "no nodes available" in message:
        phrases = ["the cluster has no node to run it"]
    return "; ".join(phrases) or message


def unschedulable_message(reason: str, waited: float) -> str:
    return (
        f"Your server cannot start: {reason} (the cluster could not place it for about {round(waited)} s). "
        f"Nothing is left running and your quota share is free again. Try again later, or "
        f"choose another size."
    )


def start_timeout_message(start_timeout, state, message=""):
    """What a user reads when the start did not finish within ``start_timeout`` seconds, from the
    pod's ``scheduling_state``."""
    if state == "unschedulable":
        why = f"the cluster could not place it ({unschedulable_reason(message)})"
    elif state == "waiting-volume":
        why = "its home volume was not ready"
    elif state == "scheduled":
        why = "it was placed on a node but did not become ready"
    else:
        why = "the cluster did not place it"
    return (
        f"Your server did not start within {int(start_timeout)} s: {why}. Nothing is left running. "
        f"Try again later; if this keeps happening, tell an administrator."
    )


def scheduling_state(pod_events, pod=None):
    """The pod's scheduling as its events (oldest first) and its object tell it:
    ``("scheduled", "")``, ``("waiting-volume", message)``, ``("unschedulable", message)`` or
    ``("pending", "")``."""
    if pod and ((pod.get("spec") or {}).get("nodeName")):
        return "scheduled", ""
    last = None
    for ev in pod_events or ():
        if ev.get("reason") in ("Scheduled", "FailedScheduling"):
            last = ev
    if last is None or last.get("reason") == "Scheduled":
        return ("scheduled", "") if last is not None else ("pending", "")
    message = last.get("message") or last.get("note") or ""
    if is_volume_wait(message):
        return "waiting-volume", message
    return "unschedulable", message


def progress_message(event) -> str:
    """What the progress page says for a pod event; '' to show KubeSpawner's own line."""
    if event.get("reason") == "FailedScheduling" and is_volume_wait(event.get("message") or ""):
        return HOME_PROVISIONING
    return ""


# ---- the API server ------------------------------------------------------------------------

API_UNREACHABLE = (
    "The cluster's API server cannot be reached right now, so your server was not started "
    "(nothing was created). Please try again in a few minutes."
)


# ---- the containers (issue 25: fail fast, free the share) ---------------------------------

# a kubelet's waiting reasons for an image it cannot have: ErrImagePull at each failed pull,
# ImagePullBackOff between two, InvalidImageName for a reference that does not parse,
# ErrImageNeverPull for imagePullPolicy Never and no image on the node
IMAGE_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")

# what a pull failure's message says, in plain words (first match wins); a pull failure that says
# none of these may be passing (a registry hiccup): the start fails at the kubelet's back-off,
# after its second failed pull, not at the first
_PULL_WORDS = (
    (("not found", "manifest unknown", "notfound", "name unknown"), "not found"),
    (("unauthorized", "authorization failed", "access denied", "denied", "forbidden", "authentication required",
      "no basic auth credentials"), "the registry refused access (the cluster has no credentials for it)"),
    (("invalid reference format", "couldn't parse image", "invalid image name"), "it is not a valid image name"),
    (("no such host", "dial tcp", "i/o timeout", "connection refused", "tls handshake timeout",
      "server misbehaving"), "the registry could not be reached"),
)


def _pull_words(message):
    text = (message or "").lower()
    for words, plain in _PULL_WORDS:
        if any(w in text for w in words):
            return plain
    return ""


def _statuses(pod):
    status = (pod or {}).get("status") or {}
    return list(status.get("initContainerStatuses") or ()) + list(status.get("containerStatuses") or ())


def _spec_image(pod, name):
    spec = (pod or {}).get("spec") or {}
    for c in list(spec.get("initContainers") or ()) + list(spec.get("containers") or ()):
        if c.get("name") == name:
            return c.get("image") or ""
    return ""


def _last_pull_failure(events, image):
    """The message of the latest ``Failed to pull image "<image>"`` event ('' if none)."""
    text = ""
    for ev in events or ():
        message = ev.get("message") or ev.get("note") or ""
        if ev.get("reason") == "Failed" and message.startswith(f'Failed to pull image "{image}"'):
            text = message
    return text


def container_problem(pod, events=()):
    """Why the pod's containers cannot run, as ``(kind, message for the user)``, or None while
    nothing is known to be wrong. ``kind`` is ``image`` (the image cannot be pulled: not found,
    refused, unreachable, not a valid name) or ``crash`` (the server keeps exiting: the kubelet
    reports ``CrashLoopBackOff``). ``events``: the pod's (``events_of``), where the kubelet says
    why a pull failed (``ImagePullBackOff``'s own message does not). A first failed pull that
    may be passing (no known reason, or a registry not reached) is given the kubelet's next try."""
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason") or "", waiting.get("message") or ""
        image = _spec_image(pod, cs.get("name")) or cs.get("image") or "?"
        if reason in IMAGE_WAITING:
            why = _pull_words(message) or _pull_words(_last_pull_failure(events, image))
            if reason == "InvalidImageName":
                why = why or "it is not a valid image name"
            elif reason == "ErrImageNeverPull":
                why = why or "it is not on the node and may not be pulled (imagePullPolicy: Never)"
            elif reason == "ErrImagePull" and why in ("", "the registry could not be reached"):
                continue  # the kubelet tries again; a second failure is ImagePullBackOff
            return "image", (
                f"Your server cannot start: the image {image} could not be pulled: "
                f"{why or 'the pull kept failing'}. Nothing is left running and your quota share is free "
                f"again. Choose another version, or tell an administrator.")
        if reason == "CreateContainerConfigError" and missing_secret(message):
            return "config", (
                f"Your server cannot start: the Secret {missing_secret(message)!r} that one of your data "
                f"connections needs does not exist in the server's namespace. Nothing is left running and "
                f"your quota share is free again. Start without that connection, or ask an administrator to "
                f"create the Secret (ptjaas team-manifests --secret-stubs prints it).")
        if reason == "CrashLoopBackOff":
            last = ((cs.get("lastState") or {}).get("terminated")) or {}
            code = last.get("exitCode")
            restarts = cs.get("restartCount") or 0
            times = f"{restarts} time" + ("" if restarts == 1 else "s")
            exited = f"exit code {code}" if code is not None else "it exited"
            return "crash", (
                f"Your server cannot start: it keeps exiting as soon as it starts ({exited}, restarted "
                f"{times}); the image {image} may be broken or not meant for this hub. Nothing is left "
                f"running and your quota share is free again. Choose another version, or tell an "
                f"administrator (the server's log: kubectl logs --previous).")
    return None
