"""Fail a start fast when no node can take the pod.

While a server starts, ``watch_scheduling`` looks at the pod and its events as KubeSpawner's
reflectors already hold them (no API requests; z2jh's hub Role may read events but not nodes;
the pod's events come from ``eventindex``, not a scan of the namespace's events).
When the scheduler keeps reporting ``FailedScheduling`` for this pod (matched by the pod's uid)
for ``spawner.unschedulable_timeout`` seconds, it raises StartFailed with the reason in plain
words ("no node has a free GPU right now"); the start then deletes the pod, and the quota share
is released with the failed start. Waiting for the home volume does not count. It runs until
the start cancels it.
"""

import asyncio

from .eventindex import pod_events
from .startfailure import StartFailed, events_of, scheduling_state, unschedulable_message, unschedulable_reason


async def watch_scheduling(spawner, interval=0.25):
    timeout = spawner.unschedulable_timeout
    if not timeout or timeout <= 0:
        return
    loop = asyncio.get_running_loop()
    since = None
    while True:
        await asyncio.sleep(interval)
        try:
            reflector = spawner.pod_reflector
            pod = reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}") if reflector else None
            if not pod or pod.get("metadata", {}).get("deletionTimestamp"):
                since = None
                continue
            state, message = scheduling_state(events_of(pod, pod_events(spawner), kind="Pod"), pod)
        except Exception:
            spawner.log.exception("Watching the scheduling of %s failed", spawner.pod_name)
            return
        if state != "unschedulable":
            since = None
            continue
        now = loop.time()
        if since is None:
            since = now
            spawner.log.info("Pod %s is unschedulable for now: %s", spawner.pod_name, message)
        if now - since >= timeout:
            reason = unschedulable_reason(message)
            spawner.log.warning("Giving up on pod %s after %.0f s unschedulable: %s",
                                spawner.pod_name, now - since, message)
            raise StartFailed(unschedulable_message(reason, now - since))
