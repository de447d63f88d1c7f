"""Shared fixtures: an embedded cluster, a real JupyterHub, the shared reference data."""

import os
import sys
from pathlib import Path

import pytest

from tests.hubutil import Hub
from tests.clusterutil import running_cluster as _running_cluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _tool_path():
    """Tests find the venv's commands (jupyterhub-singleuser) and npm's (configurable-http-proxy)."""
    extra = [os.path.dirname(sys.executable), str(ROOT / "node_modules" / ".bin")]
    os.environ["PATH"] = os.pathsep.join(extra + [os.environ.get("PATH", "")])
    yield


@pytest.fixture
def cluster(tmp_path):
    with _running_cluster(tmp_path / "k8s") as c:
        yield c


# Tests that run no JupyterHub, KubeSpawner, OAuthenticator or idle-culler code, so their outcome
# cannot depend on the versions a set pins: the embedded cluster's conformance suite and the
# modules of pure policy (plain data in and out; their imports are pure modules only). CI runs
# them in the newest-releases set only (.ci/run). A module that starts a hub, builds a spawner or
# imports one of those packages does not belong here.
VERSION_INDEPENDENT_DIRS = (ROOT / "tests" / "cluster",)
VERSION_INDEPENDENT_MODULES = {
    "test_quantity", "test_catalog", "test_form", "test_homevolume", "test_eventindex",
    "test_startplan", "test_homemigration", "test_manifests", "test_team_manifests",
}


# Fixtures that stand for the real kube-apiserver (../shared/kube): a test using one, or
# parametrized with "real" for its backend, is marked real_backend.
REAL_BACKEND_FIXTURES = {"real_cluster", "real_hub_backend", "own_real_cluster"}


def _runs_on_the_real_backend(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(value == "real" for value in params.values()) \
        or not REAL_BACKEND_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


@pytest.fixture(autouse=True)
def _real_backend_is_marked(request):
    """A test that reached the real cluster some way the marking above does not see (a fixture
    asking for it at run time) fails, naming the fixture to add: unmarked, CI would only skip it."""
    yield
    used = REAL_BACKEND_FIXTURES.intersection(request.fixturenames)
    if used and request.node.get_closest_marker("real_backend") is None:
        pytest.fail(f"{request.node.nodeid} uses {sorted(used)} but is not marked real_backend: "
                    "add the fixture that asks for it to REAL_BACKEND_FIXTURES (tests/conftest.py)")


def pytest_collection_modifyitems(config, items):
    """Mark the tests above ``version_independent``, and those on the real kube-apiserver
    ``real_backend`` (see pyproject.toml's markers)."""
    for item in items:
        path = Path(str(item.path))
        if path.stem in VERSION_INDEPENDENT_MODULES and path.parent == ROOT / "tests" \
                or any(d in path.parents for d in VERSION_INDEPENDENT_DIRS):
            item.add_marker(pytest.mark.version_independent)
        if _runs_on_the_real_backend(item):
            item.add_marker(pytest.mark.real_backend)


def pytest_generate_tests(metafunc):
    """A test module with ``BACKENDS = ("embedded", "real")`` runs its ``module_cluster`` tests on both;
    ``@pytest.mark.backends("embedded")`` keeps one test to those named (its API-server behaviour is
    checked on the real one by another test, so the suite does not pay for it twice)."""
    backends = getattr(metafunc.module, "BACKENDS", None)
    marker = metafunc.definition.get_closest_marker("backends")
    if backends and marker:
        backends = marker.args
    if backends and "module_cluster" in metafunc.fixturenames and "backend" not in metafunc.fixturenames:
        metafunc.parametrize("cluster_backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def cluster_backend(request):
    return getattr(request, "param", "embedded")


@pytest.fixture(scope="module")
def module_cluster(cluster_backend, tmp_path_factory, request):
    """The module's embedded cluster; or, for modules with BACKENDS, also namespace ``default`` of
    the session's real cluster, where the tests' hubs get exactly z2jh's rights plus ours (the
    tests' own clients are the admin). Embedded-only controls (faults) skip there."""
    if cluster_backend == "real":
        real = request.getfixturevalue("real_cluster")
        backend = RealBackendForTests(real, "default", request.getfixturevalue("shared_dir") / "charts" / "jupyterhub",
                                      helm=str(ROOT / "node_modules" / ".bin" / "helm"), admin=True)
        yield backend
        backend.clean()
        return
    with _running_cluster(tmp_path_factory.mktemp("k8s")) as c:
        yield c


def _module_cluster_api(module_cluster, api_class):
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(module_cluster.kubeconfig_path))
    try:
        yield getattr(kubernetes.client, api_class)(client)
    finally:
        client.close()


@pytest.fixture(scope="module")
def core(module_cluster):
    """The admin's CoreV1Api on the module's cluster (what the tests look at, as kubectl would)."""
    yield from _module_cluster_api(module_cluster, "CoreV1Api")


@pytest.fixture(scope="module")
def custom(module_cluster):
    """The admin's CustomObjectsApi on the module's cluster (VolumeSnapshots)."""
    yield from _module_cluster_api(module_cluster, "CustomObjectsApi")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that ran hubs gets their error lines (with tracebacks) as a report section:
    a failure seen only in CI can be read from CI's output."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for hub in [*getattr(item, "_ptjaas_hubs", ()), *getattr(getattr(item, "module", None), "_ptjaas_hubs", ())]:
        text = hub_errors(hub.logs())
        if text:
            report.sections.append((f"hub {hub.workdir} errors", text))


def hub_errors(log, limit=12000):
    """The log's error and warning records, each with the lines that follow it (a traceback)."""
    kept, keep = [], False
    for line in log.splitlines():
        if line.startswith("["):
            keep = line[1:2] in ("E", "W", "C")
        if keep:
            kept.append(line)
    text = "\n".join(kept)
    return text[-limit:]


def _hub_factory(base_dir, owner=None):
    """``owner``: the test item or module whose failures report these hubs' errors."""
    hubs = []
    if owner is not None:
        owner._ptjaas_hubs = hubs

    def make(config_text="", cluster=None, env=None, start=True, start_timeout=60):
        hub = Hub(base_dir / f"hub{len(hubs)}", config_text, cluster=cluster, env=env, start_timeout=start_timeout)
        hubs.append(hub)
        if start:
            hub.start()
        return hub

    return make, hubs


@pytest.fixture
def hub_factory(tmp_path, request):
    make, hubs = _hub_factory(tmp_path, request.node)
    yield make
    for hub in hubs:
        hub.stop()


@pytest.fixture(scope="module")
def module_hub_factory(tmp_path_factory, request):
    make, hubs = _hub_factory(tmp_path_factory.mktemp("hubs"), request.module)
    yield make
    for hub in hubs:
        hub.stop()


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory):
    """A real kube-apiserver & co (ptjaas_sandbox.realkube) with our node agent, once per session;
    skips where the binaries are absent. Tests make namespaces of their own in it.
    PTJAAS_REAL_KUBE=required (CI) fails instead of skipping; PTJAAS_REAL_KUBE=off skips."""
    from tests.backend_support import started_real_cluster
    with started_real_cluster(tmp_path_factory.mktemp("realkube")) as c:
        yield c


