"""Home-volume policy: sizes by group, growth decisions, legacy claim names, bind failures,
shared volumes. Pure."""

from .sizes import groups_allow, parse_bytes

HOME_VOLUME_NAME = "home"


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
