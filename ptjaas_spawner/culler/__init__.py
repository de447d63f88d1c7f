"""ptjaas idle culler: per-size/per-image idle timeouts, hooks, hub-managed service.

- :mod:`.policy` — pure decisions (which server to cull and why), ``kernel_culling_args``;
- :mod:`.hubapi` / :mod:`.service` — one pass over the hub REST API;
- :mod:`.hooks` — before/after-cull hooks, built-in ``snapshot`` and ``usage`` actions;
- :mod:`.app` — ``python -m ptjaas_spawner.culler`` (jupyterhub-idle-culler's options);
- :mod:`.config` — ``service_config()`` / ``install_culler(c)`` for jupyterhub_config.py.
"""

from .config import SERVICE_NAME, from_z2jh_values, install_culler, service_config
from .policy import CullPolicy, PolicyError, decide_server, extract_policy, kernel_culling_args

__all__ = [
    "SERVICE_NAME", "CullPolicy", "PolicyError", "decide_server", "extract_policy",
    "from_z2jh_values", "install_culler", "kernel_culling_args", "service_config",
]
