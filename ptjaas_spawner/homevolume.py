"""Home-volume policy: sizes by group, growth decisions, legacy claim names, bind failures,
shared volumes, whose home a claim is. Pure."""

import re
import shlex

from .objects import LABEL_PREFIX
from .quantity import parse_bytes
from .sizes import groups_allow

HOME_VOLUME_NAME = "home"

#: the home claim's name, written once: the spawner's default ``pvc_name_template`` and the
#: culler's default ``claim_name_template`` (which must name the same claim)
HOME_CLAIM_TEMPLATE = "claim-{username}"

# who owns a claim: KubeSpawner (every version) writes the real user name in the first, ptjaas
# in both; ptjaas's user label is a label-safe form of the name (see objects.label_value)
OWNER_ANNOTATIONS = ("hub.jupyter.org/username", f"{LABEL_PREFIX}/username")
OWNER_LABEL = f"{LABEL_PREFIX}/user"
# objects.label_value makes a changed name unique with an 8-hex-digit hash suffix: a label of
# that shape may be another name's hashed form, so it proves nothing on its own
_HASH_SHAPED = re.compile(r"(^|-)[0-9a-f]{8}$")


def home_size_for(user_groups, default: str, by_group: dict) -> str:
    """The biggest of the default size and the sizes of the user's groups."""
    best = default
    for group in sorted(user_groups or ()):
        size = (by_group or {}).get(group)
        if size is not None and parse_bytes(size) > parse_bytes(best):
            best = size
    return best


def growth_decision(current, wanted, expandable: bool):
    """What to do with an existing claim whose requested size is ``current``.

    Returns ``(action, message)`` with action one of ``"keep"``, ``"grow"``, ``"cannot-grow"``.
    Never shrinks.
    """
    if current is None:
        return "keep", ""
    have, want = parse_bytes(current), parse_bytes(wanted)
    if want <= have:
        return "keep", ""
    if expandable:
        return "grow", f"Growing your home volume from {current} to {wanted}."
    return (
        "cannot-grow",
        f"Your home volume stays at {current}: its storage class does not allow expansion "
        f"to {wanted}.",
    )


def claim_candidates(remembered, current, legacy) -> list:
    """Names to look for, in order: the remembered name (from state), the name of the
    current template, then the legacy KubeSpawner names. Duplicates and empties removed."""
    names = []
    for name in [remembered, current, *legacy]:
        if name and name not in names:
            names.append(name)
    return names


def claim_owner(pvc: dict, username: str):
    """Whose home is this claim? Returns ``(verdict, evidence)``: verdict ``"mine"`` (it is
    ``username``'s), ``"other"`` (it is proven to be someone else's) or ``"unknown"`` (its owner
    cannot be told); evidence is a short text for the admin.

    The owner is proven by the ``hub.jupyter.org/username`` / ``ptjaas.io/username``
    annotations (the real user name), or, on a claim with neither, by ptjaas's ``ptjaas.io/user``
    label when it is the user name itself and cannot be another name's hashed form. A claim's
    *name* proves nothing: KubeSpawner's slug schemes give different users the same names.
    """
    meta = (pvc or {}).get("metadata") or {}
    annotations = meta.get("annotations") or {}
    named = {key: annotations[key] for key in OWNER_ANNOTATIONS if annotations.get(key) is not None}
    if named:
        evidence = ", ".join(f"{key}={value!r}" for key, value in named.items())
        owners = set(named.values())
        if owners == {username}:
            return "mine", evidence
        if username in owners:
            return "unknown", f"its owner annotations disagree ({evidence})"
        return "other", f"it belongs to another user ({evidence})"
    label = (meta.get("labels") or {}).get(OWNER_LABEL)
    if label is None:
        return "unknown", "it has no owner annotation (hub.jupyter.org/username) nor label"
    if label == username and not _HASH_SHAPED.search(label):
        return "mine", f"{OWNER_LABEL}={label!r}"
    if label == username:
        return "unknown", (
            f"it has no owner annotation, and its label {OWNER_LABEL}={label!r} may stand for another name"
        )
    return "other", f"it belongs to another user ({OWNER_LABEL}={label!r})"


def home_claim_verdict(name, pvc, username, remembered, current):
    """What to do with an existing claim found at candidate ``name`` while looking for
    ``username``'s home. Returns ``(action, evidence)``, action one of:

    - ``"use"``: it is the user's home (the name remembered in their state, or its owner is
      proven to be them);
    - ``"skip"``: a legacy name under which another user's claim is proven to live (the name
      merely collides): keep looking, it is not this user's;
    - ``"refuse"``: never mount it, and create nothing in its place: its owner cannot be told,
      or it sits at the name this user's home must have (``current``) but is someone else's.
    """
    if remembered and name == remembered:
        return "use", "the name remembered in the user's state"
    verdict, evidence = claim_owner(pvc, username)
    if verdict == "mine":
        return "use", evidence
    if verdict == "other" and name != current:
        return "skip", evidence
    return "refuse", evidence


def owner_refusal(name, username, evidence):
    """(message for the user, warning for the admin) when the start is refused because of
    claim ``name`` (see ``home_claim_verdict``). The user's message names no other user."""
    user_msg = (
        f"Your server cannot start: a storage claim named {name} exists where your home volume "
        "belongs, and it is not proven to be yours, so it is not mounted. Nothing was changed. "
        "Please contact your administrator."
    )
    admin_msg = (
        f"Refusing to start a server of {username!r}: existing claim {name} is not mounted as their "
        f"home: {evidence}. Nothing was created or deleted. If the claim is {username!r}'s home, "
        f"annotate it: kubectl annotate pvc {name} "
        f"{shlex.quote('hub.jupyter.org/username=' + username)} --overwrite; "
        "otherwise rename or move the claim, or change pvc_name_template."
    )
    return user_msg, admin_msg


def bind_failure(events) -> str:
    """The Warning events of a claim that cannot bind, as one message ('' if none).

    ``events`` are event dicts (``type``, ``reason``, ``message``)."""
    msgs = []
    for ev in events or ():
        if ev.get("type") == "Warning":
            text = f"{ev.get('reason') or 'Warning'}: {ev.get('message') or ''}".strip()
            if text not in msgs:
                msgs.append(text)
    return "; ".join(msgs)


def claim_phase(pvc: dict) -> str:
    return ((pvc or {}).get("status") or {}).get("phase") or "Pending"


def claim_requested(pvc: dict):
    spec = (pvc or {}).get("spec") or {}
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def shared_volumes_for(shared_volumes, user_groups):
    """Pod volumes and mounts for the shared claims the user's groups may mount."""
    volumes, mounts = [], []
    for i, vol in enumerate(shared_volumes or ()):
        if not groups_allow(vol, user_groups):
            continue
        name = f"shared-{i}"
        read_only = bool(vol.get("read_only", False))
        volumes.append(
            {
                "name": name,
                "persistentVolumeClaim": {"claimName": vol["claim"], "readOnly": read_only},
            }
        )
        mounts.append({"name": name, "mountPath": vol["mount_path"], "readOnly": read_only})
    return volumes, mounts


def home_volume(claim_name: str, mount_path: str):
    """The pod volume and mount for the home claim."""
    return (
        {"name": HOME_VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim_name}},
        {"name": HOME_VOLUME_NAME, "mountPath": mount_path},
    )
