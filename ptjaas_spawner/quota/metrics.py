"""Prometheus metrics of the quota layer, registered in the hub process (served on the hub's
``/hub/metrics`` with JupyterHub's own metrics)."""

from prometheus_client import Counter, Gauge

GPUS_IN_USE = Gauge(
    "ptjaas_gpus_in_use", "GPUs held by starting and running servers", ["group", "size"]
)
SERVERS_IN_USE = Gauge(
    "ptjaas_servers_in_use", "Starting and running servers", ["group", "size"]
)
REFUSALS = Counter(
    "ptjaas_quota_refusals", "Server starts refused by a quota, by reason", ["reason"]
)
for _reason in ("user", "pool", "resourcequota"):
    REFUSALS.labels(reason=_reason)


def update_metrics(ledger):
    """Recompute the gauges from the ledger (a server outside any pool counts as group "-")."""
    rows = {}
    for c in ledger.holders():
        key = (c.pool or "-", c.size or "-")
        gpus, servers = rows.get(key, (0, 0))
        rows[key] = (gpus + c.amount.gpus, servers + 1)
    GPUS_IN_USE.clear()
    SERVERS_IN_USE.clear()
    for (group, size), (gpus, servers) in rows.items():
        GPUS_IN_USE.labels(group=group, size=size).set(gpus)
        SERVERS_IN_USE.labels(group=group, size=size).set(servers)


def count_refusal(reason: str):
    REFUSALS.labels(reason=reason).inc()
