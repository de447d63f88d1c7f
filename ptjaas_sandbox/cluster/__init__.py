"""An embedded Kubernetes for demos and tests: the real REST API over HTTP, controllers and a
node agent that runs pods as local processes. Not a production engine."""

from .server import EmbeddedCluster, NodeSpec

__all__ = ["EmbeddedCluster", "NodeSpec"]
