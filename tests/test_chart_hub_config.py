"""The z2jh chart's real hub config (``files/hub/jupyterhub_config.py`` and ``z2jh.py`` from
``../shared/charts/jupyterhub``, with the Helm values rendered by the real ``helm``), loaded as
the hub pod loads it, with our ``jupyterhub_config.d`` fragments: what it makes of the production
values reaches the pods.

Issue 19: the GPU sizes' ``kernel_idle_timeout`` was dropped ("Ignoring arguments when using
implicit command from image") where ``singleuser.cmd`` was not set. Each case loads the config
in a fresh Python process (as a hub start does) and prints the notebook container of a vision
member's ``gpu-1`` server.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from ptjaas_sandbox.charthub import write_chart_hub
from ptjaas_spawner.helmvalues import deep_merge
from ptjaas_sandbox.z2jhhub import write_z2jh_hub
from tests.test_config_fragments import KUBECONFIG_TEXT  # a kubeconfig nothing contacts

ROOT = Path(__file__).resolve().parent.parent
VALUES = [ROOT / "helm-values" / "values.yaml", ROOT / "helm-values" / "values-gpu.yaml"]
KERNEL_CULLING = "--MappingKernelManager.cull_idle_timeout=900"  # values-gpu.yaml: gpu-1's 15 minutes

# a hub start's config load, then the pod KubeSpawner would create for vera's gpu-1 server
POD_OF_A_GPU_SERVER = textwrap.dedent("""
    import asyncio, json, os, sys
    from types import SimpleNamespace
    from traitlets.config.loader import PyFileConfigLoader

    path = sys.argv[1]
    c = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path)).load_config()

    async def main():
        from ptjaas_spawner.spawner import PtjaasSpawner
        from ptjaas_spawner.startplan import StartPlan

        user = SimpleNamespace(name="vera", id=1, url="/user/vera/", admin=False,
                               groups=[SimpleNamespace(name="vision")])
        hub = SimpleNamespace(public_host="", url="http://127.0.0.1:8081/hub/", base_url="/hub/",
                              api_url="http://127.0.0.1:8081/hub/api")
        orm = SimpleNamespace(name="", user_options={}, server=None, state=None)
        spawner = PtjaasSpawner(config=c, user=user, hub=hub, orm_spawner=orm)
        spawner.api_token = "not-a-real-token"
        spawner.start_plan = StartPlan(choice=spawner.resolve_choice({"size": "gpu-1"}, {}))
        spawner._apply_choice(spawner.start_plan.choice)
        container = (await spawner.get_pod_manifest()).spec.containers[0]
        print(json.dumps({"command": container.command, "args": container.args}))

    asyncio.run(main())
""")



def notebook_container(config_path, env, tmp_path):
    """The notebook container (command, args) of vera's gpu-1 pod under ``config_path``."""
    kubeconfig = tmp_path / "kubeconfig"  # nothing is requested: KubeSpawner only loads it
    kubeconfig.write_text(KUBECONFIG_TEXT)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), **env)
    out = subprocess.run([sys.executable, "-c", POD_OF_A_GPU_SERVER, str(config_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Ignoring arguments" not in out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_charts_own_hub_config_passes_a_gpu_sizes_kernel_culling_to_the_server(shared_dir, helm, tmp_path):
    config_path, env = write_chart_hub(tmp_path / "hub", shared_dir / "charts" / "jupyterhub", VALUES,
                                       ROOT / "jupyterhub_config.d", helm=helm)
    container = notebook_container(config_path, env, tmp_path)
    argv = (container["command"] or []) + (container["args"] or [])
    assert argv[0] == "jupyterhub-singleuser", container
    assert KERNEL_CULLING in argv, container


def test_without_singleuser_cmd_the_kernel_culling_still_reaches_the_server(tmp_path):
    """A site's values that set no ``singleuser.cmd`` (our z2jh-like hub dir takes no chart
    defaults, as a plain ``jupyterhub -f`` has none): ptjaas's own default command carries the
    arguments."""
    values = {}
    for path in VALUES:
        values = deep_merge(values, yaml.safe_load(path.read_text()))
    assert "cmd" not in values.get("singleuser", {})
    config_path = write_z2jh_hub(tmp_path / "hub", values, ROOT / "jupyterhub_config.d")
    container = notebook_container(config_path, {}, tmp_path)
    assert container["command"] is None and container["args"][0] == "jupyterhub-singleuser", container
    assert KERNEL_CULLING in container["args"], container

