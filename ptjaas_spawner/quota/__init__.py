"""Quotas: per-user and pooled per-group budgets of GPUs, guaranteed CPU and memory, servers.

- ``budget``: the pure arithmetic (policy, decisions, form availability, reports).
- ``ledger``: who holds what, with running totals per user and per pool (pure).
- ``mixin.QuotaMixin``: enforcement in the spawner (race-free reservation, release on stop and
  failure, rebuild from KubeSpawner's pod reflector after a hub restart, readable ``403 exceeded quota``).
- ``metrics``: Prometheus gauges/counters on the hub's ``/hub/metrics``.
- ``handlers``: the admin page ``/hub/ptjaas/usage`` and JSON ``/hub/api/ptjaas/usage``.
- ``resourcequota``: Kubernetes ResourceQuota manifests from the same budgets (defence in depth).
"""

from .budget import Amount, QuotaConfigError, QuotaPolicy
from .mixin import QuotaExceeded, QuotaMixin

__all__ = ["Amount", "QuotaConfigError", "QuotaExceeded", "QuotaMixin", "QuotaPolicy"]