@pytest.fixture
def real_hub_backend(real_cluster, shared_dir, request):
    """A fresh namespace of the real cluster where a hub has exactly z2jh's hub rights plus ours
    (ptjaas_sandbox.hubrights); pass it as a hub's ``cluster``."""
    import uuid

    from ptjaas_sandbox.hubrights import HubBackend
    return HubBackend(real_cluster, f"hub-{uuid.uuid4().hex[:8]}", shared_dir / "charts" / "jupyterhub",
                      helm=str(ROOT / "node_modules" / ".bin" / "helm"))


@pytest.fixture(scope="session")
def shared_dir():
    """../shared beside the project root (or $PTJAAS_SHARED_DIR); tests needing it skip where absent."""
    from ptjaas_sandbox.realkube import shared_dir as find_shared_dir
    path = find_shared_dir()
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path} (set PTJAAS_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def helm():
    """The real helm (``./dev setup`` unpacks it into node_modules/.bin); tests needing it skip
    where it is absent."""
    import shutil

    path = shutil.which("helm") or str(ROOT / "node_modules" / ".bin" / "helm")
    if not os.path.exists(path):
        pytest.skip("helm is not installed (./dev setup installs it)")
    return path


def _real_backend_class():
    from ptjaas_sandbox.hubrights import HubBackend

    class RealBackend(HubBackend):
        def inject_fault(self, *args, **kwargs):
            pytest.skip("fault injection is a control of the embedded cluster only")

        clear_faults = inject_fault

        def clean(self):
            """Remove what the module's hubs left in the namespace (pods, claims, quotas)."""
            for kind in ("pods", "persistentvolumeclaims", "resourcequotas"):
                try:
                    self.cluster.plane.api("DELETE", f"/api/v1/namespaces/{self.namespace}/{kind}",
                                           {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
                except Exception:
                    pass

    return RealBackend


def RealBackendForTests(*args, **kwargs):  # noqa: N802 (a class, made on first use)
    return _real_backend_class()(*args, **kwargs)


# ---- no process the tests started outlives the session ------------------------------------------

_SESSION_MARK = "PTJAAS_TEST_SESSION"


def pytest_sessionstart(session):
    """Every process the tests start (hubs, proxies, culler services, control planes) inherits
    this mark in its environment, so the session's end can find what was left running."""
    import uuid

    os.environ[_SESSION_MARK] = uuid.uuid4().hex


def _marked_processes(mark):
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if f"{_SESSION_MARK}={mark}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found.append((int(entry), f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
        except OSError:
            continue
    return found


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process the tests started is still alive once every fixture has
    stopped what it started (after a short grace for processes on their way out); kill it."""
    import signal
    import time

    mark = os.environ.get(_SESSION_MARK)
    if not mark or not os.path.isdir("/proc"):
        return
    deadline = time.monotonic() + 10
    left = _marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)  # a grace for processes stopping: not a synchronisation of the tests
        left = _marked_processes(mark)
    if not left:
        return
    lines = "\n".join(f"  pid {pid}: {cmd[:200]}" for pid, cmd in left)
    sys.stderr.write(f"\n{len(left)} process(es) started by the tests outlived the session (killed now):\n{lines}\n")
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if session.exitstatus == 0:
        session.exitstatus = 1
