"""ptjaas's one Kubernetes client: plain-JSON calls on a ``kubernetes_asyncio`` ApiClient.

Every Kubernetes call of ptjaas goes through ``Kube``: the hub's (home claims, snapshots,
snapshot views; with KubeSpawner's shared ApiClient, so the hub keeps one connection pool),
the culler's and the scheduled-snapshot service's (a client of their own, configured in the
cluster or from ``$KUBECONFIG``), ``ptjaas migrate-home``'s, and the sandbox's node agent,
provisioner and snapshotter (by path; their informers, on ``kubernetes_asyncio.watch``, are in
``ptjaas_sandbox.cluster.kubeclient``).

Bodies come back as plain JSON (dicts), never model objects: cheaper for the hub's CPU, and
what the policy modules take. Errors are ``ApiException`` with ``status`` and the response's
``body`` (the API server's Status as text). Meanings kept from the callers: a read of a missing
object is None (404); a delete returns True when the object is gone (deleted now, or already:
404) and False when it is no longer the one meant (409, a uid/resourceVersion precondition);
every other error is raised.
"""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from .objects import SNAPSHOT_GROUP, SNAPSHOT_PLURAL, SNAPSHOT_VERSION

__all__ = ["ApiException", "Kube", "call_json", "configured", "default_class", "service_api_client"]

#: the status of an ApiException raised where the API server did not answer (as tornado had it)
UNREACHABLE = 599

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


async def call_json(method, *args, **kwargs):
    """Call a ``kubernetes_asyncio`` API method and return its body as plain JSON ({} for an
    empty body); raise ApiException (``status``, ``body``) on an error status."""
    resp = await method(*args, _preload_content=False, **kwargs)
    data = await resp.read()
    if not 200 <= resp.status <= 299:
        text = data.decode("utf8", "replace")
        error = ApiException(status=resp.status, reason=f"{resp.reason}: {text[:500]}")
        error.body = text
        raise error
    return json.loads(data) if data else {}


def default_class(classes: list[dict]) -> dict | None:
    """The cluster's default StorageClass among ``classes`` (by its annotation), or None."""
    for sc in classes:
        ann = (sc.get("metadata") or {}).get("annotations") or {}
        if any(ann.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS):
            return sc
    return None


def configured() -> bool:
    """Is there a Kubernetes to talk to (in a pod, or a kubeconfig)?"""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")
                or os.path.exists(os.path.expanduser("~/.kube/config")))


