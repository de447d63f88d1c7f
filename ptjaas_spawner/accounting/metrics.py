"""Prometheus counters of server time, on the hub's ``/hub/metrics``:
``ptjaas_gpu_seconds_total{user,team,size}`` (GPUs x seconds) and
``ptjaas_cpu_seconds_total{user,team,size}`` (guaranteed cores x seconds).

Counted by the hub process as time passes: at each budget check (``accounting_check_interval``)
and at a run's end. After a hub restart they start again from 0 (Prometheus' ``increase`` and
``rate`` handle counter resets) and count a running server from the moment the new process
first saw it, so no second is counted twice.
"""

from prometheus_client import Counter

GPU_SECONDS = Counter("ptjaas_gpu_seconds", "GPU-seconds used by servers (GPUs x seconds running)",
                      ["user", "team", "size"])
CPU_SECONDS = Counter("ptjaas_cpu_seconds", "CPU-seconds guaranteed to servers (guaranteed cores x seconds running)",
                      ["user", "team", "size"])

_COUNTED: dict = {}  # run id -> accounting time counted up to


def seen(run, now: float) -> None:
    """Start counting ``run`` (from its start, or from ``now`` for a run this process did not
    see begin)."""
    if run.id not in _COUNTED:
        _COUNTED[run.id] = run.start if run.start >= now - 1e-6 else now


def account(run, now: float) -> None:
    """Add the run's seconds since last counted (up to its end, or ``now`` while running)."""
    since = _COUNTED.get(run.id)
    if since is None:
        return
    until = min(run.end, now) if run.end is not None else now
    if until > since:
        labels = (run.user, run.team or "-", run.size or "-")
        if run.gpus:
            GPU_SECONDS.labels(*labels).inc(run.gpus * (until - since))
        if run.cpu:
            CPU_SECONDS.labels(*labels).inc(run.cpu * (until - since))
        _COUNTED[run.id] = until
    if run.end is not None:
        del _COUNTED[run.id]
