"""The culler's few Kubernetes calls (kubernetes-asyncio): read pod labels, find home claims,
create/list/delete VolumeSnapshots. Never touches claims or volumes beyond reading them."""

from __future__ import annotations

import asyncio
import os

SNAPSHOT_GROUP, SNAPSHOT_VERSION, SNAPSHOT_PLURAL = "snapshot.storage.k8s.io", "v1", "volumesnapshots"
MANAGED_BY = "app.kubernetes.io/managed-by=ptjaas-culler"


class Kube:
    """Lazily configured client: in-cluster when running in a pod, else $KUBECONFIG."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self._client = None
        self._lock = asyncio.Lock()

    @staticmethod
    def available() -> bool:
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")
                    or os.path.exists(os.path.expanduser("~/.kube/config")))

    async def client(self):
        async with self._lock:
            if self._client is None:
                from kubernetes_asyncio import client, config

                if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
                    config.load_incluster_config()
                else:  # $KUBECONFIG now (kubernetes-asyncio reads it once, at its import)
                    await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
                self._client = client.ApiClient()
            return self._client

    async def close(self):
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _core(self):
        from kubernetes_asyncio import client

        return client.CoreV1Api(await self.client())

    async def _custom(self):
        from kubernetes_asyncio import client

        return client.CustomObjectsApi(await self.client())

    async def server_pod_labels(self) -> dict[tuple[str, str], dict]:
        """{(username, servername): pod labels} of the single-user pods (one list call)."""
        core = await self._core()
        pods = await core.list_namespaced_pod(self.namespace, label_selector="component=singleuser-server")
        out = {}
        for pod in pods.items:
            ann = pod.metadata.annotations or {}
            user = ann.get("hub.jupyter.org/username")
            if user:
                out[(user, ann.get("hub.jupyter.org/servername", ""))] = dict(pod.metadata.labels or {})
        return out

    async def home_claims(self, username: str, user_label: str) -> list[str]:
        """Names of the spawner's home claims of a user (label ptjaas.io/user, annotation
        ptjaas.io/username = the exact name)."""
        core = await self._core()
        pvcs = await core.list_namespaced_persistent_volume_claim(
            self.namespace, label_selector=f"ptjaas.io/user={user_label}")
        names = []
        for pvc in pvcs.items:
            ann = pvc.metadata.annotations or {}
            if ann.get("ptjaas.io/username", username) == username:
                names.append(pvc.metadata.name)
        return sorted(names)

    async def claim_exists(self, name: str) -> bool:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await (await self._core()).read_namespaced_persistent_volume_claim(name, self.namespace)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    async def create_snapshot(self, body: dict) -> None:
        await (await self._custom()).create_namespaced_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, self.namespace, SNAPSHOT_PLURAL, body)

    async def culler_snapshots(self) -> list[dict]:
        listing = await (await self._custom()).list_namespaced_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, self.namespace, SNAPSHOT_PLURAL, label_selector=MANAGED_BY)
        return listing.get("items", [])

    async def delete_snapshot(self, name: str) -> None:
        await (await self._custom()).delete_namespaced_custom_object(
            SNAPSHOT_GROUP, SNAPSHOT_VERSION, self.namespace, SNAPSHOT_PLURAL, name)
