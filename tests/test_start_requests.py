"""Kubernetes API requests per start are exactly KubeSpawner's (issues 16 and 21): a first start
creates the home claim and the pod, a restart creates the pod, and neither reads nor lists
anything, however long the provisioner takes to bind the new claim: the pod is made once its
volume is bound (the real kube-scheduler may leave a pod whose immediate claim was unbound for
minutes), learnt from the namespace's claim watch (podwatch.wait_for_home_volume), not from reads.
Counted by the embedded API server, and by the real kube-apiserver's audit log."""

import json
import textwrap

import pytest

from ptjaas_spawner.startfailure import HOME_PROVISIONING
from tests.hubutil import server
from tests.test_start_failures import start_outcome
from tests.backend_support import backend_for
from tests.waiting import wait_for

pytestmark = [pytest.mark.hub, pytest.mark.timeout(240)]

IMAGES = {"python": {"display_name": "Python", "versions": {"1": {"image": "example.org/py:1"}}}}
SIZES = {"small": {"display_name": "Small", "cpu_guarantee": 0.1, "cpu_limit": 1,
                   "mem_guarantee": "64Mi", "mem_limit": "1Gi"}}
RESOURCES = ("pods", "persistentvolumeclaims", "events", "storageclasses", "namespaces")


@pytest.fixture(params=["embedded", "real"])
def backend(request):
    b = backend_for(request)
    yield b
    b.close()


def _start(hub, user):
    r = hub.api("POST", f"/users/{user}/server", json={"size": "small"})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (server(hub, user) or {}).get("ready"), timeout=120, message=f"{user} ready")


def _stop(hub, user):
    r = hub.api("DELETE", f"/users/{user}/server")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server(hub, user) is None, timeout=60, message=f"{user} stopped")


def _requests(backend):
    found = {}
    for resource in RESOURCES:
        for verb, n in backend.requests(resource).items():
            found[f"{verb} {resource}"] = n
    return found


def test_first_start_and_restart_make_only_kubespawners_requests(backend, hub_factory):
    # the watches of the reflectors are not restarted during the test (their time-based
    # relists would mix in); everything else the hub sends is counted
    hub = hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        c.ResourceReflector.restart_seconds = 3600
        c.ResourceReflector.timeout_seconds = 3600
        c.ResourceReflector.request_timeout = 3600
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
        """) + backend.hub_config(), cluster=backend.target)
    for user in ("warm", "fiona", "gita"):
        r = hub.api("POST", f"/users/{user}")
        assert r.status_code in (201, 409), r.text
    _start(hub, "warm")  # the hub's first start starts the watches: not counted

    backend.count_requests()
    _start(hub, "fiona")
    first = _requests(backend)
    _stop(hub, "fiona")

    backend.count_requests()
    _start(hub, "fiona")
    restart = _requests(backend)

    assert first == {"create persistentvolumeclaims": 1, "create pods": 1}, first
    assert restart == {"create pods": 1}, restart

    # a provisioner that takes 2 s, as a CSI driver: the pod waits for the volume, no read
    provisioner = backend.provisioner()
    provisioner.bind_delay = 2.0
    try:
        backend.count_requests()
        ready, message, progress, seconds, _ = start_outcome(hub, "gita", {"size": "small"}, timeout=120)
        slow = _requests(backend)
    finally:
        provisioner.bind_delay = 0.0
    assert ready, (message, progress)
    assert slow == {"create persistentvolumeclaims": 1, "create pods": 1}, slow
    assert HOME_PROVISIONING in progress, (progress, [line for line in hub.logs().splitlines() if "claim-gita" in line])
    assert seconds >= 2, seconds
