"""ptjaas: Jupyter-as-a-Service on Kubernetes.

A KubeSpawner subclass (``ptjaas_spawner.spawner.PtjaasSpawner``) with per-user home
volumes, an image-version catalog and CPU/GPU sizes, an OpenID Connect authenticator
that maps identity-provider groups to entitlements, quotas and idle culling. This package is
exactly what a hub imports; the demo and the embedded Kubernetes live in ``ptjaas_sandbox``.
"""

__version__ = "0.1.0"
