"""jupyterhub_config.d/: the same fragments and values under z2jh's hub and under plain `jupyterhub -f`.

* The hub config the Helm values produce, loaded the way z2jh's hub pod loads it (see
  tests/z2jh_hub.py) by JupyterHub's own loader, selects ptjaas's spawner and authenticator,
  and the spawner instance carries the catalog, sizes and home-volume settings of the values.
* `PTJAAS_VALUES=... jupyterhub -f jupyterhub_config.d/00-ptjaas.py` gives the same result.
* A mistake (in a fragment or in the values) stops a real `jupyterhub` at start-up with a
  message naming the file and the setting.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.deploy_support import ALL_VALUES, BASE, FRAGMENTS, OVERLAYS, compose, load_yaml, require_schema
from tests.z2jh_hub import load_with_jupyterhub, write_z2jh_hub


@pytest.fixture(scope="module")
def chart_defaults():
    return load_yaml(require_schema("z2jh", "values.yaml"))


# KubeSpawner loads a kubeconfig when a spawner is created (it does not connect then): give it
# one for a loopback address that nothing here ever contacts.
KUBECONFIG_TEXT = """\
apiVersion: v1
kind: Config
clusters: [{name: unused, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: unused, user: {token: unused}}]
contexts: [{name: unused, context: {cluster: unused, user: unused, namespace: ptjaas}}]
current-context: unused
"""


@pytest.fixture(scope="module", autouse=True)
def _kubeconfig(tmp_path_factory):
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(KUBECONFIG_TEXT)
    global _KUBECONFIG
    _KUBECONFIG = str(path)


_KUBECONFIG = None


def _env(**extra):
    env = dict(os.environ)
    env.pop("PTJAAS_VALUES", None)
    env["KUBECONFIG"] = _KUBECONFIG
    env.update(extra)
    return env


def _spawner_values(values):
    return values["hub"]["config"]["PtjaasSpawner"]


COMPOSITIONS = {
    "base": [BASE],
    "base+metallb+pure-storage": [BASE, OVERLAYS["metallb"], OVERLAYS["pure-storage"]],
    "base+all": ALL_VALUES,
}


@pytest.fixture(scope="module")
def z2jh_loaded(chart_defaults, tmp_path_factory):
    jobs = {}
    for name, files in COMPOSITIONS.items():
        values = compose(*files, chart_defaults=chart_defaults)
        jobs[name] = (values, write_z2jh_hub(tmp_path_factory.mktemp(name), values, FRAGMENTS))
    with ThreadPoolExecutor(len(jobs)) as pool:  # separate interpreters, loaded side by side
        loaded = {
            name: pool.submit(load_with_jupyterhub, config, env=_env(), cwd=config.parent)
            for name, (_, config) in jobs.items()
        }
    results = {}
    for name, future in loaded.items():
        result, proc = future.result()
        assert result is not None, f"{name}: hub config failed to load:\n{proc.stderr[-3000:]}"
        results[name] = (jobs[name][0], result)
    return results


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_z2jh_hub_config_selects_ptjaas_with_the_configured_catalog(z2jh_loaded, name):
    values, result = z2jh_loaded[name]
    assert result["spawner_class"] == "ptjaas_spawner.spawner.PtjaasSpawner"
    assert result["authenticator_class"] == "ptjaas_spawner.auth.oidc.PtjaasAuthenticator"
    spawner = _spawner_values(values)
    for key in ("images", "sizes", "home_volume_size", "home_volume_access_modes", "home_mount_path",
                "quota_default"):
        assert result[key] == spawner[key], key
    assert result["quota_groups"] == spawner.get("quota_groups", {})
    assert result["home_volume_storage_class"] in (spawner["home_volume_storage_class"], "", None)
    if spawner["home_volume_storage_class"]:
        assert result["home_volume_storage_class"] == spawner["home_volume_storage_class"]
    auth = values["hub"]["config"]["PtjaasAuthenticator"]
    assert result["auth"]["oidc_issuer"] == auth["oidc_issuer"]
    assert result["auth"]["groups_claim"] == auth["groups_claim"]
    assert result["auth"]["manage_groups"] is True
    assert sorted(result["auth"]["admin_groups"]) == sorted(auth["admin_groups"])


def test_z2jh_storage_is_left_to_ptjaas_and_data_is_kept(z2jh_loaded):
    values, result = z2jh_loaded["base+all"]
    assert result["storage_pvc_ensure"] is False
    assert not any("persistentVolumeClaim" in v for v in result["volumes"])
    assert result["delete_pvc"] is False
    assert result["delete_home_volume"] is False
    # z2jh's pod hardening still applies to ptjaas's pods
    assert result["init_containers"] == ["block-cloud-metadata"]
    assert result["uid"] == 1000 and result["allow_privilege_escalation"] is False
    assert result["concurrent_spawn_limit"] == values["hub"]["concurrentSpawnLimit"]


def test_ptjaas_culler_replaces_z2jh_culler_with_the_cull_values(z2jh_loaded):
    values, result = z2jh_loaded["base+all"]
    names = [s["name"] for s in result["services"]]
    assert names == ["ptjaas-culler"]
    command = result["services"][0]["command"]
    assert command[1:3] == ["-m", "ptjaas_spawner.culler"]
    assert f"--timeout={values['cull']['timeout']}" in command
    assert f"--cull-every={values['cull']['every']}" in command
    assert f"--usage-file={values['custom']['ptjaas']['culler']['usageFile']}" in command


def test_plain_jupyterhub_f_reads_the_same_values(z2jh_loaded, tmp_path):
    values, from_z2jh = z2jh_loaded["base+all"]
    env = _env(PTJAAS_VALUES=os.pathsep.join(str(p) for p in ALL_VALUES))
    result, proc = load_with_jupyterhub(FRAGMENTS / "00-ptjaas.py", env=env, cwd=tmp_path)
    assert result is not None, proc.stderr[-3000:]
    for key in ("spawner_class", "authenticator_class", "images", "sizes", "home_volume_size",
                "home_volume_storage_class", "delete_home_volume", "auth"):
        assert result[key] == from_z2jh[key], key
    # the culler is configured from the same cull values
    assert [s["name"] for s in result["services"]] == ["ptjaas-culler"]
    assert f"--timeout={values['cull']['timeout']}" in result["services"][0]["command"]


# ------------------------------------------------------------ mistakes stop a real hub


def _run_real_hub(config_file, cwd, env, timeout=90):
    """Start the real `jupyterhub` command; a config mistake must make it exit by itself.

    Returns the CompletedProcess, or None if the hub was still running at the deadline."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub"), "-f", str(config_file),
           "--ip=127.0.0.1", "--port=0", "--JupyterHub.hub_ip=127.0.0.1", "--JupyterHub.hub_port=0",
           f"--JupyterHub.db_url=sqlite:///{cwd}/hub.sqlite"]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # the hub started despite the mistake
        return None


