"""Hub-side helper: the ``c.JupyterHub.services`` / ``load_roles`` entries for the culler.

In ``jupyterhub_config.py``::

    from ptjaas_spawner.culler import install_culler
    install_culler(c, timeout=3600, after_cull_hooks=["snapshot", "usage"],
                   usage_file="/srv/jupyterhub/usage.jsonl", snapshot_class="csi-snapclass")

``install_culler`` reads ``c.PtjaasSpawner.sizes`` / ``images`` (set them first), validates the
culling keys (a bad value stops the hub at start-up with the config key named) and passes the
per-size policy to the service as JSON in ``$PTJAAS_CULL_POLICY``. ``service_config`` returns
the same entries without touching ``c``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Iterable, Mapping

from traitlets.config import LazyConfigValue

from ..services import service_environment
from ..errors import SettingError
from ..settings_schema import CULLER, Z2JH_CULL, keys, options
from .options import command_line
from .policy import DEFAULT_TIMEOUT, PolicyError, extract_policy

SERVICE_NAME = "ptjaas-culler"
#: the smallest scopes that work: list users, see activity + server models (incl. user_options),
#: stop servers. No admin token.
BASE_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]

#: z2jh ``cull.*`` value -> culler option (what z2jh passes to jupyterhub-idle-culler)
Z2JH_CULL_MAPPING = options(Z2JH_CULL)
#: ptjaas's ``custom.ptjaas.culler.*`` value -> culler option
PTJAAS_CULLER_MAPPING = options(CULLER)


def from_z2jh_values(cull: Mapping) -> dict:
    """Keyword arguments for :func:`service_config` from z2jh's ``cull:`` values block."""
    return {ours: cull[theirs] for theirs, ours in Z2JH_CULL_MAPPING.items() if cull.get(theirs) is not None}


class CullerValuesError(SettingError):
    """``cull`` / ``custom.ptjaas.culler`` values that cannot work; the message names the value."""


def culler_from_values(get) -> dict | None:
    """The :func:`install_culler` keyword arguments the Helm values ask for, or None when
    ``custom.ptjaas.culler.enabled`` is not true. ``get(key, default)`` reads a values path
    (z2jh's ``get_config``). Raises CullerValuesError for an unknown key or two cullers."""
    ours = get("custom.ptjaas.culler", None) or {}
    if not isinstance(ours, Mapping):
        raise CullerValuesError(f"custom.ptjaas.culler must be a mapping, not {ours!r}")
    known = keys(CULLER)
    unknown = sorted(set(ours) - known)
    if unknown:
        raise CullerValuesError(
            f"unknown key(s) {', '.join('custom.ptjaas.culler.' + k for k in unknown)}; "
            f"known: {', '.join(sorted(known))}")
    if not ours.get("enabled", False):
        return None
    cull = get("cull", None) or {}
    if cull.get("enabled"):
        raise CullerValuesError(
            "cull.enabled and custom.ptjaas.culler.enabled are both true; two cullers "
            "would race. Set cull.enabled: false (ptjaas's culler reads the other cull.* values).")
    kwargs = from_z2jh_values({k: v for k, v in cull.items() if k != "enabled"})
    kwargs.update({PTJAAS_CULLER_MAPPING[k]: v for k, v in ours.items() if k in PTJAAS_CULLER_MAPPING})
    return kwargs


#: what the hub-managed culler gets where the hub config says nothing (z2jh's chart default)
HUB_DEFAULTS = {"timeout": DEFAULT_TIMEOUT}


def service_config(
    sizes: Mapping | None = None,
    images: Mapping | None = None,
    *,
    name: str = SERVICE_NAME,
    option_keys: Mapping[str, str] | None = None,
    extra_args: Iterable[str] = (),
    environment: Mapping[str, str] | None = None,
    python: str | None = None,
    **options,
) -> dict:
    """Return ``{"services": [service], "load_roles": [role]}`` for the culler service.

    ``options`` are the culler's own (``culler.options.CullerOptions``: ``timeout``,
    ``cull_every``, ``after_cull_hooks``, ``usage_file``, ...; ``snapshot_namespace`` is an older
    name of ``namespace``), passed on its command line; ``timeout`` defaults to 3600 seconds."""
    policy = extract_policy(sizes, images)
    if option_keys:
        policy["option_keys"] = dict(option_keys)
    options = {**HUB_DEFAULTS, **options}
    older = options.pop("snapshot_namespace", None)
    options["namespace"] = options.get("namespace") or older
    hooks = []
    for key in ("before_cull_hooks", "after_cull_hooks"):
        for h in options.get(key) or ():
            if not isinstance(h, str):
                raise PolicyError(
                    f"culler {key}: {h!r} is not a name; in the hub config give built-in names "
                    "('snapshot', 'usage') or 'module:function' strings (callables go in a culler --config file)")
            hooks.append(h)
    if "usage" in hooks and not options.get("usage_file"):
        raise PolicyError("culler hook 'usage' needs usage_file (where to append the usage records)")
    if options.get("audit_file"):
        options["audit_file"] = os.path.abspath(options["audit_file"])
    cmd = [python or sys.executable, "-m", "ptjaas_spawner.culler", *command_line(options), *extra_args]
    env = service_environment()
    env["PTJAAS_CULL_POLICY"] = json.dumps(policy, sort_keys=True)
    env.update(environment or {})
    scopes = list(BASE_SCOPES)
    if options.get("cull_users"):
        # delete:users (JupyterHub >= 2.0) is enough: z2jh grants the much wider admin:users.
        # The 'admin' flag needed by cull_admin_users=False comes with list:users.
        scopes.append("delete:users")
    service = {"name": name, "command": cmd, "environment": env}
    role = {"name": name, "description": "ptjaas idle culler: stop idle servers (volumes are kept)",
            "scopes": scopes, "services": [name]}
    return {"services": [service], "load_roles": [role]}


def _resolved(section, name, empty):
    """``section[name]`` as a plain value: a setting only modified so far (``c.X.y.append(...)``
    or ``.update(...)`` before any ``c.X.y = ...``) is held as a LazyConfigValue; resolve it
    against the trait's empty value, as traitlets will."""
    if name not in section:
        return empty
    value = section[name]
    if isinstance(value, LazyConfigValue):
        value = value.get_value(empty)
    return value


def install_culler(c, **kwargs) -> dict:
    """Append the culler service and role to a hub config object ``c`` (reads
    ``c.PtjaasSpawner.sizes`` / ``images`` and the spawner's ``namespace`` unless given).
    Works whether or not services, roles, sizes or images were set or only appended to /
    updated so far. Returns what was added."""
    spawner_cfg = c.PtjaasSpawner
    for name in ("sizes", "images"):
        if name not in kwargs and name in spawner_cfg:
            kwargs[name] = _resolved(spawner_cfg, name, {})
    if "audit_file" not in kwargs:  # culls go on the hub's audit record
        kwargs["audit_file"] = spawner_cfg.audit_log_file if "audit_log_file" in spawner_cfg else "ptjaas-audit.jsonl"
    if not (kwargs.get("namespace") or kwargs.get("snapshot_namespace")):
        for cls in ("PtjaasSpawner", "KubeSpawner"):
            if "namespace" in c[cls]:
                kwargs["namespace"] = c[cls].namespace
                break
    entries = service_config(**kwargs)
    hub = c.JupyterHub
    hub.services = list(_resolved(hub, "services", [])) + entries["services"]
    hub.load_roles = list(_resolved(hub, "load_roles", [])) + entries["load_roles"]
    return entries
