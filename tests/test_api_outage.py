"""Issue 10, bug 1: the hub keeps working after an API server outage long enough for
KubeSpawner's pod and event watches to give up (about 50 s of failed retries).

The embedded cluster is stopped and started again on the same port and state directory (its
objects and volumes kept), as a control-plane restart does. While it is down a start fails at
once with a readable message; once it is back a start works without restarting the hub, and no
failed start leaves a pod behind.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # any pytest import mode

from waiting import wait_for  # noqa: E402

from test_start_failures import add_user, hub_config, kube_clients, pods, start_outcome  # noqa: E402

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]

GAVE_UP = "Watching resources never recovered, giving up"


def test_hub_recovers_after_an_api_server_outage(tmp_path, hub_factory):
    from ptjaas_sandbox.cluster import EmbeddedCluster

    state = tmp_path / "k8s"
    first = EmbeddedCluster(state_dir=state).start_in_thread()
    second = None
    hub = hub_factory(hub_config("c.PtjaasSpawner.reflector_check_interval = 1\n"), cluster=first)
    try:
        add_user(hub, "alice")
        add_user(hub, "bob")
        ready, message, _, _, _ = start_outcome(hub, "alice", {"size": "small"})
        assert ready, message

        first.stop_thread()  # the API server is gone
        # KubeSpawner's pod and event watches give up (it never restarts them itself)
        wait_for(lambda: hub.logs().count(GAVE_UP) >= 2, timeout=150, interval=0.5,
                 message="both watches to give up")

        # a start while the API is unreachable fails at once, in words a user understands
        ready, message, _, seconds, status = start_outcome(hub, "bob", {"size": "small"}, timeout=30)
        assert not ready
        assert "API server cannot be reached" in message and "try again" in message, message
        assert seconds < 20, seconds

        second = EmbeddedCluster(state_dir=state, port=first.port).start_in_thread()
        # the same hub, without a restart: a new start works
        ready, message, progress, seconds, _ = start_outcome(hub, "bob", {"size": "small"}, timeout=90)
        assert ready, (message, progress)
        assert seconds < 60, seconds
        assert "Restarted the pods watch" in hub.logs()
        core, _ = kube_clients(second)
        wait_for(lambda: pods(core) == ["jupyter-alice", "jupyter-bob"], timeout=30,
                 message="only the running servers' pods")
    finally:
        hub.stop()
        if second is not None:
            second.stop_thread()
        else:
            first.stop_thread()
