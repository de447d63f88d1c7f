# ptjaas config fragment 60: home snapshots and the audit record's pages.
#
# - The hub home page template that lists the user's home snapshots (c.JupyterHub.template_paths),
#   and the snapshot and audit pages when the authenticator is not PtjaasAuthenticator (which
#   registers them itself).
# - custom.ptjaas.snapshots.schedule: {group: {every: seconds, keep: N, datasets?: {every, keep}}}
#   runs the scheduled-snapshot service (ptjaas-snapshots) for those groups' members' homes and,
#   with datasets, the team's datasets (docs/data.md).
# Snapshot settings are hub.config.PtjaasSpawner.snapshot_classes (StorageClass ->
# VolumeSnapshotClass; empty = snapshots off), snapshot_min_interval, audit_log_file.
# Under z2jh the values come from the chart's values (module z2jh); on a plain machine from
# PTJAAS_VALUES (see 00-ptjaas.py).
from ptjaas_spawner import helmvalues
from ptjaas_spawner.fragmentcheck import PtjaasConfigError, checked_fragment

c = c  # noqa: F821  (see 00-ptjaas.py)

_PTJAAS_SNAPSHOT_KEYS = {"schedule"}


def _ptjaas_install_snapshots():
    from ptjaas_spawner.pages import install
    from ptjaas_spawner.snapshots.scheduler import ScheduleError, install_scheduled_snapshots

    here = helmvalues.fragment_path("60-ptjaas-snapshots.py")
    ours = helmvalues.value("custom.ptjaas.snapshots", None) or {}
    if not isinstance(ours, dict):
        raise PtjaasConfigError(f"{here}: custom.ptjaas.snapshots must be a mapping, not {ours!r}")
    unknown = sorted(set(ours) - _PTJAAS_SNAPSHOT_KEYS)
    if unknown:
        raise PtjaasConfigError(
            f"{here}: unknown key(s) {', '.join('custom.ptjaas.snapshots.' + k for k in unknown)}; "
            f"known: {', '.join(sorted(_PTJAAS_SNAPSHOT_KEYS))}"
        )
    auth = c.JupyterHub.authenticator_class if "authenticator_class" in c.JupyterHub else ""
    ptjaas_auth = auth == "ptjaas" or "ptjaas_spawner" in str(getattr(auth, "__module__", auth))
    with checked_fragment(c, here):
        install(c, handlers=not ptjaas_auth)
    if ours.get("schedule"):
        try:
            with checked_fragment(c, here):
                install_scheduled_snapshots(c, ours["schedule"])
        except (ScheduleError, TypeError, ValueError) as e:
            raise PtjaasConfigError(f"{here}: custom.ptjaas.snapshots.schedule: {e}") from e


_ptjaas_install_snapshots()
