"""Fail a start fast when no node can take the pod or its image cannot run, or readably when
it runs out of time.

While a server starts, ``watch_scheduling`` looks at the pod and its events as KubeSpawner's
reflectors already hold them, when a new event about the pod arrives (no timer; no API requests; z2jh's hub Role may read events but not nodes;
the pod's events come from ``eventindex``, not a scan of the namespace's events).
When the scheduler keeps reporting ``FailedScheduling`` for this pod (matched by the pod's uid)
for ``spawner.unschedulable_timeout`` seconds, it raises StartFailed with the reason in plain
words ("no node has a free GPU right now"); the start then deletes the pod, and the quota share
is released with the failed start. Waiting for the home volume does not count. Likewise, at
once, when the pod's image cannot be pulled (not found, refused, not a valid name; a pull that
may be passing gets the kubelet's second try) or its server keeps exiting (``CrashLoopBackOff``):
``startfailure.container_problem`` (kubespawner#795: KubeSpawner waits for ``start_timeout``),
on the audit record as ``server-start-failed``.

``wait_for_home_volume``: a home claim made by this start is given its volume before the pod is
made. The real kube-scheduler, asked to place a pod whose claim is not bound yet, reports
"pod has unbound immediate PersistentVolumeClaims" and may not look at the pod again for
minutes after the claim is bound (its retry raced with its own volume cache); the start then
hung until ``start_timeout``. The start learns the claim is bound from the namespace's claim
watch (``watches``), with no request.

A start still not done shortly before ``start_timeout`` is failed with what the pod is waiting
for, in plain words, instead of JupyterHub's empty "Spawn failed:" of a timeout. It runs until
the start cancels it.
"""

import asyncio

from .eventindex import events_about, pod_events
from .homeclaim import ClaimBindError
from .homevolume import claim_phase
from .startfailure import (HOME_PROVISIONING, StartFailed, claim_problem, container_problem, events_of,
                           scheduling_state, start_timeout_message, unschedulable_message, unschedulable_reason)

# set by the PersistentVolume controller on a claim whose volume a provisioner is making now
PROVISIONING = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")


async def wait_for_home_volume(spawner, claims, events, name, uid, timeout, grace=2.0, storage_class=None):
    """Return once the claim ``name`` (just made, ``uid``) is Bound, gone, or nobody is making
    its volume (no provisioning annotation ``grace`` seconds after the watch first showed it: a
    WaitForFirstConsumer class binds only once a pod uses it), or after ``timeout`` seconds, or
    when the claim watch stops (the claim watch of the start takes over). Raises
    ``ClaimBindError`` when the claim's own Warning events say it cannot be provisioned. Tells
    the user once that the home volume is being created.

    ``claims`` and ``events`` are the namespace's claim and claim-event watches
    (``watches.ClaimReflector``, ``ClaimEventReflector``): no API request is made, whatever the
    bind time; the start is woken by the watches, not a timer."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + timeout
    key = f"{spawner.namespace}/{name}"
    told, first_seen, seen_warnings = False, None, 0
    why = "the claim watch is not running" if not claims.running else "timed out"
    while claims.running and loop.time() < deadline:
        pvc = claims.resources.get(key)
        if pvc is not None and uid and (pvc.get("metadata") or {}).get("uid") != uid:
            pvc = None  # an older claim of that name, its deletion not seen yet
        wake_at = deadline
        if pvc is None:
            if first_seen is not None:
                why = "deleted"
                break  # deleted since: the start's claim watch recreates it
        else:
            if first_seen is None:
                first_seen = loop.time()
            if claim_phase(pvc) == "Bound":
                why = "bound"
                break
            provisioning = any(a in ((pvc.get("metadata") or {}).get("annotations") or {}) for a in PROVISIONING)
            if provisioning and not told:
                spawner.notes_extend([HOME_PROVISIONING])
                told = True
            if not provisioning:
                if loop.time() - first_seen >= grace:
                    why = "nobody provisions it"
                    break
                wake_at = min(wake_at, first_seen + grace)
            mine = [e for e in events_about(events, spawner.namespace, "PersistentVolumeClaim", name)
                    if e.get("type") == "Warning"] if events is not None else []
            if len(mine) > seen_warnings:
                seen_warnings = len(mine)
                problem = claim_problem(pvc, mine, storage_class)
                if problem:
                    raise ClaimBindError(problem)
        # registered before the loop runs anything else: no change is missed
        waits = [(claims.wakeups, key)]
        if events is not None:
            waits.append((events.wakeups, (spawner.namespace, "PersistentVolumeClaim", name)))
        futures = [wakeups.future(k) for wakeups, k in waits]
        try:
            await asyncio.wait(futures, timeout=max(0.0, wake_at - loop.time()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for (wakeups, k), future in zip(waits, futures):
                wakeups.discard(k, future)
    spawner.log.debug("Home claim %s (%s): pod made after %.1f s", name, why, loop.time() - began)


def _before_hub_timeout(start_timeout):
    """Seconds after which a start still not done is failed by ptjaas, with words: a little
    before JupyterHub's own ``start_timeout``, whose TimeoutError reads as an empty "Spawn
    failed:" (the margin leaves time to delete the pod)."""
    return start_timeout - max(2.0, min(15.0, 0.1 * start_timeout))


async def _next_change(spawner, wake_at, interval, longest=5.0):
    """Until a new event about the spawner's pod (KubeSpawner's event watch, when it wakes:
    ``watches.PodEventReflector``), or ``wake_at`` (loop time; None: no deadline), or at most
    ``longest`` seconds (the pod may show up in its own watch after its last event). A watch that
    cannot wake anybody is polled every ``interval`` seconds."""
    loop = asyncio.get_running_loop()
    reflector = spawner.event_reflector
    left = longest if wake_at is None else max(0.0, min(longest, wake_at - loop.time()))
    if reflector is None or not hasattr(reflector, "waiting_for") or not reflector.running:
        await asyncio.sleep(min(interval, left))
        return
    await reflector.waiting_for((spawner.namespace, "Pod", spawner.pod_name), left)


def _image(pod):
    containers = ((pod or {}).get("spec") or {}).get("containers") or [{}]
    return containers[0].get("image") or ""


async def watch_scheduling(spawner, interval=0.25):
    timeout = spawner.unschedulable_timeout
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up_at = started + _before_hub_timeout(spawner.start_timeout) if spawner.start_timeout else None
    since = None
    first = True
    while True:
        if first:
            first = False
        else:
            wake_at = give_up_at
            if since is not None and timeout and timeout > 0:
                wake_at = since + timeout if wake_at is None else min(wake_at, since + timeout)
            await _next_change(spawner, wake_at, interval)
        try:
            reflector = spawner.pod_reflector
            pod = reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}") if reflector else None
            gone = not pod or pod.get("metadata", {}).get("deletionTimestamp")
            mine = () if gone else events_of(pod, pod_events(spawner), kind="Pod")
            state, message = ("pending", "") if gone else scheduling_state(mine, pod)
            problem = None if gone else container_problem(pod, mine)
        except Exception:
            spawner.log.exception("Watching the scheduling of %s failed", spawner.pod_name)
            return
        if problem is not None:
            kind, words = problem
            spawner.log.warning("Giving up on the start of %s: %s", spawner._log_name, words)
            spawner.audit("server-start-failed",
                          reason={"image": "image-pull", "crash": "crash-loop", "config": "missing-secret"}[kind],
                          image=_image(pod), message=words)
            raise StartFailed(words)
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
