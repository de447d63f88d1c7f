"""Kubernetes I/O for the home claim: find (incl. legacy names), create, grow, watch binding.

Used by ``PtjaasSpawner``; the decisions themselves are in ``homevolume`` (pure).
"""

import asyncio
import json

from .errors import Refusal
from .homevolume import (
    claim_phase,
    claim_requested,
    growth_decision,
    home_claim_verdict,
    owner_refusal,
)
from .kube import ApiException, Kube, default_class
from .objects import storage_patch
from .startfailure import StartFailed, claim_problem

class ClaimBindError(StartFailed):
    """The home claim cannot bind; the message carries the claim's warning events."""


class ClaimRefused(StartFailed):
    """The API server refused to create the home claim (e.g. a storage ResourceQuota)."""


def claim_refused_message(body, namespace, name):
    """Readable text for a ``403`` on creating the home claim."""
    text = body
    try:
        text = json.loads(body).get("message", body)
    except (ValueError, AttributeError, TypeError):
        pass
    text = str(text or "forbidden")
    if "exceeded quota" in text:
        detail = text.split("exceeded quota:", 1)[1].strip() if "exceeded quota:" in text else text
        return (
            f"The cluster refused to create your home volume ({name}): namespace {namespace!r} is at "
            f"its storage quota ({detail}). Nothing was created. An administrator must raise the "
            f"quota or free storage in the namespace."
        )
    return (
        f"The cluster refused to create your home volume ({name}): {text[:300]}. Nothing was "
        f"created; please tell an administrator."
    )


class ClaimOwnerError(Refusal):
    """An existing claim at a home-claim name is not proven to be the user's: the start is
    refused with 409 Conflict (nothing created or deleted). ``jupyterhub_message`` is the user's
    message; the admin's warning (naming the claim and the evidence) is logged where it is
    raised."""

    def __init__(self, message):
        super().__init__(409, message)


