"""Kubernetes ResourceQuota manifests from the quota budgets (defence in depth). Pure.

The hub's ledger is the primary, race-free enforcement. A ResourceQuota in the namespace makes
the API server itself refuse a pod past the budget (``403 exceeded quota``), which
``QuotaMixin`` turns into a readable message with nothing half-created. Apply the manifests
with kubectl (``ptjaas_spawner.quota.resourcequota.namespace_quota(...)`` as YAML/JSON).
"""

from __future__ import annotations

from .budget import QuotaPolicy, fmt


def quota_manifest(name: str, namespace: str, limits: dict, gpu_resource: str = "nvidia.com/gpu") -> dict:
    """A ResourceQuota with ``limits`` (``{"gpus", "cpu", "memory", "servers"}``) as hard limits
    on the requests of pods (``servers`` limits the number of pods)."""
    hard = {}
    if limits.get("gpus") is not None:
        hard[f"requests.{gpu_resource}"] = str(limits["gpus"])
    if limits.get("cpu") is not None:
        hard["requests.cpu"] = fmt("cpu", limits["cpu"])
    if limits.get("memory") is not None:
        hard["requests.memory"] = str(int(limits["memory"]))
    if limits.get("servers") is not None:
        hard["pods"] = str(limits["servers"])
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "ptjaas"}},
        "spec": {"hard": hard},
    }


def namespace_quota(policy: QuotaPolicy, namespace: str, gpu_resource: str = "nvidia.com/gpu") -> dict | None:
    """One ResourceQuota for a namespace shared by all group pools: the sum of the pools, per
    resource that every pool limits (a resource some pool leaves unlimited is not limited).
    None when there are no pools."""
    if not policy.pools:
        return None
    total = {}
    for r in ("gpus", "cpu", "memory", "servers"):
        values = [p.get(r) for p in policy.pools.values()]
        if all(v is not None for v in values):
            total[r] = sum(values)
    return quota_manifest("ptjaas-groups", namespace, total, gpu_resource)
