"""Shared helpers for the deployment tests (helm-values/, jupyterhub_config.d/, images/, docs/).

Reference schemas (z2jh values schema, MetalLB CRDs) are read from ``../shared/schemas``
relative to the project root, or from ``$PTJAAS_SHARED_DIR`` (either the ``shared`` folder or
its ``schemas`` folder); tests that need them skip with a reason where they are absent.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from ptjaas_spawner.helmvalues import deep_merge

PROJECT = Path(__file__).resolve().parents[1]
HELM_VALUES = PROJECT / "helm-values"
MANIFESTS = HELM_VALUES / "manifests"
FRAGMENTS = PROJECT / "jupyterhub_config.d"
IMAGES = PROJECT / "images"
DOCS = PROJECT / "docs"

BASE = HELM_VALUES / "values.yaml"
OVERLAYS = {
    "metallb": HELM_VALUES / "values-metallb.yaml",
    "pure-storage": HELM_VALUES / "values-pure-storage.yaml",
    "gpu": HELM_VALUES / "values-gpu.yaml",
    "teams": HELM_VALUES / "values-teams.yaml",
}
ALL_VALUES = [BASE, *OVERLAYS.values()]

# The chart the values target: jupyterhub/jupyterhub 4.4.0 ships JupyterHub 5.5.0 (its
# appVersion) and declares kubeVersion ">=1.32.0-0".
CHART_VERSION = "4.4.0"
CHART_APP_VERSION = "5.5.0"
KUBERNETES_MIN = (1, 32)


def schemas_dir():
    env = os.environ.get("PTJAAS_SHARED_DIR")
    candidates = []
    if env:
        candidates += [Path(env) / "schemas", Path(env)]
    candidates.append(PROJECT.parent / "shared" / "schemas")
    for candidate in candidates:
        if (candidate / "z2jh").is_dir() or (candidate / "metallb").is_dir():
            return candidate
    return None


def require_schema(*parts):
    base = schemas_dir()
    path = base.joinpath(*parts) if base else None
    if path is None or not path.exists():
        pytest.skip(
            f"reference schema {'/'.join(parts)} not found under ../shared/schemas "
            "(set PTJAAS_SHARED_DIR to the folder holding it)"
        )
    return path


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def compose(*paths, chart_defaults=None):
    """Values as Helm sees them for ``helm -f a -f b ...``: chart defaults, then each file."""
    values = dict(chart_defaults or {})
    for path in paths:
        values = deep_merge(values, load_yaml(path) or {})
    return values


def compositions():
    """(name, [files]) for the base alone, each overlay alone, base + each overlay, and all."""
    combos = [("base", [BASE])]
    for name, path in OVERLAYS.items():
        combos.append((f"{name}-alone", [path]))
        combos.append((f"base+{name}", [BASE, path]))
    combos.append(("base+all", ALL_VALUES))
    return combos


def load_module_file(name, path):
    """A module from a file outside any package (docs/_ext/*.py, images/build.py)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
