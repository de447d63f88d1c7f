"""Fixtures for the conformance tests (tests/cluster/): every test that talks to the API through
`kube`/`ns`/`akube` runs twice, on the embedded cluster and on a real kube-apiserver (the session's
`real_cluster`, skipped where its binaries are absent), and the real server's answer is the
expected one. Tests that use the embedded cluster's own controls (fault injection, restart,
compaction) or a cluster of their own (`fresh_kube`: node capacity) are embedded-only: on the
real backend they skip, saying why.

Helpers live in k8s_conformance.py next to this file.
"""


import kubernetes_asyncio
import pytest


from tests.cluster.k8s_conformance import Kube

from tests.clusterutil import running_cluster as _running_cluster

EMBEDDED_ONLY = "embedded-only: uses the embedded cluster's test controls or a cluster of its own"


@pytest.fixture(scope="module", params=["embedded", "real"])
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def module_cluster(backend, tmp_path_factory):
    """The embedded cluster of this module (its faults, restarts, compaction): embedded only."""
    if backend == "real":
        pytest.skip(EMBEDDED_ONLY)
    with _running_cluster(tmp_path_factory.mktemp("k8s")) as c:
        yield c


@pytest.fixture(scope="module")
def target(backend, request):
    """The cluster under test: the module's embedded cluster, or the session's real one."""
    if backend == "real":
        return request.getfixturevalue("real_cluster")
    return request.getfixturevalue("module_cluster")


@pytest.fixture(scope="module")
def kube(target):
    k = Kube(target)
    yield k
    k.remove_namespaces()
    k.close()


@pytest.fixture
def fresh_kube(backend, tmp_path):
    """A Kube bound to an embedded cluster of its own (for tests that use up node capacity)."""
    if backend == "real":
        pytest.skip(EMBEDDED_ONLY)
    with _running_cluster(tmp_path / "k8s") as c:
        k = Kube(c)
        yield k
        k.close()


@pytest.fixture
def ns(kube):
    return kube.namespace()


@pytest.fixture
async def akube(target):
    """The kubernetes_asyncio ApiClient for the module's cluster (function scope: per event loop)."""
    api = await kubernetes_asyncio.config.new_client_from_config(config_file=str(target.kubeconfig_path))
    async with api:
        yield api