class HomeClaims:
    """Claim operations for one spawner, in its namespace, on KubeSpawner's shared ApiClient
    (``spawner.api.api_client``)."""

    def __init__(self, spawner):
        self.spawner = spawner
        self.log = spawner.log
        self.kube = Kube(spawner.namespace, spawner.api.api_client)

    @property
    def namespace(self):
        """Where these claims are (the server's namespace unless set: a team's, the hub's)."""
        return self.kube.namespace

    @namespace.setter
    def namespace(self, value):
        self.kube.namespace = value

    async def read(self, name):
        return await self.kube.read_claim(name)

    async def find(self, candidates):
        """The first existing claim among ``candidates`` as (name, claim dict) or (None, None)."""
        for name in candidates:
            pvc = await self.read(name)
            if pvc is not None:
                return name, pvc
        return None, None

    async def find_home(self, candidates, username, remembered, current):
        """The user's existing home among ``candidates`` (read in order) as (name, claim dict),
        or (None, None). A claim whose owner is not proven to be ``username`` is never returned
        (see ``homevolume.home_claim_verdict``): another user's claim under a colliding legacy
        name is passed over; any other raises ClaimOwnerError."""
        for name in candidates:
            pvc = await self.read(name)
            if pvc is None:
                continue
            action, evidence = home_claim_verdict(name, pvc, username, remembered, current)
            if action == "use":
                return name, pvc
            if action == "skip":
                self.log.info("Claim %s is not a home of %s: %s", name, username, evidence)
                continue
            self.refuse(name, username, evidence)
        return None, None

    def check_created_or_found(self, name, pvc, created, username, remembered):
        """After ``create``: a claim that existed already (409) must be the user's."""
        if created or pvc is None:
            return
        action, evidence = home_claim_verdict(name, pvc, username, remembered, name)
        if action != "use":
            self.refuse(name, username, evidence)

    def refuse(self, name, username, evidence):
        user_msg, admin_msg = owner_refusal(name, username, evidence)
        self.log.warning("%s", admin_msg)
        record = getattr(self.spawner, "audit_refused", None)
        if record is not None:  # the spawner's audit record (a tool's HomeClaims has none)
            record("refused-claim", user_msg, user=username, server=getattr(self.spawner, "name", None),
                   claim=name, reason=str(evidence))
        raise ClaimOwnerError(user_msg)

    async def create(self, manifest):
        """Create the claim; if it exists already (409), read that one.

        Returns (claim dict, created: bool)."""
        try:
            return await self.kube.create_claim(manifest), True
        except ApiException as e:
            if e.status == 409:
                return await self.read(manifest["metadata"]["name"]), False
            if e.status == 403:
                name = manifest["metadata"]["name"]
                body = e.body.decode("utf8", "replace") if isinstance(e.body, bytes) else (e.body or e.reason)
                self.log.warning("Creating home claim %s refused: %s", name, str(body)[:500])
                raise ClaimRefused(claim_refused_message(body, self.namespace, name), 403) from None
            raise

    async def delete_created(self, name, uid):
        """Delete the claim this start created (uid precondition), bound or not: no pod was
        ever made to use it, so it holds no data."""
        return await self.kube.delete_claim(name, {"uid": uid})

    async def delete_unbound(self, name):
        """Delete a claim this start created that never bound (it holds no data)."""
        pvc = await self.read(name)
        if pvc is None or claim_phase(pvc) == "Bound" or (pvc.get("spec") or {}).get("volumeName"):
            return False
        meta = pvc.get("metadata") or {}
        # preconditions: if the claim changed since we read it (e.g. it just bound), the API
        # server refuses the delete with 409 and the claim stays
        preconditions = {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}
        return await self.kube.delete_claim(name, preconditions)

    async def expandable(self, pvc):
        """Does the claim's StorageClass allow volume expansion? (class name, bool)"""
        name = (pvc.get("spec") or {}).get("storageClassName")
        if name:
            sc = await self.kube.read_storage_class(name)
            if sc is None:
                return name, False
        else:
            sc = default_class(await self.kube.list_storage_classes())
            if sc is None:
                return None, False
        return sc["metadata"]["name"], bool(sc.get("allowVolumeExpansion"))

    async def grow_if_needed(self, name, pvc, wanted):
        """Grow the claim to ``wanted`` if it is smaller and its class allows it.

        Returns a message for the user ('' if nothing to say)."""
        current = claim_requested(pvc)
        action, _ = growth_decision(current, wanted, False)
        if action == "keep":
            return ""
        if claim_phase(pvc) != "Bound":
            self.log.info("Home claim %s is not bound yet; it grows to %s at a later start", name, wanted)
            return ""
        class_name, can_expand = await self.expandable(pvc)
        action, message = growth_decision(current, wanted, can_expand)
        if action == "grow":
            await self.kube.patch_claim(name, storage_patch(wanted))
            self.log.info("Growing home claim %s from %s to %s", name, current, wanted)
        else:
            self.log.warning(
                "Home claim %s stays at %s (wanted %s): storage class %s does not allow volume expansion",
                name,
                current,
                wanted,
                class_name,
            )
        return message

    async def claim_problem(self, pvc, storage_class=None):
        """Why this claim (this uid, not an older claim of the same name) cannot bind, or ''."""
        meta = pvc.get("metadata") or {}
        selector = f"involvedObject.name={meta.get('name')}"
        if meta.get("uid"):
            selector += f",involvedObject.uid={meta['uid']}"
        events = await self.kube.list_events(selector)
        return claim_problem(pvc, events, storage_class)

    async def watch(self, name, pod_warnings, pod_scheduled, recreate, timeout, fallback_interval=10.0,
                    storage_class=None, known_bound=False):
        """Watch the home claim while the server starts; read it only when something is wrong.

        Done as soon as ``pod_scheduled()``: the scheduler places a pod only once its claims
        are bound. Nothing is read unless the pod reports a new Warning event (``pod_warnings()``
        grows: e.g. FailedScheduling "pod has unbound immediate PersistentVolumeClaims" or
        'persistentvolumeclaim "x" not found') and is still not scheduled ``fallback_interval``
        seconds later (a provisioner usually binds a new claim in that time). Then the claim is
        read, and again every ``fallback_interval`` seconds while it stays Pending (for
        ``known_bound``, a claim a pod ran on before, only after each new warning):

        - gone: ``await recreate()`` (a claim deleted behind ptjaas's back), keep watching;
        - Bound: done;
        - Pending with Warning events of its own (this claim's uid: the API server keeps the
          events of a deleted claim of the same name for an hour), or no StorageClass at all:
          raise ClaimBindError with a message for the user.

        Returns after ``timeout`` seconds; the start cancels it when it ends.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        look_at = None  # when to read the claim
        while loop.time() < deadline:
            if pod_scheduled():
                return
            warnings_now = pod_warnings()
            if warnings_now > seen:
                seen = warnings_now
                if look_at is None:
                    look_at = loop.time() + fallback_interval
            if look_at is not None and loop.time() >= look_at:
                look_at = None if known_bound else loop.time() + fallback_interval
                pvc = await self.read(name)
                if pvc is None:
                    await recreate()
                    continue
                if claim_phase(pvc) == "Bound":
                    return
                problem = await self.claim_problem(pvc, storage_class)
                if problem:
                    raise ClaimBindError(problem)
            await asyncio.sleep(0.5)
