"""Fixtures for the embedded-cluster conformance tests (tests/cluster/).

The `cluster` / `module_cluster` fixtures come from tests/conftest.py; helpers live in
k8s_conformance.py next to this file.
"""

import sys
from pathlib import Path

import kubernetes_asyncio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # any pytest import mode

from k8s_conformance import Kube  # noqa: E402


@pytest.fixture(scope="module")
def kube(module_cluster):
    k = Kube(module_cluster)
    yield k
    k.close()


@pytest.fixture
def fresh_kube(cluster):
    """A Kube bound to a cluster of its own (for tests that use up node capacity)."""
    k = Kube(cluster)
    yield k
    k.close()


@pytest.fixture
def ns(kube):
    return kube.namespace()


@pytest.fixture
async def akube(module_cluster):
    """The kubernetes_asyncio ApiClient for the module's cluster (function scope: per event loop)."""
    api = await kubernetes_asyncio.config.new_client_from_config(
        config_file=str(module_cluster.kubeconfig_path)
    )
    async with api:
        yield api
