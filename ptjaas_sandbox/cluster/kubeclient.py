"""A small asynchronous Kubernetes REST client (JSON over HTTP(S), credentials from a kubeconfig).

What the node agent and the volume provisioner use to talk to an API server, embedded or real,
exactly as a kubelet or an external provisioner would: get, create, patch, delete, and informers
(list, then watch from the list's resourceVersion, relisting after a 410).
"""

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
from urllib.parse import quote, urlencode

import aiohttp
import yaml

from .store import now_iso

log = logging.getLogger("ptjaas.cluster")
# the User-Agent of the sandbox's own node agent and provisioner: the embedded server leaves them
# out of its request statistics (a benchmark counts the hub's requests)
SYSTEM_AGENT = "ptjaas-sandbox-node"


class ApiError(Exception):
    def __init__(self, code, body):
        self.code = code
        self.body = body
        try:
            self.status = json.loads(body)
        except (TypeError, ValueError):
            self.status = {}
        super().__init__(f"{code}: {self.status.get('message') or body!r}"[:500])


def _materialize(entry, key, data_key, directory):
    """A file path for a kubeconfig credential given either as a path or inline (base64 ``-data``)."""
    if entry.get(key):
        return entry[key]
    if entry.get(data_key):
        fd, path = tempfile.mkstemp(dir=directory, prefix="kubeclient-")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(entry[data_key]))
        return path
    return None


class KubeClient:
    """Keeps its connections alive (aiohttp), as client-go does: a TLS handshake per request
    cost the embedded cluster more CPU than the requests themselves."""

    def __init__(self, server, ca_file=None, cert_file=None, key_file=None, token=None, user_agent=SYSTEM_AGENT):
        self.server = server.rstrip("/")
        self.token = token
        self.user_agent = user_agent
        self.closing = False   # set before the server goes: informers then end instead of retrying
        self.ssl = None
        if self.server.startswith("https:"):
            self.ssl = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                self.ssl.load_cert_chain(cert_file, key_file)
        self._session = None   # made on first use, on the loop that uses it

    @property
    def http(self):
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl or False, limit=64))
        return self._session

    @classmethod
    def from_kubeconfig(cls, path):
        with open(path) as f:
            config = yaml.safe_load(f)
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next((u["user"] for u in config.get("users") or [] if u["name"] == context.get("user")), {}) or {}
        directory = os.path.dirname(os.path.abspath(path))
        return cls(cluster["server"],
                   ca_file=_materialize(cluster, "certificate-authority", "certificate-authority-data", directory),
                   cert_file=_materialize(user, "client-certificate", "client-certificate-data", directory),
                   key_file=_materialize(user, "client-key", "client-key-data", directory),
                   token=user.get("token"))

    async def aclose(self):
        self.closing = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close(self):
        """Stop (where no loop can wait for ``aclose``: the connections close with the loop)."""
        self.closing = True
        if self._session is not None:
            try:
                asyncio.get_running_loop().create_task(self._session.close())
            except RuntimeError:
                pass

    # --- requests ------------------------------------------------------------------------
    def _request(self, method, path, params=None, body=None, content_type="application/json"):
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = content_type
            body = json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            body = ""
        return url, headers, body

    async def request(self, method, path, params=None, body=None, content_type="application/json", timeout=30):
        url, headers, data = self._request(method, path, params, body, content_type)
        try:
            async with self.http.request(method, url, headers=headers, data=data,
                                         timeout=aiohttp.ClientTimeout(total=timeout, connect=10)) as response:
                text = await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:   # no answer: 599, as tornado had it
            raise ApiError(599, f"{type(e).__name__}: {e}") from None
        if status >= 400:
            raise ApiError(status, text.decode(errors="replace"))
        return json.loads(text) if text else None

    async def get(self, path, params=None):
        """The object at ``path``, or None where it does not exist."""
        try:
            return await self.request("GET", path, params)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def create(self, path, obj):
        return await self.request("POST", path, body=obj)

    async def patch(self, path, patch):
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def delete(self, path, options=None):
        try:
            return await self.request("DELETE", path, body=options)
        except ApiError as e:
            if e.code in (404, 409):   # gone already, or no longer the object we meant (uid precondition)
                return None
            raise

    # --- informers -----------------------------------------------------------------------
    async def inform(self, path, on_event, params=None, on_sync=None):
        """Forever: list ``path``, then watch it; ``on_event(type, obj)`` for each change, and
        ``on_sync(objects)`` after each (re)list. Reconnects after errors, relists after 410."""
        params = dict(params or {})
        delay = 0.2
        while not self.closing:
            try:
                listing = await self.request("GET", path, params)
                if on_sync is not None:
                    on_sync(listing.get("items") or [])
                rv = listing["metadata"]["resourceVersion"]
                delay = 0.2
                while not self.closing:
                    rv = await self._watch(path, dict(params, watch="true", resourceVersion=rv,
                                                      allowWatchBookmarks="true", timeoutSeconds="300"), on_event)
                    if rv is None:
                        break   # 410 Gone: relist
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.closing:
                    return
                log.debug("informer %s: %s; retrying in %.1fs", path, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)

    async def _watch(self, path, params, on_event):
        buffer = bytearray()
        state = {"rv": params["resourceVersion"], "gone": False, "received": False}

        def chunk(data):
            state["received"] = True
            buffer.extend(data)
            while b"\n" in buffer:
                line, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        state["gone"] = True
                    continue
                state["rv"] = (obj.get("metadata") or {}).get("resourceVersion") or state["rv"]
                if event.get("type") != "BOOKMARK":
                    try:
                        on_event(event["type"], obj)
                    except Exception:
                        log.exception("informer %s: handler failed", path)

        url, headers, _ = self._request("GET", path, params)
        try:
            async with self.http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(
                    total=330, connect=10, sock_read=None)) as response:
                if response.status == 410:
                    return None
                if response.status >= 400:
                    raise ApiError(response.status, (await response.read()).decode(errors="replace"))
                async for data in response.content.iter_any():
                    chunk(data)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            if not state["received"]:
                raise ApiError(599, f"{type(e).__name__}: {e}") from None
        return None if state["gone"] else state["rv"]


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
            except ApiError as e:
                if e.code != 404:   # gone (its TTL ran out): written anew below
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
