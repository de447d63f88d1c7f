"""Prometheus metrics of the quota layer, registered in the hub process (served on the hub's
``/hub/metrics`` with JupyterHub's own metrics).

The gauges follow the ledger change by change (``charge_added`` / ``charge_removed`` are its
callbacks): a start or stop updates one series, whatever the number of running servers. A
(group, size) series exists while some server holds it, as a full recount would give; so does a
namespace series (the hub's namespace and each team namespace, ``team_namespaces``).
"""

from prometheus_client import Counter, Gauge

GPUS_IN_USE = Gauge(
    "ptjaas_gpus_in_use", "GPUs held by starting and running servers", ["group", "size"]
)
SERVERS_IN_USE = Gauge(
    "ptjaas_servers_in_use", "Starting and running servers", ["group", "size"]
)
NAMESPACE_SERVERS = Gauge(
    "ptjaas_namespace_servers_in_use", "Starting and running servers by namespace", ["namespace"]
)
NAMESPACE_GPUS = Gauge(
    "ptjaas_namespace_gpus_in_use", "GPUs held by starting and running servers by namespace", ["namespace"]
)
NAMESPACE_CPU = Gauge(
    "ptjaas_namespace_cpu_guaranteed_cores", "CPU guaranteed to starting and running servers by namespace",
    ["namespace"]
)
NAMESPACE_MEMORY = Gauge(
    "ptjaas_namespace_memory_guaranteed_bytes", "Memory guaranteed to starting and running servers by namespace",
    ["namespace"]
)
_NAMESPACE_GAUGES = (NAMESPACE_SERVERS, NAMESPACE_GPUS, NAMESPACE_CPU, NAMESPACE_MEMORY)
REFUSALS = Counter(
    "ptjaas_quota_refusals", "Server starts refused by a quota, by reason", ["reason"]
)
for _reason in ("user", "pool", "resourcequota"):
    REFUSALS.labels(reason=_reason)

# (group, size) -> [gpus, servers]: what the gauges show (a server outside any pool: group "-")
_ROWS: dict = {}
# namespace -> [servers, gpus, nanocores, bytes] (whole numbers: exact however many come and go)
_NAMESPACES: dict = {}
_NANO = 10**9


def _row_key(charge) -> tuple:
    return (charge.pool or "-", charge.size or "-")


def _namespace_units(charge) -> tuple:
    a = charge.amount
    return (1, a.gpus, round(a.cpu * _NANO), a.memory)


def _show_namespace(ns, row):
    for gauge, value in zip(_NAMESPACE_GAUGES, (row[0], row[1], row[2] / _NANO, row[3])):
        gauge.labels(ns).set(value)


def _namespace_added(charge):
    ns = charge.namespace or "-"
    row = _NAMESPACES.setdefault(ns, [0, 0, 0, 0])
    for i, v in enumerate(_namespace_units(charge)):
        row[i] += v
    _show_namespace(ns, row)


def _namespace_removed(charge):
    ns = charge.namespace or "-"
    row = _NAMESPACES[ns]
    for i, v in enumerate(_namespace_units(charge)):
        row[i] -= v
    if row[0] <= 0:
        del _NAMESPACES[ns]
        for gauge in _NAMESPACE_GAUGES:
            gauge.remove(ns)
    else:
        _show_namespace(ns, row)


def charge_added(charge):
    _namespace_added(charge)
    key = _row_key(charge)
    row = _ROWS.setdefault(key, [0, 0])
    row[0] += charge.amount.gpus
    row[1] += 1
    GPUS_IN_USE.labels(*key).set(row[0])
    SERVERS_IN_USE.labels(*key).set(row[1])


def charge_removed(charge):
    _namespace_removed(charge)
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
