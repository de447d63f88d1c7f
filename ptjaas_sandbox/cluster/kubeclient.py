"""What the node agent, the provisioner and the snapshotter add to ptjaas's one Kubernetes client
(``ptjaas_spawner.kube.Kube``: get, create, patch, delete by path): informers (list, then
``kubernetes_asyncio.watch`` from the list's resourceVersion, relisting after a 410), their
User-Agent, an event recorder, object paths, stopping.
"""

import asyncio
import logging
import os
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio.watch import Watch

from ptjaas_spawner.kube import UNREACHABLE, ApiException

from .store import now_iso

log = logging.getLogger("ptjaas.cluster")
# the User-Agent of the sandbox's own node agent and provisioner: the embedded server leaves them
# out of its request statistics (a benchmark counts the hub's requests)
SYSTEM_AGENT = "ptjaas-sandbox-node"


async def inform(kube, path: str, on_event, params=None, on_sync=None) -> None:
    """Until ``kube.closing``: list ``path``, then watch it from the list's resourceVersion;
    ``on_event(type, obj)`` for each change, ``on_sync(objects)`` after each (re)list.
    Watches again from the last resourceVersion seen when the server ends a watch; relists
    after 410 Gone and after errors (backing off up to 5 s)."""
    params = dict(params or {})
    delay = 0.2
    while not kube.closing:
        try:
            listing = await kube.request("GET", path, params)
            if on_sync is not None:
                on_sync(listing.get("items") or [])
            rv = listing["metadata"]["resourceVersion"]
            delay = 0.2
            while rv is not None and not kube.closing:
                rv = await _watch(kube, path, params, rv, on_event)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an informer outlives an API server outage
            if kube.closing:
                return
            log.debug("informer %s: %s; retrying in %.1fs", path, e, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5)


async def _watch(kube, path: str, params: dict, rv: str, on_event) -> str | None:
    """One watch (``kubernetes_asyncio.watch``) until the server ends it: the last
    resourceVersion seen (bookmarks too), or None after 410 Gone."""

    async def watch_call(resource_version, timeout_seconds, **_):
        resp = await kube.call("GET", path, dict(
            params, watch="true", resourceVersion=resource_version, allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds)), timeout=aiohttp.ClientTimeout(total=330, connect=10))
        if resp.status >= 400:
            text = (await resp.read()).decode("utf8", "replace")
            resp.release()
            error = ApiException(status=resp.status, reason=text[:500])
            error.body = text
            raise error
        return resp

    watch = Watch()
    received = False
    try:
        async for event in watch.stream(watch_call, resource_version=rv, timeout_seconds=300):
            received = True
            if event["type"] == "BOOKMARK":
                continue
            try:
                on_event(event["type"], event["raw_object"])
            except Exception:  # noqa: BLE001 - one bad event must not end the informer
                log.exception("informer %s: handler failed", path)
    except ApiException as e:
        if e.status == 410:
            return None
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        if not received:
            raise ApiException(status=UNREACHABLE, reason=f"{type(e).__name__}: {e}") from None
    finally:
        await watch.close()
    return watch.resource_version or rv


class EventSink:
    """Records core/v1 Events in order, one at a time; a repeated (object, reason, message) bumps
    the count of the event already written, as client-go's event recorder does."""

    def __init__(self, client, component):
        self.client = client
        self.component = component
        self.queue = asyncio.Queue()
        self.names = {}   # (uid, reason, message) -> [event namespace, event name, count]
        self.task = asyncio.ensure_future(self._run())

    def record(self, obj, event_type, reason, message, host=None):
        self.queue.put_nowait((obj, event_type, reason, message, host))

    def close(self):
        self.task.cancel()

    async def _run(self):
        while True:
            item = await self.queue.get()
            try:
                await self._send(*item)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("event %s for %s not recorded: %s", item[2], item[0]["metadata"]["name"], e)

    async def _send(self, obj, event_type, reason, message, host):
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta["uid"], reason, message)
        now = now_iso()
        known = self.names.get(key)
        if known is not None:
            known[2] += 1
            try:
                await self.client.patch(f"/api/v1/namespaces/{known[0]}/events/{known[1]}",
                                        {"count": known[2], "lastTimestamp": now})
                return
            except ApiException as e:
                if e.status != 404:   # gone (its TTL ran out): written anew below
                    raise
        source = {"component": self.component, **({"host": host} if host else {})}
        event = {"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": f"{meta['name']}.{os.urandom(8).hex()}", "namespace": namespace},
                 "involvedObject": {"kind": obj["kind"], "namespace": meta.get("namespace", ""), "name": meta["name"],
                                    "uid": meta["uid"], "apiVersion": obj["apiVersion"],
                                    "resourceVersion": meta.get("resourceVersion")},
                 "reason": reason, "message": message, "type": event_type, "count": 1, "source": source,
                 "firstTimestamp": now, "lastTimestamp": now, "reportingComponent": self.component,
                 "reportingInstance": host or ""}
        created = await self.client.create(f"/api/v1/namespaces/{namespace}/events", event)
        self.names[key] = [namespace, created["metadata"]["name"], 1]


async def stop_tasks(tasks, timeout=2):
    """Let informers whose client is closing end by themselves (their watches close with the
    server), then cancel what is left (a cancelled HTTP fetch makes tornado log an error)."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()


def object_path(api_version, plural, namespace=None, name=None, subresource=None):
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name)}"
    if subresource:
        base += f"/{subresource}"
    return base
