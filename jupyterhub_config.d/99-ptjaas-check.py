# ptjaas config fragment 99: check the whole configuration before the hub goes on starting.
#
# The last fragment (z2jh loads this directory in name order; so does 00-ptjaas.py on a plain
# machine). z2jh runs `hub.extraConfig` after all the fragments, so settings made there are not
# seen here: put ptjaas settings in hub.config or in a fragment (hub.extraFiles) instead, and check
# values files before an upgrade with `ptjaas check-values` (which, like `ptjaas demo --config`,
# runs this check again after the extra config). It stops the hub with a message naming the
# setting, and where it came from, when:
#   * a PtjaasSpawner / PtjaasAuthenticator / KubeSpawner / JupyterHub setting is misspelt
#     or has a value of the wrong type (JupyterHub alone would only warn, or fail at the
#     first spawn);
#   * ptjaas is configured but another spawner or authenticator class is selected;
#   * z2jh's own singleuser.storage would manage a home claim next to ptjaas's;
#   * the catalog, sizes or home settings are inconsistent (the spawner's own checks,
#     ptjaas_spawner.configcheck, which would otherwise run only at the first spawn).
# Admin fragments placed between 00 and 99 check their own settings with
# `ptjaas_spawner.fragmentcheck.checked_fragment` (see the docs: "Configuration fragments").
from ptjaas_spawner import fragmentcheck as _ptjaas_fc
from ptjaas_spawner import helmvalues as _ptjaas_values

c = c  # noqa: F821  (see 00-ptjaas.py)


def _ptjaas_source(setting):
    """Where a setting most likely came from, for the error message."""
    section, _, key = setting.partition(".")
    key = key.split("[")[0]  # PtjaasSpawner.sizes['gpu-1'] was set as hub.config.PtjaasSpawner.sizes
    if not section[:1].isupper():  # a Helm value such as singleuser.storage.type
        return "the Helm values"
    if key and key in (_ptjaas_values.value(f"hub.config.{section}") or {}):
        files = _ptjaas_values.files()   # none under z2jh: the chart's values
        where = f"PTJAAS_VALUES ({', '.join(files)}: " if files else "the Helm values ("
        return f"{where}hub.config.{setting})"
    return "hub.config or a config fragment"


_ptjaas_problems = _ptjaas_fc.startup_problems(c)
if _ptjaas_problems:
    raise _ptjaas_fc.PtjaasConfigError(
        _ptjaas_fc.format_problems(
            _ptjaas_values.fragment_path("99-ptjaas-check.py"),
            [(s, f"{m} [set in {_ptjaas_source(s)}]") for s, m in _ptjaas_problems],
        )
    )
