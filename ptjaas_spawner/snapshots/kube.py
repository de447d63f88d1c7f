"""The Kubernetes calls for snapshots (kubernetes-asyncio, plain JSON): list/create/delete
VolumeSnapshots, read a claim's StorageClass, create claims from a snapshot, label a claim,
delete a snapshot-view claim. Used by the hub (with the spawner's API client) and by the
scheduled-snapshot service (with its own)."""

from __future__ import annotations

import asyncio
import json

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from . import policy

# the custom resource these calls touch (spelled out: tests/test_manifests.py checks the RBAC for it)
PLURAL = "volumesnapshots"

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


class SnapshotKube:
    def __init__(self, api_client, namespace: str):
        self.api_client = api_client
        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.storage = client.StorageV1Api(api_client)

    async def _json(self, method, *args, **kwargs):
        resp = await method(*args, _preload_content=False, **kwargs)
        data = await resp.read()
        if not 200 <= resp.status <= 299:
            raise ApiException(status=resp.status, reason=f"{resp.reason}: {data[:500]!r}")
        return json.loads(data)

    # ---- snapshots ----
    async def list_snapshots(self, label_selector: str = policy.SELECTOR) -> list[dict]:
        out = await self._json(self.custom.list_namespaced_custom_object, policy.GROUP, policy.VERSION,
                               self.namespace, PLURAL, label_selector=label_selector)
        return out.get("items") or []

    async def read_snapshot(self, name: str) -> dict | None:
        try:
            return await self._json(self.custom.get_namespaced_custom_object, policy.GROUP, policy.VERSION,
                                    self.namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_snapshot(self, body: dict) -> dict:
        return await self._json(self.custom.create_namespaced_custom_object, policy.GROUP, policy.VERSION,
                                self.namespace, PLURAL, body)

    async def delete_snapshot(self, name: str) -> None:
        try:
            await self.custom.delete_namespaced_custom_object(policy.GROUP, policy.VERSION, self.namespace,
                                                              PLURAL, name)
        except ApiException as e:
            if e.status != 404:
                raise

    async def wait_ready(self, name: str, timeout: float) -> dict:
        """Poll until the snapshot is readyToUse; raise RuntimeError with its error, or on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.1
        while True:
            snap = await self.read_snapshot(name)
            status = (snap or {}).get("status") or {}
            if status.get("readyToUse"):
                return snap
            if snap is None or status.get("error"):
                why = (status.get("error") or {}).get("message") or "it was deleted"
                raise RuntimeError(f"snapshot {name} failed: {why}")
            if loop.time() > deadline:
                raise RuntimeError(f"snapshot {name} was not ready after {timeout:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2)

    # ---- claims ----
    async def read_claim(self, name: str) -> dict | None:
        try:
            return await self._json(self.core.read_namespaced_persistent_volume_claim, name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def list_claims(self, label_selector: str) -> list[dict]:
        out = await self._json(self.core.list_namespaced_persistent_volume_claim, self.namespace,
                               label_selector=label_selector)
        return out.get("items") or []

    async def create_claim(self, body: dict) -> dict:
        return await self._json(self.core.create_namespaced_persistent_volume_claim, self.namespace, body)

    async def label_claim(self, name: str, labels: dict, annotations: dict) -> None:
        await self.core.patch_namespaced_persistent_volume_claim(
            name, self.namespace, {"metadata": {"labels": labels, "annotations": annotations}})

    async def delete_claim(self, name: str, uid: str | None = None) -> None:
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self.core.delete_namespaced_persistent_volume_claim(name, self.namespace, body=body)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    async def storage_class_of(self, claim: dict | None, configured: str | None) -> str | None:
        """The StorageClass of a claim (or, with no claim yet, of the claim that would be made:
        the configured class, else the cluster's default)."""
        name = ((claim or {}).get("spec") or {}).get("storageClassName") or (None if claim else configured)
        if name:
            return name
        classes = (await self._json(self.storage.list_storage_class)).get("items") or []
        for c in classes:
            ann = (c.get("metadata") or {}).get("annotations") or {}
            if any(ann.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS):
                return c["metadata"]["name"]
        return None
