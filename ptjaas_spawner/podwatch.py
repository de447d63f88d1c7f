"""Fail a start fast when no node can take the pod, or readably when it runs out of time.

While a server starts, ``watch_scheduling`` looks at the pod and its events as KubeSpawner's
reflectors already hold them (no API requests; z2jh's hub Role may read events but not nodes;
the pod's events come from ``eventindex``, not a scan of the namespace's events).
When the scheduler keeps reporting ``FailedScheduling`` for this pod (matched by the pod's uid)
for ``spawner.unschedulable_timeout`` seconds, it raises StartFailed with the reason in plain
words ("no node has a free GPU right now"); the start then deletes the pod, and the quota share
is released with the failed start. Waiting for the home volume does not count.

``wait_for_home_volume``: a home claim made by this start is given its volume before the pod is
made. The real kube-scheduler, asked to place a pod whose claim is not bound yet, reports
"pod has unbound immediate PersistentVolumeClaims" and may not look at the pod again for
minutes after the claim is bound (its retry raced with its own volume cache); the start then
hung until ``start_timeout``. This costs claim reads on a first start while its new claim is
Pending (none on a restart).

A start still not done shortly before ``start_timeout`` is failed with what the pod is waiting
for, in plain words, instead of JupyterHub's empty "Spawn failed:" of a timeout. It runs until
the start cancels it.
"""

import asyncio

from .eventindex import pod_events
from .homevolume import claim_phase
from .startfailure import (HOME_PROVISIONING, StartFailed, events_of, scheduling_state, start_timeout_message,
                           unschedulable_message, unschedulable_reason)

# set by the PersistentVolume controller on a claim whose volume a provisioner is making now
PROVISIONING = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")


async def wait_for_home_volume(spawner, claims, name, timeout, grace=2.0):
    """Return once the claim ``name`` (just made) is Bound, gone, or nobody is making its volume
    (no provisioning annotation after ``grace`` seconds: a WaitForFirstConsumer class binds only
    once a pod uses it; a claim that cannot bind is the claim watch's to report), or after
    ``timeout`` seconds. Tells the user once that the home volume is being created."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    delay, told = 0.1, False
    while loop.time() - began < timeout:
        pvc = await claims.read(name)
        if pvc is None or claim_phase(pvc) == "Bound":
            break
        provisioning = any(a in ((pvc.get("metadata") or {}).get("annotations") or {}) for a in PROVISIONING)
        if not provisioning and loop.time() - began >= grace:
            break
        if provisioning and not told:
            spawner.notes_extend([HOME_PROVISIONING])
            told = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    spawner.log.debug("Home claim %s: pod made after %.1f s", name, loop.time() - began)


def _before_hub_timeout(start_timeout):
    """Seconds after which a start still not done is failed by ptjaas, with words: a little
    before JupyterHub's own ``start_timeout``, whose TimeoutError reads as an empty "Spawn
    failed:" (the margin leaves time to delete the pod)."""
    return start_timeout - max(2.0, min(15.0, 0.1 * start_timeout))


async def watch_scheduling(spawner, interval=0.25):
    timeout = spawner.unschedulable_timeout
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up_at = started + _before_hub_timeout(spawner.start_timeout) if spawner.start_timeout else None
    since = None
    while True:
        await asyncio.sleep(interval)
        try:
            reflector = spawner.pod_reflector
            pod = reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}") if reflector else None
            gone = not pod or pod.get("metadata", {}).get("deletionTimestamp")
            state, message = (("pending", "") if gone
                              else scheduling_state(events_of(pod, pod_events(spawner), kind="Pod"), pod))
        except Exception:
            spawner.log.exception("Watching the scheduling of %s failed", spawner.pod_name)
            return
        now = loop.time()
        if give_up_at is not None and now >= give_up_at:
            spawner.log.warning("Giving up on the start of %s after %.0f s (pod %s: %s %s)", spawner._log_name,
                                now - started, spawner.pod_name, state, message)
            raise StartFailed(start_timeout_message(spawner.start_timeout, state, message))
        if state != "unschedulable" or not timeout or timeout <= 0:
            since = None
            continue
        if since is None:
            since = now
            spawner.log.info("Pod %s is unschedulable for now: %s", spawner.pod_name, message)
        if now - since >= timeout:
            reason = unschedulable_reason(message)
            spawner.log.warning("Giving up on pod %s after %.0f s unschedulable: %s",
                                spawner.pod_name, now - since, message)
            raise StartFailed(unschedulable_message(reason, now - since))