def _fragments_with(tmp_path, name, text):
    directory = tmp_path / "jupyterhub_config.d"
    shutil.copytree(FRAGMENTS, directory, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / name).write_text(text)
    return directory


SITE_TYPO = """\
from ptjaas_spawner.fragmentcheck import checked_fragment

with checked_fragment(c):
    c.PtjaasSpawner.home_volume_sise = "20Gi"
"""

SITE_BAD_TYPE = """\
from ptjaas_spawner.fragmentcheck import checked_fragment

with checked_fragment(c):
    c.PtjaasSpawner.delete_home_volume = "yes please"
"""


def _several_mistakes(values):
    values["hub"]["config"]["PtjaasSpawner"]["home_volume_sise"] = "20Gi"
    values["singleuser"]["storage"]["type"] = "dynamic"
    values["hub"]["config"]["JupyterHub"]["spawner_class"] = "kubespawner.KubeSpawner"
    del values["hub"]["config"]["PtjaasSpawner"]["sizes"]["small"]["mem_limit"]


def _z2jh_case(fragment=None, change=None):
    """A z2jh-style hub dir from the base values (changed by ``change``), with an extra fragment."""
    def make(chart_defaults, tmp_path):
        fragments = _fragments_with(tmp_path, *fragment) if fragment else FRAGMENTS
        values = compose(BASE, chart_defaults=chart_defaults)
        if change:
            change(values)
        config = write_z2jh_hub(tmp_path / "hub", values, fragments)
        return config, config.parent, _env()
    return make


def _plain_case(fragment):
    def make(chart_defaults, tmp_path):
        fragments = _fragments_with(tmp_path, *fragment)
        return fragments / "00-ptjaas.py", tmp_path, _env(PTJAAS_VALUES=str(BASE))
    return make


