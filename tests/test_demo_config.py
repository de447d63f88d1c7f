"""The demo's hub config is the production one: the values files through the z2jh-like hub dir
and jupyterhub_config.d/, loaded by JupyterHub's own loader; an admin's `--config` file sees and
changes the same `c` (reading the catalog, `c.X.y.append(...)`) and is checked like a fragment."""

import os

import pytest

from ptjaas_sandbox import demo
from tests.z2jh_hub import load_with_jupyterhub

KUBECONFIG_TEXT = """\
apiVersion: v1
kind: Config
clusters: [{name: unused, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: unused, user: {token: unused}}]
contexts: [{name: unused, context: {cluster: unused, user: unused, namespace: default}}]
current-context: unused
"""


def _load(tmp_path, extra_config_text=None, values_files=None):
    (tmp_path / "kubeconfig").write_text(KUBECONFIG_TEXT)
    values = demo.demo_values(values_files=values_files or demo.default_values_files(), port=8000,
                              ip="127.0.0.1", hub_port=8081, proxy_api_port=8001)
    extra = []
    if extra_config_text is not None:
        (tmp_path / "extra.py").write_text(extra_config_text)
        extra = [tmp_path / "extra.py"]
    config = demo.write_demo_hub(tmp_path / "hub", values, extra)
    env = dict(os.environ, KUBECONFIG=str(tmp_path / "kubeconfig"))
    env.pop("PTJAAS_VALUES", None)
    return load_with_jupyterhub(config, env=env, cwd=tmp_path / "hub", timeout=120)


def test_the_demo_hub_is_the_production_catalog_with_the_dev_login_and_the_culler(tmp_path):
    result, proc = _load(tmp_path)
    assert result, proc.stderr[-3000:]
    assert result["spawner_class"] == "ptjaas_spawner.spawner.PtjaasSpawner"
    assert result["authenticator_class"] == "ptjaas_sandbox.devlogin.DevLoginAuthenticator"
    assert set(result["sizes"]) == {"small", "medium", "gpu-1", "gpu-2"}
    assert result["sizes"]["gpu-1"]["cull_idle_timeout"] == 180
    assert result["home_volume_storage_class"] == "standard"
    assert result["init_containers"] == []   # no iptables init container on the embedded cluster
    assert [s["name"] for s in result["services"]] == ["ptjaas-culler"]


def test_an_admin_config_file_reads_and_extends_the_values(tmp_path):
    result, proc = _load(tmp_path, """
c.PtjaasSpawner.sizes["small"]["display_name"] = "Small (" + c.PtjaasSpawner.sizes["small"]["mem_limit"] + ")"
c.PtjaasSpawner.sizes.update({"tiny": {"display_name": "Tiny", "cpu_guarantee": 0.1, "cpu_limit": 0.5,
                                        "mem_guarantee": "256Mi", "mem_limit": "512Mi"}})
c.JupyterHub.services.append({"name": "my-service"})
""")
    assert result, proc.stderr[-3000:]
    assert result["sizes"]["small"]["display_name"] == "Small (4Gi)"
    assert "tiny" in result["sizes"] and "gpu-1" in result["sizes"]
    assert [s["name"] for s in result["services"]] == ["ptjaas-culler", "my-service"]


def test_a_mistake_in_the_admin_config_file_stops_the_hub_naming_the_setting(tmp_path):
    result, proc = _load(tmp_path, 'c.PtjaasSpawner.home_volume_sise = "20Gi"\n')
    assert result is None
    assert "PtjaasSpawner.home_volume_sise" in proc.stderr
    assert "did you mean 'home_volume_size'" in proc.stderr


@pytest.mark.parametrize("ip, loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                          ("0.0.0.0", False), ("10.1.2.3", False), ("::", False)])
def test_loopback_addresses(ip, loopback):
    assert demo.is_loopback(ip) is loopback


def test_the_demo_hubs_files_are_its_own(tmp_path):
    """The hub's database, config and ports are 0600 in a 0700 folder (issue 20), as the rest."""
    hub = tmp_path / "hub"
    demo.stable_ports(str(hub))
    values = demo.demo_values(values_files=demo.default_values_files(), port=8000, ip="127.0.0.1",
                              hub_port=8081, proxy_api_port=8001)
    demo.write_demo_hub(str(hub), values)
    assert (hub / "jupyterhub_config.d").is_symlink()  # the project's fragments, as z2jh mounts them
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in hub.iterdir() if not p.is_symlink()}
    assert modes.pop("secret") == oct(0o700) and oct(hub.stat().st_mode & 0o777) == oct(0o700)
    assert modes.pop("config") == oct(0o700)
    assert set(modes) >= {"jupyterhub.sqlite", "jupyterhub_config.py", "ports.json", "auth-state-key"}
    assert set(modes.values()) == {oct(0o600)}, modes


@pytest.mark.parametrize("euid,says", [
    (0, "as processes of uid 1000 (the images' jovyan user"),
    (os.geteuid() or 65534, "as processes of this machine's user"),
])
def test_the_remote_warning_says_who_servers_run_as(euid, says):
    text = demo.remote_warning("0.0.0.0", 8000, False, euid=euid)
    assert says in text and "The demo is not a shared hub." in text
