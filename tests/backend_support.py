"""One face for the two Kubernetes backends the start-failure tests run on.

``embedded``: a fresh embedded cluster (namespace ``default``, the admin's kubeconfig for the
hub too). ``real``: a fresh namespace of the session's real control plane where the hub has
exactly z2jh's hub rights plus ours (``real_hub_backend``); the test's own set-up and checks
use the cluster admin's kubeconfig.
"""

import contextlib
import json
import os
from datetime import datetime, timezone

import kubernetes


@contextlib.contextmanager
def started_real_cluster(directory):
    """A real kube-apiserver & co (ptjaas_sandbox.realkube) with our node agent, started in
    ``directory`` and stopped after; skips where the binaries are absent.
    PTJAAS_REAL_KUBE=required (CI) fails instead of skipping; PTJAAS_REAL_KUBE=off skips."""
    import pytest
    from ptjaas_sandbox.realkube import RealCluster, Unavailable
    mode = os.environ.get("PTJAAS_REAL_KUBE", "")
    if mode == "off":
        pytest.skip("PTJAAS_REAL_KUBE=off: tests on the real control plane are switched off")
    try:
        c = RealCluster(directory)
    except Unavailable as e:
        if mode == "required":
            pytest.fail(f"PTJAAS_REAL_KUBE=required but no real control plane: {e}")
        pytest.skip(f"no real control plane: {e}")
    c.start()
    try:
        yield c
    finally:
        c.stop()


class Backend:
    def __init__(self, name, target, namespace, admin_kubeconfig, embedded=None, real_cluster=None):
        self.name = name
        self.target = target            # what hub_factory takes as ``cluster``
        self.namespace = namespace
        self.embedded = embedded        # the EmbeddedCluster (fault injection, request stats)
        self.real_cluster = real_cluster
        self.real = real_cluster is not None
        api_client = kubernetes.config.new_client_from_config(config_file=str(admin_kubeconfig))
        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.storage = kubernetes.client.StorageV1Api(api_client)
        self._since = None

    def close(self):
        self.api_client.close()

    # --- objects ---------------------------------------------------------------------------
    def claims(self):
        return sorted(c.metadata.name for c in self.core.list_namespaced_persistent_volume_claim(self.namespace).items)

    def pods(self):
        return sorted(p.metadata.name for p in self.core.list_namespaced_pod(self.namespace).items
                      if not p.metadata.deletion_timestamp)

    def events(self):
        return self.core.list_namespaced_event(self.namespace).items

    def create_quota(self, name, hard):
        self.core.create_namespaced_resource_quota(self.namespace, {"metadata": {"name": name}, "spec": {"hard": hard}})

        def counted():
            q = self.core.read_namespaced_resource_quota(name, self.namespace)
            return q.status and q.status.hard and q.status.used is not None
        _wait(counted, f"quota {name} counted")

    def delete_quota(self, name):
        self.core.delete_namespaced_resource_quota(name, self.namespace)
        _wait(lambda: name not in [q.metadata.name for q in self.core.list_namespaced_resource_quota(self.namespace).items],
              f"quota {name} deleted")

    def provisioner(self):
        """The volume provisioner serving this backend's StorageClass (``bind_delay`` may be set)."""
        return (self.embedded or self.real_cluster).provisioner

    def node_name(self):
        return self.core.list_node().items[0].metadata.name

    def hub_config(self):
        """Config the hub needs on this backend (pods of the real node share one address)."""
        if not self.real:
            return ""
        from ptjaas_sandbox.cluster.server import free_port
        return f"c.PtjaasSpawner.port = {free_port()}\n"

    # --- requests the hub made ---------------------------------------------------------------
    def count_requests(self):
        """Start counting the hub's API requests (see ``requests``)."""
        if self.embedded is not None:
            self.embedded.reset_request_stats()
        self._since = datetime.now(timezone.utc)

    def requests(self, resource):
        """{verb: count} of the hub's requests on ``resource`` in the namespace since
        ``count_requests`` (embedded: every client's; the test makes none on it meanwhile)."""
        if self.embedded is not None:
            stats = self.embedded.request_stats()
            return {k[0]: v for k, v in stats.items() if k != "total" and k[1] == resource}
        account = self.target.account
        found = {}
        self._flush_audit_log()
        with open(self.target.audit_log_path) as f:
            for line in f:
                if not line.strip():
                    continue
                e = json.loads(line)
                if e.get("stage") != "ResponseComplete" or (e.get("user") or {}).get("username") != account:
                    continue
                ref = e.get("objectRef") or {}
                if ref.get("resource") != resource or ref.get("namespace") != self.namespace:
                    continue
                when = datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
                if when >= self._since:
                    found[e["verb"]] = found.get(e["verb"], 0) + 1
        return found


    def _flush_audit_log(self):
        """The audit log is written in batches: make a request of our own and wait until it is
        in the log; every earlier request is then in it too."""
        marker = datetime.now(timezone.utc)
        self.core.read_namespace(self.namespace)

        def logged():
            with open(self.target.audit_log_path) as f:
                for line in reversed(f.read().splitlines()):
                    e = json.loads(line) if line.strip() else {}
                    ref = e.get("objectRef") or {}
                    if ref.get("resource") == "namespaces" and ref.get("name") == self.namespace \
                            and e.get("verb") == "get" and e.get("stage") == "ResponseComplete" \
                            and datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")) >= marker:
                        return True
            return False
        _wait(logged, "the audit log to catch up")


def backend_for(request):
    """The Backend a ``params=["embedded", "real"]`` fixture stands for: a fresh embedded cluster
    (namespace ``default``), or a fresh namespace of the session's real control plane where the
    hub has exactly z2jh's hub rights (skipped where its binaries are absent)."""
    if request.param == "embedded":
        cluster = request.getfixturevalue("cluster")
        return Backend("embedded", cluster, "default", cluster.kubeconfig_path, embedded=cluster)
    hub_backend = request.getfixturevalue("real_hub_backend")
    return Backend("real", hub_backend, hub_backend.namespace, hub_backend.admin_kubeconfig_path,
                   real_cluster=hub_backend.cluster)


def _wait(predicate, message, timeout=30):
    from tests.waiting import wait_for
    return wait_for(predicate, timeout=timeout, message=message)
