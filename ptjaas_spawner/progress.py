"""What the progress page shows while a server starts: ptjaas's notes, then the events of the
pod this start made, each once.

KubeSpawner's own ``progress()`` picks the events of any pod of the server's name and hides the
older ones with a marker (``_last_event``) that its ``_start`` sets just before it makes the pod.
A ptjaas start plans and waits for a new home volume before that, so for those seconds the events
of the previous pod of the same name (an API server keeps events an hour) showed as this start's,
and when the marker was then set the list shrank under the page's position and new events went
missing. Here an event is shown only if it names this start's pod by uid (an event that arrives
before the pod reaches the hub's pod watch is shown once it has), once per event. The scheduler's
"unbound immediate PersistentVolumeClaims" reads as one plain line about the home volume.
KubeSpawner's patience message ("still waiting after N seconds") is kept as it words it.

No API requests: pods and events come from KubeSpawner's reflectors (``eventindex``).
"""

import asyncio
import textwrap
import time

from .eventindex import pod_events
from .startfailure import events_of, progress_message


def _event_line(event):
    when = event.get("lastTimestamp") or event.get("eventTime")
    return "%s [%s] %s" % (when, event.get("type"), event.get("message") or event.get("note") or "")


def this_start_pod(spawner):
    """The server's pod as the hub's pod watch holds it now (None before it is made)."""
    reflector = spawner.pod_reflector
    return reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}") if reflector else None


async def start_progress(spawner, interval=1.0):
    """The progress events of the start that is running (``PtjaasSpawner.start_future``)."""
    if spawner.events_enabled:
        await spawner._start_watching_events()  # as KubeSpawner's progress() does (kubespawner 7.1.0)
    began = time.perf_counter()
    last_patience = 0.0
    notes, sent = None, 0
    shown, said = set(), set()
    percent = 0.0
    while True:
        future = spawner.start_future  # set by PtjaasSpawner.start()
        done = future is not None and future.done()
        if notes is not spawner._notes:  # a new start began after this page did: its notes
            notes, sent = spawner._notes, 0
        while sent < len(notes):
            yield {"message": notes[sent]}
            sent += 1
        elapsed = time.perf_counter() - began
        threshold = spawner.slow_spawn_message_threshold
        if threshold > 0 and elapsed >= threshold and elapsed >= last_patience + spawner.slow_spawn_message_frequency:
            last_patience = elapsed
            yield {"message": textwrap.dedent(spawner.slow_spawn_message).format(seconds=int(elapsed))}
        pod = this_start_pod(spawner) if spawner.events_enabled else None
        if pod is not None:
            for event in events_of(pod, pod_events(spawner), kind="Pod"):
                uid = (event.get("metadata") or {}).get("uid")
                if uid in shown:
                    continue
                shown.add(uid)
                percent += (90 - percent) / 3  # 30 50 63 72 ... towards 90, as KubeSpawner moves it
                plain = progress_message(event)
                if plain and (plain in said or plain in notes):
                    continue
                said.add(plain)
                yield {"progress": int(percent), "raw_event": event, "message": plain or _event_line(event)}
        if done:
            break
        await asyncio.sleep(interval)
    while sent < len(spawner._notes) and notes is spawner._notes:
        yield {"message": notes[sent]}
        sent += 1
