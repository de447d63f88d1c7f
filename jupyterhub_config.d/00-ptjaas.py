# ptjaas config fragment 00: the entry point on a plain machine; a no-op under z2jh.
#
# Two ways to load ptjaas's fragments, with the same settings files:
#
# * z2jh (Kubernetes): the hub image has this directory at
#   /usr/local/etc/jupyterhub/jupyterhub_config.d/. z2jh's own jupyterhub_config.py applies
#   `hub.config` from the Helm values, then execs every *.py file here in name order.
#   This file then does nothing.
#
# * plain machine: run it as the config file, naming the same values files you pass to
#   `helm -f`, in the same order (later files win, merged like Helm does):
#
#       PTJAAS_VALUES=helm-values/values.yaml:my-site.yaml \
#           jupyterhub -f jupyterhub_config.d/00-ptjaas.py
#
#   It applies their `hub.config` the way z2jh does (`c[Class].update(values)`), then execs
#   the other fragments of this directory in name order, exactly as z2jh would.
#
# Settings live in `hub.config` (static YAML); fragments hold only what YAML cannot say.
import glob
import os

from ptjaas_spawner import helmvalues
from ptjaas_spawner.fragmentcheck import PtjaasConfigError, apply_hub_config

# `c` is provided by traitlets (jupyterhub -f) and by z2jh's jupyterhub_config.py (which execs
# us in its own namespace, where `get_config` is z2jh's values reader: do not call it here).
c = c  # noqa: F821

helmvalues.reset()
# Under z2jh, its jupyterhub_config.py has imported its `z2jh` module and loads the fragments
# itself; run by `jupyterhub -f`, __file__ is this very file.
if not helmvalues.under_z2jh():
    _ptjaas_files = [p for p in os.environ.get("PTJAAS_VALUES", "").split(os.pathsep) if p]
    _ptjaas_dir = os.path.dirname(os.path.abspath(__file__))
    try:
        _ptjaas_values = helmvalues.read_files(_ptjaas_files)
    except helmvalues.ValuesFileError as e:
        raise PtjaasConfigError(f"PTJAAS_VALUES: {e}") from e
    # later fragments read these values (helmvalues.value) in place of z2jh's
    helmvalues.use_files(_ptjaas_files, _ptjaas_values, _ptjaas_dir)
    try:
        apply_hub_config(c, (_ptjaas_values.get("hub") or {}).get("config") or {})
    except PtjaasConfigError as e:
        raise PtjaasConfigError(f"PTJAAS_VALUES ({', '.join(_ptjaas_files)}): {e}") from e

    for _path in sorted(glob.glob(os.path.join(_ptjaas_dir, "*.py"))):
        if os.path.abspath(_path) == os.path.abspath(__file__):
            continue
        print(f"Loading {_ptjaas_dir} config: {os.path.basename(_path)}")
        with open(_path) as _f:
            exec(compile(_f.read(), _path, "exec"))   # in this namespace, as z2jh's hub does
