"""Which watches ``reflectors.restart_stopped`` restarts (issue 19's watchdog, and each start's
``ensure_running``): those that gave up, failed their first list or were stopped, never one
whose first list another start is still waiting for. KubeSpawner registers a reflector before
its first list and makes its watch task only after it; four users' starts at once had one start
take that reflector for a stopped one and restart it, which stopped it under the other start
(a 500 for that user). Real KubeSpawner reflectors, on the embedded cluster."""

import asyncio
import contextlib

import pytest
from kubernetes_asyncio import config
from kubespawner.reflector import ResourceReflector

from ptjaas_spawner.reflectors import stopped, watching


class ConfigMaps(ResourceReflector):
    kind = "configmaps"
    list_method_name = "list_namespaced_config_map"


class Broken(ConfigMaps):
    list_method_name = "list_namespaced_nothing"  # the first list fails


async def test_only_a_watch_that_stopped_is_taken_for_stopped(cluster):
    await config.load_kube_config(cluster.kubeconfig_path)
    reflector = ConfigMaps(namespace="default")
    # registered, first list not done yet (what a second start sees while the first lists)
    assert not stopped(reflector) and not watching(reflector)
    first_start = asyncio.ensure_future(reflector.start())
    await reflector.first_load_future
    await first_start
    assert not stopped(reflector) and watching(reflector)
    with contextlib.suppress(asyncio.CancelledError):  # (kubespawner 7.1's stop() lets its task's out)
        await reflector.stop()
    assert stopped(reflector) and not watching(reflector)

    failed = Broken(namespace="default")
    with pytest.raises(Exception):
        await failed.start()
    assert stopped(failed) and not watching(failed)
    assert isinstance(failed.first_load_future.exception(), AttributeError)


@pytest.fixture(autouse=True)
def _kube_config_cache():
    from kubespawner.clients import load_config

    load_config.cache_clear()  # per-process cache of the kubeconfig: this test's cluster is its own
    yield
    load_config.cache_clear()
