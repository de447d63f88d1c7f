"""Object builders: label-safe values, pod security defaults, claim manifests. Pure."""

import hashlib
import re

LABEL_PREFIX = "ptjaas.io"
#: the VolumeSnapshot custom resource (external-snapshotter v1): written once, here
SNAPSHOT_GROUP, SNAPSHOT_VERSION, SNAPSHOT_PLURAL = "snapshot.storage.k8s.io", "v1", "volumesnapshots"
_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_LABEL = 63


def label_value(value) -> str:
    """A valid Kubernetes label value for ``value`` (<= 63 chars of [A-Za-z0-9._-],
    starting and ending alphanumeric). Changed values get a short hash so they stay unique."""
    text = "" if value is None else str(value)
    safe = _LABEL_BAD.sub("-", text).strip("-_.")
    if safe == text and len(safe) <= _MAX_LABEL:
        return safe
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    safe = safe[: _MAX_LABEL - 9].strip("-_.")
    return f"{safe}-{digest}" if safe else digest


def choice_labels(image: str, version: str, size: str) -> dict:
    """Pod labels recording the choice, for accounting."""
    return {
        f"{LABEL_PREFIX}/image": label_value(image),
        f"{LABEL_PREFIX}/version": label_value(version),
        f"{LABEL_PREFIX}/size": label_value(size),
    }


def user_labels(username: str) -> dict:
    return {f"{LABEL_PREFIX}/user": label_value(username)}


def user_annotations(username: str, servername: str = "") -> dict:
    ann = {f"{LABEL_PREFIX}/username": username}
    if servername:
        ann[f"{LABEL_PREFIX}/servername"] = servername
    return ann


def choice_annotations(image_ref: str) -> dict:
    return {f"{LABEL_PREFIX}/image-ref": image_ref}


def container_security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def storage_patch(size: str) -> dict:
    """Merge-patch body growing a claim's requested storage."""
    return {"spec": {"resources": {"requests": {"storage": size}}}}
