"""What the node's image registries hold. Pure.

The node agent runs a container as a local process and has no registry to pull from: by
default every image "exists" (its default command is what ``containers.image_default_command``
says). With a list of available images (``EmbeddedCluster(images=[...])``, ``ptjaas cluster
--images``, or ``kubelet.images`` set at run time), any other image fails as a kubelet's pull
does, with the same waiting reasons and events (``ErrImagePull``, then ``ImagePullBackOff``;
``InvalidImageName`` for a reference that does not parse), so what a start does with a missing
image can be tested on both backends.
"""

from ptjaas_spawner.imageref import is_reference, matches, normalized


class ImageRegistry:
    """``available``: glob patterns of the image references that can be pulled, matched
    against the reference as written and as containerd normalizes it; None: all."""

    def __init__(self, available=None):
        self.available = None if available is None else tuple(available)

    def problem(self, image: str):
        """``(waiting reason, message)`` as a kubelet reports a pull that fails, or None."""
        if not is_reference(image):
            return ("InvalidImageName",
                    f'Failed to apply default image tag "{image}": couldn\'t parse image reference "{image}": '
                    f"invalid reference format")
        if self.available is None or matches(image, self.available):
            return None
        full = normalized(image)
        return ("ErrImagePull",
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": failed to resolve '
                f'reference "{full}": {full}: not found')