async def service_api_client(kubeconfig: str | None = None, user_agent: str | None = None) -> client.ApiClient:
    """An ApiClient of its own for a service or command (not the hub: the hub uses
    KubeSpawner's shared one): in-cluster when running in a pod without $KUBECONFIG, else the
    kubeconfig (``kubeconfig``, or $KUBECONFIG read now: kubernetes_asyncio reads it once, at
    import)."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"),
                                      client_configuration=configuration, persist_config=False)
    api_client = client.ApiClient(configuration)
    if user_agent:
        api_client.user_agent = user_agent
    return api_client


class Kube:
    """The Kubernetes calls of ptjaas, on one ApiClient, in ``namespace`` unless told another.

    ``Kube(namespace, api_client)`` uses a client someone else owns (the hub's shared one);
    ``Kube(namespace)`` makes its own on first use (``service_api_client``; ``kubeconfig``, or
    a ready ``configuration``, chooses the cluster), which ``close()`` closes. ``closing`` is
    set by ``close()`` (or by its owner before it stops a server): informers then end instead of
    retrying."""

    def __init__(self, namespace: str = "default", api_client: client.ApiClient | None = None, *,
                 kubeconfig: str | None = None, configuration: client.Configuration | None = None,
                 user_agent: str | None = None):
        self.namespace = namespace
        self._client = api_client
        self._owned = api_client is None
        self._kubeconfig = kubeconfig
        self._configuration = configuration
        self._user_agent = user_agent
        self._lock = asyncio.Lock()
        self.closing = False

    @classmethod
    def for_server(cls, url: str, *, ca_file: str | None = None, token: str | None = None,
                   user_agent: str | None = None) -> "Kube":
        """A client of the API server at ``url`` (TLS verified with ``ca_file``, a bearer token)."""
        configuration = client.Configuration(host=url.rstrip("/"))
        configuration.ssl_ca_cert = ca_file
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return cls(configuration=configuration, user_agent=user_agent)

    async def api_client(self) -> client.ApiClient:
        if self._client is None:
            async with self._lock:  # made on first use, on the loop that uses it
                if self._client is None:
                    if self._configuration is not None:
                        self._client = client.ApiClient(self._configuration)
                        if self._user_agent:
                            self._client.user_agent = self._user_agent
                    else:
                        self._client = await service_api_client(self._kubeconfig, self._user_agent)
        return self._client

    async def close(self) -> None:
        self.closing = True
        if self._owned and self._client is not None:
            await self._client.close()
            self._client = None

    async def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(await self.api_client())

    async def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(await self.api_client())

    async def storage(self) -> client.StorageV1Api:
        return client.StorageV1Api(await self.api_client())

    @staticmethod
    async def _maybe(method, *args, **kwargs):
        """``call_json``, with None for 404."""
        try:
            return await call_json(method, *args, **kwargs)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @staticmethod
    async def _delete(method, *args, **kwargs) -> bool:
        return await Kube._gone(call_json(method, *args, **kwargs))

    @staticmethod
    async def _gone(deletion) -> bool:
        """Await a delete: True when it is gone (now, or already: 404), False when the object
        there is no longer the one meant (409: a precondition failed)."""
        try:
            await deletion
        except ApiException as e:
            if e.status == 409:
                return False
            if e.status != 404:
                raise
        return True

    # ---- claims ----
    async def read_claim(self, name: str, namespace: str | None = None) -> dict | None:
        return await self._maybe((await self.core()).read_namespaced_persistent_volume_claim, name,
                                 namespace or self.namespace)

    async def list_claims(self, label_selector: str, namespace: str | None = None) -> list[dict]:
        out = await call_json((await self.core()).list_namespaced_persistent_volume_claim,
                              namespace or self.namespace, label_selector=label_selector)
        return out.get("items") or []

    async def create_claim(self, body: dict, namespace: str | None = None) -> dict:
        return await call_json((await self.core()).create_namespaced_persistent_volume_claim,
                               namespace or self.namespace, body)

    async def patch_claim(self, name: str, patch: dict, namespace: str | None = None) -> dict:
        return await call_json((await self.core()).patch_namespaced_persistent_volume_claim, name,
                               namespace or self.namespace, patch)

    async def delete_claim(self, name: str, preconditions: dict | None = None,
                           namespace: str | None = None) -> bool:
        body = {"preconditions": preconditions} if preconditions else None
        return await self._delete((await self.core()).delete_namespaced_persistent_volume_claim, name,
                                  namespace or self.namespace, body=body)

    # ---- pods, events ----
    async def list_pods(self, label_selector: str | None = None, namespace: str | None = None) -> list[dict]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        out = await call_json((await self.core()).list_namespaced_pod, namespace or self.namespace, **kwargs)
        return out.get("items") or []

    async def read_pod(self, name: str, namespace: str | None = None) -> dict | None:
        return await self._maybe((await self.core()).read_namespaced_pod, name, namespace or self.namespace)

    async def create_pod(self, body: dict, namespace: str | None = None) -> dict:
        return await call_json((await self.core()).create_namespaced_pod, namespace or self.namespace, body)

    async def delete_pod(self, name: str, uid: str | None = None, namespace: str | None = None) -> bool:
        body = {"gracePeriodSeconds": 0, **({"preconditions": {"uid": uid}} if uid else {})}
        return await self._delete((await self.core()).delete_namespaced_pod, name, namespace or self.namespace,
                                  body=body)

    async def list_events(self, field_selector: str, namespace: str | None = None) -> list[dict]:
        out = await call_json((await self.core()).list_namespaced_event, namespace or self.namespace,
                              field_selector=field_selector)
        return out.get("items") or []

    # ---- VolumeSnapshots (snapshot.storage.k8s.io/v1) ----
    async def list_snapshots(self, label_selector: str, namespace: str | None = None) -> list[dict]:
        out = await call_json((await self.custom()).list_namespaced_custom_object, SNAPSHOT_GROUP,
                              SNAPSHOT_VERSION, namespace or self.namespace, SNAPSHOT_PLURAL,
                              label_selector=label_selector)
        return out.get("items") or []

    async def read_snapshot(self, name: str, namespace: str | None = None) -> dict | None:
        return await self._maybe((await self.custom()).get_namespaced_custom_object, SNAPSHOT_GROUP,
                                 SNAPSHOT_VERSION, namespace or self.namespace, SNAPSHOT_PLURAL, name)

    async def create_snapshot(self, body: dict, namespace: str | None = None) -> dict:
        return await call_json((await self.custom()).create_namespaced_custom_object, SNAPSHOT_GROUP,
                               SNAPSHOT_VERSION, namespace or self.namespace, SNAPSHOT_PLURAL, body)

    async def delete_snapshot(self, name: str, namespace: str | None = None) -> bool:
        return await self._delete((await self.custom()).delete_namespaced_custom_object, SNAPSHOT_GROUP,
                                  SNAPSHOT_VERSION, namespace or self.namespace, SNAPSHOT_PLURAL, name)

    # ---- StorageClasses ----
    async def read_storage_class(self, name: str) -> dict | None:
        return await self._maybe((await self.storage()).read_storage_class, name)

    async def list_storage_classes(self) -> list[dict]:
        return (await call_json((await self.storage()).list_storage_class)).get("items") or []

    async def storage_class_name(self, claim: dict | None, configured_class: str | None = None) -> str | None:
        """The StorageClass name of a claim, or (with no claim yet) of the claim that would be
        made: ``configured_class``, else the cluster's default (the only case that lists)."""
        name = ((claim or {}).get("spec") or {}).get("storageClassName") or (None if claim else configured_class)
        if name:
            return name
        default = default_class(await self.list_storage_classes())
        return default["metadata"]["name"] if default else None

    # ---- by path: the sandbox's node agent, provisioner and snapshotter (as a kubelet is) ----
    async def call(self, method: str, path: str, params=None, body=None, content_type="application/json",
                    timeout: aiohttp.ClientTimeout | None = None):
        """The raw response of one request; ApiException(UNREACHABLE) where no answer came."""
        api = await self.api_client()
        try:
            return await api.call_api(
                path, method, query_params=dict(params or {}),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout or aiohttp.ClientTimeout(total=30, connect=10))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ApiException(status=UNREACHABLE, reason=f"{type(e).__name__}: {e}") from None

    async def request(self, method: str, path: str, params=None, body=None, content_type="application/json"):
        """One request by path (``/api/v1/...``, ``/apis/group/version/...``): its JSON body (or None)."""
        resp = await self.call(method, path, params, body, content_type)
        try:
            data = await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise ApiException(status=UNREACHABLE, reason=f"{type(e).__name__}: {e}") from None
        finally:
            resp.release()
        if resp.status >= 400:
            text = data.decode("utf8", "replace")
            error = ApiException(status=resp.status, reason=f"{resp.reason}: {text[:500]}")
            error.body = text
            raise error
        return json.loads(data) if data else None

    async def get(self, path: str, params=None):
        """The object at ``path``, or None where it does not exist."""
        try:
            return await self.request("GET", path, params)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create(self, path: str, obj: dict):
        return await self.request("POST", path, body=obj)

    async def patch(self, path: str, patch: dict):
        """A JSON merge patch."""
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def delete(self, path: str, options: dict | None = None) -> bool:
        """As the other deletes: True when gone, False when no longer the object meant (409)."""
        return await self._gone(self.request("DELETE", path, body=options))
