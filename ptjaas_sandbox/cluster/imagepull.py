"""The node agent's image "pull", reported as a kubelet reports it. No container runtime runs
here, so whether an image can be pulled is what the node's image registry says
(``images.ImageRegistry``, ``kubelet.images``): until it can, the container waits in
``ErrImagePull`` with the registry's answer, then ``ImagePullBackOff`` for a back-off of 10 s
doubling to 300 s, with the kubelet's events; a reference that does not parse is
``InvalidImageName``."""

from __future__ import annotations

FIRST_BACKOFF = 10.0
MAX_BACKOFF = 300.0


async def pull(images, image, event, waiting, killed_within) -> bool:
    """Wait until ``image`` can be pulled, reporting as a kubelet does: ``event(type, reason,
    message)`` records a pod event, ``waiting(reason, message)`` sets the container's waiting
    state, ``killed_within(seconds)`` waits and says whether the pod was deleted meanwhile.
    True if the pod was deleted before the image could be pulled."""
    backoff = FIRST_BACKOFF
    while True:
        problem = images.problem(image)
        if problem is None:
            return False
        reason, message = problem
        if reason == "InvalidImageName":
            event("Warning", "InspectFailed", message)
            event("Warning", "Failed", "Error: InvalidImageName")
            waiting(reason, message)
        else:
            event("Normal", "Pulling", f'Pulling image "{image}"')
            event("Warning", "Failed", f'Failed to pull image "{image}": {message}')
            event("Warning", "Failed", "Error: ErrImagePull")
            waiting("ErrImagePull", message)
            if await killed_within(1.0):
                return True
            event("Normal", "BackOff", f'Back-off pulling image "{image}"')
            event("Warning", "Failed", "Error: ImagePullBackOff")
            waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
        if await killed_within(backoff):
            return True
        backoff = min(backoff * 2, MAX_BACKOFF)
