"""The quota ledger held against the cluster's pods: its rebuild after a hub restart, and its
reconcile after an API server outage.

- ``rebuild_ledger``: the live server pods (what KubeSpawner's pod reflector holds) charged
  when the ledger misses them, in slices that yield to the event loop;
- ``reconcile_namespace``: once a namespace's pod watch runs again after an outage, the shares
  of servers whose pod is gone are released (``gone_charges``) and live pods the ledger misses
  are charged; the starts in flight (``start_began`` / ``start_ended``: charged before their
  pod exists) are left alone.
"""

from __future__ import annotations

import asyncio
import time

from ..reflectors import watching
from .budget import Ledger, pod_amount, pod_limits
from .ledger import Charge

POOL_ANNOTATION = "ptjaas.io/quota-pool"
SIZE_LABEL = "ptjaas.io/size"
IMAGE_LABEL = "ptjaas.io/image"
VERSION_LABEL = "ptjaas.io/version"

REBUILD_SLICE = 0.02  # seconds of rebuild work between two yields to the event loop

# (user, server name) of the starts in flight: charged before their pod exists, so a pod list
# that misses their pod says nothing about them
_STARTING: set = set()


def start_began(user: str, server: str) -> None:
    _STARTING.add((user, server))


def start_ended(user: str, server: str) -> None:
    _STARTING.discard((user, server))


def charge_from_pod(user, server, pod: dict, pool, namespace=None) -> Charge:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return Charge(
        user, server, pod_amount(pod), pool,
        labels.get(SIZE_LABEL, ""), labels.get(IMAGE_LABEL, ""), labels.get(VERSION_LABEL, ""),
        *pod_limits(pod), namespace=namespace or meta.get("namespace") or "",
    )


def server_pod_charge(pod) -> Charge | None:
    """The share a pod (API JSON) holds, or None when it is not a live server of a hub user."""
    meta = (pod or {}).get("metadata") or {}
    ann = meta.get("annotations") or {}
    user = ann.get("hub.jupyter.org/username")
    if not user or meta.get("deletionTimestamp"):
        return None
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    server = ann.get("hub.jupyter.org/servername", "")
    return charge_from_pod(user, server, pod, ann.get(POOL_ANNOTATION) or None)


async def rebuild_ledger(ledger: Ledger, current_pods, log=None, slice_seconds=REBUILD_SLICE) -> int:
    """Charge the live server pods of ``current_pods()`` (``{"namespace/name": pod JSON}``, what
    KubeSpawner's pod reflector holds) that ``ledger`` does not hold yet; returns how many.

    Works in slices of ``slice_seconds``, yielding to the event loop in between. Each pod is read
    again from ``current_pods()`` just before it is charged, so a server that stopped meanwhile
    (its pod gone or terminating) is not charged."""
    refs = list(current_pods())
    added = 0
    deadline = time.monotonic() + slice_seconds
    for ref in refs:
        pod = current_pods().get(ref)
        try:
            charge = server_pod_charge(pod)
        except (TypeError, ValueError, AttributeError) as e:
            if log is not None:
                log.warning("Quota ledger: pod %s not counted, its resources are unreadable: %s", ref, e)
            charge = None
        if charge is not None and ledger.get(charge.user, charge.server) is None:
            ledger.add(charge)
            added += 1
        if time.monotonic() >= deadline:
            await asyncio.sleep(0)
            deadline = time.monotonic() + slice_seconds
    return added


def gone_charges(ledger: Ledger, namespace: str, pods: dict, starting=frozenset()) -> list:
    """The charges of servers in ``namespace`` whose pod is not in ``pods`` (``{"ns/name": pod
    JSON}``, a list or watch of the pods there that succeeded), leaving out the servers in
    ``starting``: their pods have been deleted, whether or not the hub has seen their stop."""
    present = set()
    for pod in pods.values():
        meta = (pod or {}).get("metadata") or {}
        ann = meta.get("annotations") or {}
        if meta.get("namespace") == namespace and ann.get("hub.jupyter.org/username"):
            present.add((ann["hub.jupyter.org/username"], ann.get("hub.jupyter.org/servername", "")))
    return [c for key, c in ledger.charges.items()
            if c.namespace == namespace and key not in present and key not in starting]


async def reconcile_namespace(ledger: Ledger, namespace: str, reflector, log) -> None:
    """Usage in ``namespace`` re-derived from ``reflector`` (its pod watch, just restarted after
    an API server outage): the charges of servers whose pod is gone are released (a later stop
    releases nothing twice) and live server pods the ledger misses are charged. Nothing unless
    the reflector holds a list that succeeded and still watches."""
    if not watching(reflector):
        return
    released = 0
    for charge in gone_charges(ledger, namespace, reflector.pods, _STARTING):
        if ledger.remove(charge.user, charge.server) is not None:
            released += 1
    added = await rebuild_ledger(ledger, lambda: reflector.pods, log)
    if released or added:
        log.info("Quota usage in namespace %s re-derived from its pods: %d share(s) released, %d charged",
                 namespace, released, added)
