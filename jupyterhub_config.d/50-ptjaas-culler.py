# ptjaas config fragment 50: ptjaas's idle culler as a JupyterHub-managed service.
#
# Reads z2jh's `cull` values (timeout, every, concurrency, maxAge, users, adminUsers,
# removeNamedServers keep their z2jh meaning) and ptjaas's extras under `custom.ptjaas.culler`:
#   enabled (bool), beforeCullHooks / afterCullHooks (lists of built-in names `snapshot`,
#   `usage`, or "module:function"), hookTimeout, usageFile, snapshotClass, snapshotKeep,
#   snapshotNamespace.
# Per-size / per-image timeouts come from PtjaasSpawner.sizes / images (cull_idle_timeout...).
# z2jh's own culler must stay off (`cull.enabled: false`): two cullers would race.
# Under z2jh the values come from the chart's values (module z2jh); on a plain machine from
# PTJAAS_VALUES (see 00-ptjaas.py).
import sys

from ptjaas_spawner.fragmentcheck import PtjaasConfigError, checked_fragment, fragment_path

c = c  # noqa: F821  (see 00-ptjaas.py)

_PTJAAS_CULLER_KEYS = {
    "enabled": None,
    "beforeCullHooks": "before_cull_hooks",
    "afterCullHooks": "after_cull_hooks",
    "hookTimeout": "hook_timeout",
    "usageFile": "usage_file",
    "snapshotClass": "snapshot_class",
    "snapshotKeep": "snapshot_keep",
    "snapshotNamespace": "snapshot_namespace",
}


def _ptjaas_value(key, default=None):
    try:
        import z2jh  # present in z2jh's hub image, next to its jupyterhub_config.py

        return z2jh.get_config(key, default)
    except ImportError:
        value = globals().get("PTJAAS_HELM_VALUES") or {}
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value


def _ptjaas_install_culler():
    from ptjaas_spawner.culler import from_z2jh_values, install_culler
    from ptjaas_spawner.culler.policy import PolicyError

    here = fragment_path(sys._getframe(0).f_code.co_filename)
    ours = _ptjaas_value("custom.ptjaas.culler", None) or {}
    if not isinstance(ours, dict):
        raise PtjaasConfigError(f"{here}: custom.ptjaas.culler must be a mapping, not {ours!r}")
    unknown = sorted(set(ours) - set(_PTJAAS_CULLER_KEYS))
    if unknown:
        raise PtjaasConfigError(
            f"{here}: unknown key(s) {', '.join('custom.ptjaas.culler.' + k for k in unknown)}; "
            f"known: {', '.join(sorted(_PTJAAS_CULLER_KEYS))}"
        )
    if not ours.get("enabled", False):
        return
    cull = _ptjaas_value("cull", None) or {}
    if cull.get("enabled"):
        raise PtjaasConfigError(
            f"{here}: cull.enabled and custom.ptjaas.culler.enabled are both true; two cullers "
            "would race. Set cull.enabled: false (ptjaas's culler reads the other cull.* values)."
        )
    kwargs = from_z2jh_values({k: v for k, v in cull.items() if k != "enabled"})
    kwargs.update({_PTJAAS_CULLER_KEYS[k]: v for k, v in ours.items() if _PTJAAS_CULLER_KEYS[k]})
    try:
        with checked_fragment(c, here):
            install_culler(c, **kwargs)
    except (PolicyError, TypeError, ValueError) as e:
        raise PtjaasConfigError(f"{here}: culler settings (cull.*, custom.ptjaas.culler.*): {e}") from e


_ptjaas_install_culler()
