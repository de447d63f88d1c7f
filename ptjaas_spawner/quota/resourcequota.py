"""Kubernetes ResourceQuota manifests from the quota budgets (defence in depth). Pure.

The hub's ledger is the primary, race-free enforcement. A ResourceQuota in the namespace makes
the API server itself refuse a pod past the budget (``403 exceeded quota``), which
``QuotaMixin`` turns into a readable message with nothing half-created. Apply the manifests
with kubectl: ``python -m ptjaas_spawner.quota.resourcequota jupyterhub_config.py --namespace
jhub | kubectl apply -f -`` (one quota summing the group pools of a shared namespace).
"""

from __future__ import annotations

from ..quantity import format_quantity
from .budget import QuotaConfigError, QuotaPolicy


def quota_manifest(name: str, namespace: str, limits: dict, gpu_resource: str = "nvidia.com/gpu") -> dict:
    """A ResourceQuota with ``limits`` (``{"gpus", "cpu", "memory", "servers"}``) as hard limits
    on the requests of pods (``servers`` limits the number of pods)."""
    hard = {}
    if limits.get("gpus") is not None:
        hard[f"requests.{gpu_resource}"] = str(limits["gpus"])
    if limits.get("cpu") is not None:
        hard["requests.cpu"] = format_quantity(round(limits["cpu"], 3), "cpu")
    if limits.get("memory") is not None:
        hard["requests.memory"] = format_quantity(limits["memory"], "memory")
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


def main(argv=None):
    """Print the ResourceQuota for a namespace from a hub config's ``c.PtjaasSpawner.quota_*``:
    ``python -m ptjaas_spawner.quota.resourcequota jupyterhub_config.py --namespace jhub | kubectl apply -f -``"""
    import argparse
    import json
    import os

    from traitlets.config.loader import PyFileConfigLoader

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("config", help="a jupyterhub_config.py")
    p.add_argument("--namespace", default="default")
    p.add_argument("--gpu-resource", default="nvidia.com/gpu")
    args = p.parse_args(argv)
    path = os.path.abspath(args.config)
    cfg = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path)).load_config()
    section = cfg.PtjaasSpawner
    try:
        policy = QuotaPolicy.from_config(
            section.get("quota_default"), section.get("quota_users"), section.get("quota_groups")
        )
    except QuotaConfigError as e:
        raise SystemExit(f"{args.config}: {e}")
    manifest = namespace_quota(policy, args.namespace, args.gpu_resource)
    if manifest is None:
        raise SystemExit("no group budgets (c.PtjaasSpawner.quota_groups) in " + args.config)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
