"""ptjaas: Jupyter-as-a-Service on Kubernetes.

A KubeSpawner subclass (``ptjaas_spawner.spawner.PtjaasSpawner``) with per-user home
volumes, an image-version catalog and CPU/GPU sizes, an OpenID Connect authenticator
that maps identity-provider groups to entitlements, quotas and idle culling, plus an
embedded Kubernetes (``ptjaas_spawner.cluster``) for demos and tests.
"""

__version__ = "0.1.0"
