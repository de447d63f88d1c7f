"""Prometheus metrics of the quota layer, registered in the hub process (served on the hub's
``/hub/metrics`` with JupyterHub's own metrics).

The gauges follow the ledger change by change (``charge_added`` / ``charge_removed`` are its
callbacks): a start or stop updates one series, whatever the number of running servers. A
(group, size) series exists while some server holds it, as a full recount would give.
"""

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

# (group, size) -> [gpus, servers]: what the gauges show (a server outside any pool: group "-")
_ROWS: dict = {}


def _row_key(charge) -> tuple:
    return (charge.pool or "-", charge.size or "-")


def charge_added(charge):
    key = _row_key(charge)
    row = _ROWS.setdefault(key, [0, 0])
    row[0] += charge.amount.gpus
    row[1] += 1
    GPUS_IN_USE.labels(*key).set(row[0])
    SERVERS_IN_USE.labels(*key).set(row[1])


def charge_removed(charge):
    key = _row_key(charge)
    row = _ROWS[key]
    row[0] -= charge.amount.gpus
    row[1] -= 1
    if row[1] <= 0:
        del _ROWS[key]
        GPUS_IN_USE.remove(*key)
        SERVERS_IN_USE.remove(*key)
    else:
        GPUS_IN_USE.labels(*key).set(row[0])
        SERVERS_IN_USE.labels(*key).set(row[1])


def count_refusal(reason: str):
    REFUSALS.labels(reason=reason).inc()
