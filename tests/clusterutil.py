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


def ensure_snapshot_class(kubeconfig_path, name):
    """A VolumeSnapshotClass ``name`` of the local-path driver on the cluster; another module on
    the same cluster (the real one is the session's) may have made it already."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig_path))
    try:
        kubernetes.client.CustomObjectsApi(api).create_cluster_custom_object(
            "snapshot.storage.k8s.io", "v1", "volumesnapshotclasses",
            {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass", "metadata": {"name": name},
             "driver": "ptjaas.io/local-path", "deletionPolicy": "Delete"})
    except kubernetes.client.ApiException as e:
        if e.status != 409:
            raise
    finally:
        api.close()
