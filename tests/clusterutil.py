"""An embedded cluster for a test (shared by tests/conftest.py and tests/cluster/conftest.py)."""

import contextlib
import os

from ptjaas_sandbox.cluster import EmbeddedCluster


@contextlib.contextmanager
def running_cluster(path, **kwargs):
    """An embedded cluster in a background thread, its kubeconfig exported as KUBECONFIG."""
    c = EmbeddedCluster(state_dir=path, **kwargs)
    c.start_in_thread()
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = c.kubeconfig_path
    try:
        yield c
    finally:
        c.stop_thread()
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
