"""Images of a user's own, for the groups an admin permits. Pure.

``c.PtjaasSpawner.custom_images`` (z2jh: ``hub.config.PtjaasSpawner.custom_images``)::

    {"groups": ["ml-platform"],                      # who may (absent: nobody; [] : everyone)
     "allowed": ["registry.example.com/team/*"],     # glob patterns of references (required)
     "sizes": ["small", "gpu-small"],                # optional: only these sizes
     "pull_secret": "team-registry"}                 # optional: a Secret in the server's namespace

A user then posts ``{"custom_image": "registry.example.com/team/x:1", "size": ...}`` (the form
has a field for it) instead of an image and version. The reference must parse as a container
runtime reads it (``imageref``), be at most 255 characters, and match an allowed pattern;
otherwise the start is refused with the allowed patterns named. The choice's image key is
``custom`` (per-image culling rules and the usage page see it as such) and its version the
reference's tag.
"""

from .imageref import MAX_LENGTH, is_reference, matches

CUSTOM = "custom"


def permitted(settings: dict | None, user_groups) -> bool:
    """May this user run an image of their own?"""
    if not settings or "groups" not in settings:
        return False
    groups = settings["groups"]
    return not groups or bool(set(groups) & set(user_groups or ()))


def problem(settings: dict | None, user_groups, reference) -> str:
    """Why this reference may not be started by this user ('' if it may), for the user."""
    if not permitted(settings, user_groups):
        return "Images of your own are not available to you. Choose an image from the list."
    if not isinstance(reference, str) or not reference.strip():
        return "Enter the image to start, such as registry.example.com/team/image:tag."
    allowed = ", ".join(settings["allowed"])
    if len(reference) > MAX_LENGTH:
        return f"That image name is too long ({len(reference)} characters, at most {MAX_LENGTH})."
    if not is_reference(reference):
        return ("That is not a valid image name (lowercase repository, an optional :tag or "
                f"@sha256:digest). Allowed images: {allowed}.")
    if not matches(reference, settings["allowed"]):
        return f"That image is not allowed here. Allowed images: {allowed}."
    return ""


def tag_of(reference: str) -> str:
    """The version a custom image is shown and culled as: its tag, digest or ``latest``."""
    name, at, digest = reference.partition("@")
    if at:
        return digest[:19]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"
