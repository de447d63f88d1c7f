# ptjaas config fragment 50: ptjaas's idle culler as a JupyterHub-managed service.
#
# Reads z2jh's `cull` values (timeout, every, concurrency, maxAge, users, adminUsers,
# removeNamedServers keep their z2jh meaning) and ptjaas's extras under `custom.ptjaas.culler`:
#   enabled (bool), beforeCullHooks / afterCullHooks (lists of built-in names `snapshot`,
#   `usage`, or "module:function"), hookTimeout, hubGoneTimeout, usageFile, snapshotClass,
#   snapshotKeep, snapshotNamespace, and the optional GPU-idle rule: prometheusUrl,
#   gpuIdleThreshold, gpuIdleQuery, prometheusTimeout (ptjaas_spawner.settings_schema.CULLER
#   lists them; docs/culling.md explains them).
# Per-size / per-image timeouts come from PtjaasSpawner.sizes / images (cull_idle_timeout...).
# z2jh's own culler must stay off (`cull.enabled: false`): two cullers would race.
# Under z2jh the values come from the chart's values (module z2jh); on a plain machine from
# PTJAAS_VALUES (see 00-ptjaas.py).
from ptjaas_spawner import helmvalues
from ptjaas_spawner.fragmentcheck import PtjaasConfigError, checked_fragment

c = c  # noqa: F821  (see 00-ptjaas.py)


def _ptjaas_install_culler():
    from ptjaas_spawner.culler import install_culler
    from ptjaas_spawner.culler.config import CullerValuesError, culler_from_values
    from ptjaas_spawner.culler.policy import PolicyError

    here = helmvalues.fragment_path("50-ptjaas-culler.py")
    try:
        kwargs = culler_from_values(helmvalues.value)
    except CullerValuesError as e:
        raise PtjaasConfigError(f"{here}: {e}") from e
    if kwargs is None:
        return
    try:
        with checked_fragment(c, here):
            install_culler(c, **kwargs)
    except (PolicyError, TypeError, ValueError) as e:
        raise PtjaasConfigError(f"{here}: culler settings (cull.*, custom.ptjaas.culler.*): {e}") from e


_ptjaas_install_culler()
