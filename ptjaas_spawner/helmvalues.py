"""The Helm values the config fragments read, wherever the hub runs. No I/O but ``read_files``.

Under z2jh the chart's own module ``z2jh`` (beside its ``jupyterhub_config.py``, which has
imported it before it loads ``jupyterhub_config.d/``) reads them from the hub's Secret. On a plain
machine ``00-ptjaas.py`` reads the files named in ``PTJAAS_VALUES`` with ``read_files`` and hands
them here with ``use_files``; the later fragments then ask ``value("cull.timeout")`` either way.
The values are per hub process (one hub loads its config once); ``00-ptjaas.py`` starts with
``reset()``.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping

import yaml
from .errors import SettingError

# The directory z2jh's hub loads fragments from (it compiles each with its base name only).
Z2JH_FRAGMENT_DIR = "/usr/local/etc/jupyterhub/jupyterhub_config.d"

_files: list[str] = []       # PTJAAS_VALUES, in order (plain machine)
_values: dict = {}           # their merged values
_fragment_dir: str | None = None


class ValuesFileError(SettingError):
    """A values file cannot be read or is not a mapping: ``path`` and ``problem``."""

    def __init__(self, path, problem):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


def under_z2jh() -> bool:
    """True inside z2jh's hub config (its ``z2jh`` module is loaded before the fragments)."""
    return "z2jh" in sys.modules


def deep_merge(base, override):
    """Merge ``override`` into a copy of ``base`` the way Helm merges several ``-f`` files.

    Mappings merge key by key, anything else (lists included) is replaced, and a key set to
    ``None`` (YAML ``null``) in ``override`` is removed from the result.
    """
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return copy.deepcopy(override)
    merged = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_file(path) -> dict:
    """The Helm values in one YAML file (an empty file is no values)."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ValuesFileError(path, e.strerror or str(e)) from e
    except yaml.YAMLError as e:
        raise ValuesFileError(path, f"not valid YAML: {e}") from e
    if doc is not None and not isinstance(doc, dict):
        raise ValuesFileError(path, "must hold a mapping of Helm values")
    return doc or {}


def read_files(paths) -> dict:
    """The merged values of YAML files, later files winning as with ``helm -f``."""
    values = {}
    for path in paths:
        values = deep_merge(values, read_file(path))
    return values


def reset() -> None:
    global _files, _values, _fragment_dir
    _files, _values, _fragment_dir = [], {}, None


def use_files(files, values, fragment_dir=None) -> None:
    """The values a plain-machine hub reads (``00-ptjaas.py``), and its fragment directory."""
    global _files, _values, _fragment_dir
    _files, _values, _fragment_dir = list(files), values, fragment_dir


def files() -> list[str]:
    """The values files of a plain-machine hub (empty under z2jh)."""
    return list(_files)


def value(key: str, default=None):
    """A Helm value by dotted ``key``: z2jh's own ``get_config`` under z2jh; elsewhere from the
    files ``00-ptjaas.py`` read."""
    if under_z2jh():
        return sys.modules["z2jh"].get_config(key, default)
    return lookup(_values, key, default)


def lookup(values, key: str, default=None):
    """``values["a"]["b"]`` for the dotted ``key`` "a.b", as z2jh's ``get_config`` reads it."""
    found = values
    for part in key.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return default
        found = found[part]
    return found


def fragment_path(name: str) -> str:
    """The path to show for one of ptjaas's fragments (by file name) in a message."""
    if os.path.isabs(name):
        return name
    for directory in (_fragment_dir, Z2JH_FRAGMENT_DIR):
        if directory and os.path.exists(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return name
