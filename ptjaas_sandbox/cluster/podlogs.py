"""``pods/{name}/log``: the current or previous instance's log, or (``follow``) a stream of what the
running instance writes, ending when that instance does, as a kubelet serves it."""

import asyncio
import os

from tornado.iostream import StreamClosedError

from .resources import BY_PATH


async def serve(self, pod):
    """GET pods/{name}/log for ``self`` (the request handler): a plain read, ``previous``, or ``follow``."""
    kubelet = self.cluster.kubelet
    container = self.get_query_argument("container", None)
    previous = self.get_query_argument("previous", "") in ("1", "true", "True")
    tail = self.get_query_argument("tailLines", None)
    text = kubelet.read_log(pod, container, tail, previous=previous) if previous else \
        kubelet.read_log(pod, container, tail)
    self.set_header("Content-Type", "text/plain")
    if self.get_query_argument("follow", "") not in ("1", "true", "True") or previous:
        return self.finish(text)
    # follow: stream what the container writes until it stops (or the pod goes away)
    name = container or pod["spec"]["containers"][0]["name"]
    path = kubelet.log_path(pod, name)
    offset = _size(path)
    self.write(text)
    await self.flush()
    uid = pod["metadata"]["uid"]
    started = _container_started(pod, name)
    if started is None:   # not running (crashed, back-off): what it wrote, as for a plain read
        return self.finish()
    self.cluster.open_watches.add(self)
    self.cut_watch = False
    try:
        while not self.cut_watch:
            chunk, offset = _read_from(path, offset)
            if chunk:
                self.write(chunk)
                await self.flush()
                continue
            current = self.cluster.store.get(pod_type(), pod["metadata"]["namespace"], pod["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != uid or _container_started(current, name) != started:
                chunk, offset = _read_from(path, offset)
                if chunk:
                    self.write(chunk)
                break
            await asyncio.sleep(0.1)
        self.finish()
    except StreamClosedError:
        pass
    finally:
        self.cluster.open_watches.discard(self)



def pod_type():
    return BY_PATH[("", "v1", "pods")]


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return b"", offset
    return data, offset + len(data)


def _container_started(pod, name):
    """When the running instance of a container started (None when it is not running): a
    followed log ends when that instance does."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == name:
            running = (cs.get("state") or {}).get("running")
            return (running.get("startedAt"), cs.get("restartCount")) if running is not None else None
    return None
