"""The hub config directory ``ptjaas demo`` runs its hub from: z2jh's own hub config (the chart's
``jupyterhub_config.py`` and ``z2jh.py`` beside the project, else the vendored copy), laid out
as the chart's hub pod mounts it. The layout is ``ptjaas_spawner.z2jhconfig``'s (``ptjaas
check-values`` runs the same files); this module names it for the sandbox and the tests."""

from ptjaas_spawner.z2jhconfig import CHART_CONFIG, chart_sources, write_z2jh_hub  # noqa: F401

__all__ = ["CHART_CONFIG", "chart_sources", "write_z2jh_hub"]
