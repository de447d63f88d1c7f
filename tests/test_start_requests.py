"""Kubernetes API requests per start are exactly KubeSpawner's (issue 16 point 1): a first start
creates the home claim and the pod, a restart creates the pod, and neither lists anything
(no event list); the only reads are of a first start's new claim while it is Pending: the pod
is made once its volume is bound, as the real kube-scheduler may leave a pod whose immediate
claim was unbound for minutes (podwatch.wait_for_home_volume). Counted by the embedded API server, and by
the real kube-apiserver's audit log."""

import json
import textwrap

import pytest

from tests.hubutil import server
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
    # the watches of KubeSpawner's reflectors are not restarted during the test (their time-based
    # relists would mix in); everything else the hub sends is counted
    hub = hub_factory(textwrap.dedent(f"""
        c.PtjaasSpawner.images = {json.dumps(IMAGES)}
        c.PtjaasSpawner.sizes = {json.dumps(SIZES)}
        c.ResourceReflector.restart_seconds = 3600
        c.ResourceReflector.timeout_seconds = 3600
        c.ResourceReflector.request_timeout = 3600
        """) + backend.hub_config(), cluster=backend.target)
    for user in ("warm", "fiona"):
        r = hub.api("POST", f"/users/{user}")
        assert r.status_code in (201, 409), r.text
    _start(hub, "warm")  # the hub's first start starts the event watch: not counted

    backend.count_requests()
    _start(hub, "fiona")
    first = _requests(backend)
    _stop(hub, "fiona")

    backend.count_requests()
    _start(hub, "fiona")
    restart = _requests(backend)

    claim_reads = first.pop("get persistentvolumeclaims", 0)
    assert first == {"create persistentvolumeclaims": 1, "create pods": 1}, first
    assert claim_reads <= 12, claim_reads  # polled at 0.1 s doubling to 1 s while Pending
    assert restart == {"create pods": 1}, restart
