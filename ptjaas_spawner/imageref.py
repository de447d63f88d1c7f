"""Image references as a container runtime reads them. Pure.

``REFERENCE`` is the Docker reference grammar (github.com/distribution/reference):
``[host[:port]/]path[:tag][@sha256:digest]``, the path's components lowercase. ``normalized``
names an image as containerd does when it pulls it (``python`` ->
``docker.io/library/python:latest``), so a pattern may be written either way.
"""

import fnmatch
import re

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$")
MAX_LENGTH = 255  # a reference's total length, as the grammar's NameTotalLengthMax


def is_reference(image) -> bool:
    return isinstance(image, str) and len(image) <= MAX_LENGTH and bool(REFERENCE.match(image))


def normalized(image: str) -> str:
    """``python`` -> ``docker.io/library/python:latest``, as containerd names what it pulls."""
    name, at, digest = image.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/" + name) if "/" in name else f"docker.io/library/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + (at + digest if at else "")


def matches(image: str, patterns) -> bool:
    """Does the reference match one of the glob patterns (``fnmatch``, case-sensitive), as
    written or as containerd normalizes it?"""
    full = normalized(image)
    return any(fnmatch.fnmatchcase(image, p) or fnmatch.fnmatchcase(full, p) for p in patterns)
