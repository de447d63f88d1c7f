"""What ptjaas's hub-managed services (the culler, the scheduled snapshots) share in the hub's
config: the environment a service needs from the hub's to find its cluster.

Light on purpose (standard library only): the hub's config and ``ptjaas check-values`` import
it, and neither needs the Kubernetes client (``kube``) or the hub API client (``hubapi``) that
the services themselves run with.
"""

from __future__ import annotations

import os

#: passed from the hub's environment to each service: its cluster (in a pod, or a kubeconfig)
#: and its namespace
SERVICE_ENVIRONMENT = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE")


def service_environment() -> dict:
    """The hub's ``SERVICE_ENVIRONMENT`` variables that are set, for a service's ``environment``."""
    return {k: os.environ[k] for k in SERVICE_ENVIRONMENT if os.environ.get(k)}
