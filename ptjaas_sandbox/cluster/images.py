"""What the node's image registries hold. Pure.

The node agent runs a container as a local process and has no registry to pull from: by
default every image "exists" (its default command is what ``containers.image_default_command``
says). With a list of available images (``EmbeddedCluster(images=[...])``, ``ptjaas cluster
--images``, or ``kubelet.images`` set at run time), any other image fails as a kubelet's pull
does, with the same waiting reasons and events (``ErrImagePull``, then ``ImagePullBackOff``;
``InvalidImageName`` for a reference that does not parse), so what a start does with a missing
image can be tested on both backends.
"""

import fnmatch
import re

# a Docker reference (github.com/distribution/reference): [host[:port]/]path[:tag][@digest], the
# path's components lowercase
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$")


def normalized(image: str) -> str:
    """``python`` -> ``docker.io/library/python:latest``, as containerd names what it pulls."""
    name, at, digest = image.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = ("docker.io/" + name) if "/" in name else f"docker.io/library/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + (at + digest if at else "")


class ImageRegistry:
    """``available``: glob patterns (``fnmatch``) of the image references that can be pulled,
    matched against the reference as written and as containerd normalizes it; None: all."""

    def __init__(self, available=None):
        self.available = None if available is None else tuple(available)

    def problem(self, image: str):
        """``(waiting reason, message)`` as a kubelet reports a pull that fails, or None."""
        if not REFERENCE.match(image or ""):
            return ("InvalidImageName",
                    f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": '
                    f"invalid reference format")
        if self.available is None:
            return None
        full = normalized(image)
        if any(fnmatch.fnmatchcase(image, p) or fnmatch.fnmatchcase(full, p) for p in self.available):
            return None
        return ("ErrImagePull",
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": failed to resolve '
                f'reference "{full}": {full}: not found')
