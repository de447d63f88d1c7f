"""Issue 10, bug 1: the hub keeps working after an API server outage long enough for
KubeSpawner's pod and event watches to give up (about 50 s of failed retries).

The embedded cluster is stopped and started again on the same port and state directory (its
objects and volumes kept), as a control-plane restart does. While it is down a start fails at
once with a readable message; once it is back a start works without restarting the hub, and no
failed start leaves a pod behind.
"""


import pytest


from tests.waiting import wait_for

from tests.backend_support import Backend
from tests.test_start_failures import add_user, hub_config, start_outcome

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]

GAVE_UP = "Watching resources never recovered, giving up"


class EmbeddedOutage:
    """An embedded cluster stopped and started again on the same port and state directory."""

    def __init__(self, state_dir):
        from ptjaas_sandbox.cluster import EmbeddedCluster

        self.state_dir = state_dir
        self.current = EmbeddedCluster(state_dir=state_dir).start_in_thread()
        self.port = self.current.port
        self.backend = Backend("embedded", self.current, "default", self.current.kubeconfig_path,
                               embedded=self.current)

    def stop_api(self):
        self.current.stop_thread()

    def start_api(self):
        from ptjaas_sandbox.cluster import EmbeddedCluster

        self.current = EmbeddedCluster(state_dir=self.state_dir, port=self.port).start_in_thread()

    def close(self):
        self.backend.close()
        self.current.stop_thread()


class RealOutage:
    """The real control plane's kube-apiserver killed and started again (etcd keeps the state)."""

    def __init__(self, hub_backend):
        self.plane = hub_backend.cluster.plane
        self.backend = Backend("real", hub_backend, hub_backend.namespace, hub_backend.admin_kubeconfig_path,
                               real_cluster=hub_backend.cluster)

    def stop_api(self):
        self.plane.stop_apiserver()

    def start_api(self):
        if "kube-apiserver" not in self.plane.procs:
            self.plane.start_apiserver()
        # the node lifecycle controller tainted the node while its heartbeats failed: wait until
        # the node agent reported in again and the taint is gone (the cluster, not the hub, recovers)
        core = self.backend.core

        def node_ready():
            return all(not any(t.key.startswith("node.kubernetes.io/") for t in (n.spec.taints or []))
                       for n in core.list_node().items)
        wait_for(node_ready, timeout=180, interval=0.5, message="the node to be untainted")

    def close(self):
        if "kube-apiserver" not in self.plane.procs:  # the test failed during the outage
            self.plane.start_apiserver()
        self.backend.close()


# The real variant kills the session's kube-apiserver. After its restart our node agent's Node
# stayed tainted unreachable (its heartbeats did not recover), so the pods of every later test on
# the real control plane could not be scheduled. It is switched off until the node agent recovers
# its lease after an API server restart, and then should run on a control plane of its own.
REAL_OUTAGE_OFF = ("off: after a kube-apiserver restart the sandbox node agent's Node stays tainted "
                   "unreachable, which breaks the later real-backend tests (see the module)")


@pytest.fixture(params=["embedded", "real"])
def outage(request, tmp_path):
    if request.param == "real":
        pytest.skip(REAL_OUTAGE_OFF)
    o = (EmbeddedOutage(tmp_path / "k8s") if request.param == "embedded"
         else RealOutage(request.getfixturevalue("real_hub_backend")))
    yield o
    o.close()


def test_hub_recovers_after_an_api_server_outage(outage, hub_factory):
    backend = outage.backend
    # the real kube-scheduler's own watches take a minute or two to recover after the outage
    extra = "c.PtjaasSpawner.reflector_check_interval = 1\n" + ("c.PtjaasSpawner.start_timeout = 300\n"
                                                                if backend.real else "")
    hub = hub_factory(hub_config(extra, backend), cluster=backend.target)
    try:
        add_user(hub, "alice")
        add_user(hub, "bob")
        for user in ("alice", "bob"):
            ready, message, _, _, _ = start_outcome(hub, user, {"size": "small"}, timeout=120)
            assert ready, message
        # bob's home exists before the outage: after a kube-apiserver restart the real
        # kube-scheduler v1.36 did not place a pod with a *new* volume within 5 minutes (its
        # volume cache kept answering 'persistentvolume "pvc-..." not found'), a cluster-side lag
        # this test is not about
        assert hub.api("DELETE", "/users/bob/server").status_code in (202, 204)
        wait_for(lambda: "jupyter-bob" not in backend.pods(), timeout=60, message="bob stopped")

        outage.stop_api()  # the API server is gone
        # KubeSpawner's pod and event watches give up (it never restarts them itself)
        wait_for(lambda: hub.logs().count(GAVE_UP) >= 2, timeout=150, interval=0.5,
                 message="both watches to give up")

        # a start while the API is unreachable fails at once, in words a user understands
        ready, message, _, seconds, status = start_outcome(hub, "bob", {"size": "small"}, timeout=30)
        assert not ready
        assert "API server cannot be reached" in message and "try again" in message, message
        assert seconds < 20, seconds

        outage.start_api()
        # the same hub, without a restart: a new start works
        ready, message, progress, seconds, _ = start_outcome(hub, "bob", {"size": "small"}, timeout=300)
        assert ready, (message, progress)
        assert "Restarted the pods watch" in hub.logs()
        wait_for(lambda: backend.pods() == ["jupyter-alice", "jupyter-bob"], timeout=60,
                 message="only the running servers' pods")
    finally:
        hub.stop()