# case -> (how to build it, texts the hub's error output must contain)
MISTAKES = {
    "fragment-typo (z2jh)": (
        _z2jh_case(fragment=("30-site.py", SITE_TYPO)),
        ["30-site.py", "PtjaasSpawner.home_volume_sise", "did you mean 'home_volume_size'"]),
    "fragment-bad-type (plain)": (
        _plain_case(("30-site.py", SITE_BAD_TYPE)),
        ["jupyterhub_config.d/30-site.py", "PtjaasSpawner.delete_home_volume", "boolean"]),
    "fragment-syntax-error (z2jh)": (
        _z2jh_case(fragment=("31-broken.py", "c.PtjaasSpawner.home_volume_size = '20Gi\n")),
        ["31-broken.py", "SyntaxError"]),
    # fragment 99 reports every problem it finds in one message
    "values-several (z2jh)": (
        _z2jh_case(change=_several_mistakes),
        ["the Helm values (hub.config.PtjaasSpawner.home_volume_sise)", "did you mean 'home_volume_size'",
         "singleuser.storage.type", "must be 'none' with ptjaas",
         "JupyterHub.spawner_class", "set hub.config.JupyterHub.spawner_class: ptjaas",
         "PtjaasSpawner.sizes['small']: a size needs mem_limit [set in the Helm values (hub.config."]),
    "values-two-cullers (z2jh)": (
        _z2jh_case(change=lambda v: v["cull"].update(enabled=True)),
        ["50-ptjaas-culler.py", "cull.enabled and custom.ptjaas.culler.enabled are both true"]),
    "values-bad-snapshot-schedule (z2jh)": (
        _z2jh_case(change=lambda v: v.setdefault("custom", {}).setdefault("ptjaas", {}).update(
            snapshots={"schedule": {"vision": {"every": 86400, "keep": 0}}})),
        ["60-ptjaas-snapshots.py", "custom.ptjaas.snapshots.schedule", "['vision']['keep'] must be an integer >= 1"]),
    "values-static-storage (z2jh)": (
        _z2jh_case(change=lambda v: v["singleuser"]["storage"].update(type="static", static={"pvcName": "homes"})),
        ["singleuser.storage.type", "mounts 'home' at /home/jovyan, over ptjaas's home volume"]),
}


@pytest.fixture(scope="module")
def stopped_hubs(chart_defaults, tmp_path_factory):
    """Each mistake case run as a real `jupyterhub` (side by side: they are independent)."""
    jobs = {}
    for i, (case, (make, _)) in enumerate(MISTAKES.items()):
        jobs[case] = make(chart_defaults, tmp_path_factory.mktemp(f"mistake{i}"))
    with ThreadPoolExecutor(3) as pool:
        futures = {case: pool.submit(_run_real_hub, *job) for case, job in jobs.items()}
    return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_stops_the_hub_naming_file_and_setting(stopped_hubs, case):
    proc = stopped_hubs[case]
    assert proc is not None, f"{case}: jupyterhub kept running despite the mistake"
    assert proc.returncode != 0
    for text in MISTAKES[case][1]:
        assert text in proc.stderr, f"{case}: {text!r} not in:\n{proc.stderr[-2500:]}"


# ------------------------------------------------------------ a real hub from the values

HARNESS = """
# --- test harness: what z2jh's chart wires through Services and env, here on loopback ---
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"  # z2jh sets the URL (to its hub Service)
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.pid_file = "{workdir}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/jupyterhub_cookie_secret"
c.JupyterHub.services.append({{"name": "test-admin", "api_token": "{token}"}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["test-admin"]}})
"""


def test_the_values_run_a_real_hub_with_ptjaas_and_its_culler(chart_defaults, tmp_path):
    import secrets
    import signal

    import requests

    from ptjaas_sandbox.cluster.server import free_port
    from tests.waiting import wait_for

    values = compose(*ALL_VALUES, chart_defaults=chart_defaults)
    values["custom"]["ptjaas"]["culler"]["usageFile"] = str(tmp_path / "usage.jsonl")
    config = write_z2jh_hub(tmp_path / "hub", values, FRAGMENTS)
    port, hub_port, api_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(16)
    config.write_text(config.read_text() + HARNESS.format(
        port=port, hub_port=hub_port, api_port=api_port, workdir=config.parent, token=token))
    log = open(tmp_path / "hub.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=config.parent,
                            env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}

    def logs():
        return (tmp_path / "hub.log").read_text(errors="replace")[-4000:]

    def up_or_exited():
        return proc.poll() is not None or requests.get(f"{url}/hub/api/", timeout=2).status_code == 200

    try:
        wait_for(up_or_exited, timeout=90, interval=0.2, message="the hub to answer")
        assert proc.poll() is None, f"the hub exited with {proc.returncode}:\n{logs()}"

        def culler_running():
            services = requests.get(f"{url}/hub/api/services", headers=headers, timeout=5).json()
            return services if (services.get("ptjaas-culler") or {}).get("pid") else None

        services = wait_for(culler_running, timeout=60, interval=0.2, message="the ptjaas-culler service to run")
        assert services["ptjaas-culler"]["command"][1:3] == ["-m", "ptjaas_spawner.culler"]
        assert "jupyterhub-idle-culler" not in services
        # the login page is the OpenID Connect one, rendered without contacting the provider
        login = requests.get(f"{url}/hub/login", timeout=10)
        assert login.status_code == 200 and "/hub/oauth_login" in login.text
        full_log = (tmp_path / "hub.log").read_text(errors="replace")
        assert "config: 99-ptjaas-check.py" in full_log
        assert "Using Spawner: ptjaas_spawner.spawner.PtjaasSpawner" in full_log
        assert "Using Authenticator: ptjaas_spawner.auth.oidc.PtjaasAuthenticator" in full_log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
