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
import sys

import yaml

from ptjaas_spawner.fragmentcheck import PtjaasConfigError, apply_hub_config, deep_merge

# `c` is provided by traitlets (jupyterhub -f) and by z2jh's jupyterhub_config.py (which execs
# us in its own namespace, where `get_config` is z2jh's values reader: do not call it here).
c = c  # noqa: F821

_ptjaas_me = sys._getframe(0).f_code.co_filename
# Under z2jh this file is exec'd inside z2jh's jupyterhub_config.py: __file__ is that file.
# Loaded by `jupyterhub -f` (or load_subconfig), __file__ is this very file.
if os.path.abspath(globals().get("__file__", "")) == os.path.abspath(_ptjaas_me):
    _ptjaas_values = {}
    PTJAAS_VALUES_FILES = [p for p in os.environ.get("PTJAAS_VALUES", "").split(os.pathsep) if p]
    for _path in PTJAAS_VALUES_FILES:
        try:
            with open(_path) as _f:
                _doc = yaml.safe_load(_f) or {}
        except OSError as e:
            raise PtjaasConfigError(f"PTJAAS_VALUES: cannot read {_path}: {e}") from e
        except yaml.YAMLError as e:
            raise PtjaasConfigError(f"PTJAAS_VALUES: {_path} is not valid YAML: {e}") from e
        if not isinstance(_doc, dict):
            raise PtjaasConfigError(f"PTJAAS_VALUES: {_path} must hold a mapping of Helm values")
        _ptjaas_values = deep_merge(_ptjaas_values, _doc)
    PTJAAS_HELM_VALUES = _ptjaas_values  # read by later fragments in place of z2jh's values
    PTJAAS_HUB_CONFIG = (_ptjaas_values.get("hub") or {}).get("config") or {}
    try:
        apply_hub_config(c, PTJAAS_HUB_CONFIG)
    except PtjaasConfigError as e:
        raise PtjaasConfigError(f"PTJAAS_VALUES ({', '.join(PTJAAS_VALUES_FILES)}): {e}") from e

    _ptjaas_dir = os.path.dirname(os.path.abspath(_ptjaas_me))
    for _path in sorted(glob.glob(os.path.join(_ptjaas_dir, "*.py"))):
        if os.path.abspath(_path) == os.path.abspath(_ptjaas_me):
            continue
        print(f"Loading {_ptjaas_dir} config: {os.path.basename(_path)}")
        with open(_path) as _f:
            exec(compile(_f.read(), _path, "exec"), globals())
