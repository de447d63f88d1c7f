"""Accounting of every server run and budgets over time (GPU-hours, CPU-hours).

- ``runs``: runs summed into windows, per day, per user or team (pure);
- ``store``: the append-only JSON-lines record beside the hub database (``accounting_file``);
- ``mixin.AccountingMixin``: the spawner's hooks (start, stop, poll), the budget check;
- ``metrics``: ``ptjaas_gpu_seconds_total`` / ``ptjaas_cpu_seconds_total``;
- ``svg``, ``handlers``: the daily charts on ``/hub/ptjaas/usage``, ``/hub/ptjaas/usage/me``, the CSV.

The budgets' policy is ``ptjaas_spawner.quota.timebudget`` and its window arithmetic
``quota.runs`` (pure); the usage pages are ``usagepages``.
"""
