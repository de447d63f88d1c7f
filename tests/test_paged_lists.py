"""Issue 21: ptjaas's reflectors list in pages (``watches.PagedListMixin``), so a hub restart
with thousands of servers does not stop the hub's event loop. A list across several pages holds
exactly what the namespace holds, a relist sees every change made meanwhile (created, changed,
deleted), and keeps the objects it already held that did not change (so a relist of thousands of
unchanged pods allocates nothing that outlives its page: docs/performance.md)."""

import gc

import kubernetes
import pytest
from kubernetes_asyncio import config
from kubespawner.reflector import ResourceReflector

from ptjaas_spawner.watches import PagedListMixin


class PagedConfigMaps(PagedListMixin, ResourceReflector):
    kind = "configmaps"
    list_method_name = "list_namespaced_config_map"
    LIST_PAGE_SIZE = 2


async def test_a_paged_list_and_a_relist_hold_what_the_namespace_holds(cluster):
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=cluster.kubeconfig_path))
    labels = {"ptjaas-test": "paged"}
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}", "labels": labels},
                                                      "data": {"n": str(i)}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "other"}})  # not selected
    await config.load_kube_config(cluster.kubeconfig_path)
    reflector = PagedConfigMaps(namespace="default", labels=labels)
    try:
        await reflector.start()
        assert sorted(reflector.resources) == [f"default/cm{i}" for i in range(5)]
        assert gc.get_freeze_count() > 0  # the first list is out of the collector's generations
        before = dict(reflector.resources)

        core.patch_namespaced_config_map("cm1", "default", {"data": {"n": "changed"}})
        core.delete_namespaced_config_map("cm2", "default")
        core.create_namespaced_config_map("default", {"metadata": {"name": "cm9", "labels": labels}})
        await reflector._list_and_update()

        after = reflector.resources
        assert sorted(after) == ["default/cm0", "default/cm1", "default/cm3", "default/cm4", "default/cm9"]
        assert after["default/cm1"]["data"] == {"n": "changed"}
        for name in ("cm0", "cm3", "cm4"):  # unchanged: the object already held, not a new copy
            assert after[f"default/{name}"] is before[f"default/{name}"]
        assert after["default/cm1"] is not before["default/cm1"]
    finally:
        await reflector.stop()
        gc.unfreeze()


@pytest.fixture(autouse=True)
def _kube_config_cache():
    from kubespawner.clients import load_config

    load_config.cache_clear()  # per-process cache of the kubeconfig: this test's cluster is its own
    yield
    load_config.cache_clear()
