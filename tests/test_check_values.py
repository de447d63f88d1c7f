"""`ptjaas check-values`: Helm values checked offline before `helm upgrade`, with the hub's own
start-up checks, every message naming the values path, exit status 0/1."""

import copy
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.deploy_support import BASE, HELM_VALUES, OVERLAYS
from ptjaas_spawner.checkvalues import check_values, load_values_files, values_path

DEMO = HELM_VALUES / "values-demo.yaml"
DEMO_CULLING = HELM_VALUES / "values-demo-culling.yaml"

# every file of helm-values/, composed as its header says to use it
ACCEPTED = {
    "base": [BASE],
    **{f"base+{name}": [BASE, path] for name, path in OVERLAYS.items()},
    "base+all": [BASE, *OVERLAYS.values()],
    "demo default": [BASE, OVERLAYS["gpu"], DEMO_CULLING, DEMO],
    "demo on the base alone": [BASE, DEMO],
}


def test_every_values_file_is_used_in_an_accepted_composition():
    used = {p.name for files in ACCEPTED.values() for p in files}
    assert used == {p.name for p in HELM_VALUES.glob("*.yaml")}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_check_values_accepts_the_shipped_values(name):
    values, problems = load_values_files(ACCEPTED[name])
    assert problems == []
    assert check_values(values) == []


def _spawner(v):
    return v["hub"]["config"]["PtjaasSpawner"]


# broken values (from base + GPU overlay) -> the exact lines check-values prints
BROKEN = {
    "negative gpu": (lambda v: _spawner(v)["sizes"]["gpu-1"].update(gpu=-1),
                     ["hub.config.PtjaasSpawner.sizes.gpu-1.gpu: must be a whole number of GPUs >= 0, not -1"]),
    "size without mem_limit": (lambda v: _spawner(v)["sizes"]["small"].pop("mem_limit"),
                               ["hub.config.PtjaasSpawner.sizes.small: a size needs mem_limit"]),
    "misspelt setting": (lambda v: _spawner(v).update(home_volume_sise="20Gi"),
                         ["hub.config.PtjaasSpawner.home_volume_sise: PtjaasSpawner has no setting "
                          "'home_volume_sise' (did you mean 'home_volume_size'?)"]),
    "wrong type": (lambda v: _spawner(v).update(delete_home_volume="yes"),
                   ["hub.config.PtjaasSpawner.delete_home_volume: The 'delete_home_volume' trait of a setting "
                    "expected a boolean, not the str 'yes'."]),
    "version without image": (lambda v: _spawner(v)["images"]["python"]["versions"]["2026.08"].pop("image"),
                              ["hub.config.PtjaasSpawner.images.python.versions.2026.08: a version needs 'image' "
                               "(a tag or digest reference)"]),
    "image on an unknown size": (lambda v: _spawner(v)["images"]["pytorch-cuda"].update(sizes=["gpu-9"]),
                                 ["hub.config.PtjaasSpawner.images.pytorch-cuda.sizes: unknown size(s) 'gpu-9'; "
                                  "sizes are: 'small', 'medium', 'gpu-1', 'gpu-2'"]),
    "size cull timeout not a number": (
        lambda v: _spawner(v)["sizes"]["gpu-1"].update(cull_idle_timeout="soon"),
        ["hub.config.PtjaasSpawner.sizes.gpu-1.cull_idle_timeout: must be a number of seconds >= 0, not 'soon'"]),
    "negative quota": (lambda v: _spawner(v)["quota_default"].update(gpus=-1),
                       ["hub.config.PtjaasSpawner.quota_default.gpus: is invalid: not a whole number >= 0: -1"]),
    "misspelt ptjaas class": (lambda v: v["hub"]["config"].update(PtjaasSpawnr={"images": {}}),
                              ["hub.config.PtjaasSpawnr: PtjaasSpawnr is not a ptjaas class "
                               "(did you mean PtjaasSpawner?)"]),
    "lower-case hub.config section": (lambda v: v["hub"]["config"].update(loadRoles={}),
                                      ["hub.config.loadRoles: hub.config sections must be Configurable class names "
                                       "(e.g. JupyterHub); z2jh's hub refuses to start"]),
    "another spawner selected": (lambda v: v["hub"]["config"]["JupyterHub"].update(spawner_class="kubespawner.KubeSpawner"),
                                 ["hub.config.JupyterHub.spawner_class: is kubespawner.KubeSpawner but PtjaasSpawner "
                                  "is configured; set hub.config.JupyterHub.spawner_class: ptjaas"]),
    "z2jh dynamic storage": (lambda v: v["singleuser"]["storage"].update(type="dynamic"),
                             ["singleuser.storage.type: must be 'none' with ptjaas: z2jh's dynamic storage makes "
                              "KubeSpawner create its own claim (storage_pvc_ensure) next to ptjaas's home volume"]),
    "misspelt culler key": (lambda v: v["custom"]["ptjaas"]["culler"].update(usageFiel="x"),
                            ["custom.ptjaas.culler.usageFiel: unknown key; known: afterCullHooks, beforeCullHooks, "
                             "enabled, gpuIdleQuery, gpuIdleThreshold, hookTimeout, hubGoneTimeout, prometheusTimeout, "
                             "prometheusUrl, snapshotClass, snapshotKeep, snapshotNamespace, usageFile"]),
    "culler value of the wrong type": (lambda v: v["custom"]["ptjaas"]["culler"].update(hookTimeout="1m"),
                                       ["custom.ptjaas.culler.hookTimeout: must be a number, not '1m'"]),
    "two cullers": (lambda v: v["cull"].update(enabled=True),
                    ["custom.ptjaas.culler: cull.enabled and custom.ptjaas.culler.enabled are both true; two "
                     "cullers would race. Set cull.enabled: false (ptjaas's culler reads the other cull.* values)."]),
    "negative cull timeout": (lambda v: v["cull"].update(timeout=-5), ["cull.timeout: must be >= 0, not -5"]),
    "usage hook without a file": (lambda v: v["custom"]["ptjaas"]["culler"].pop("usageFile"),
                                  ["custom.ptjaas.culler: culler hook 'usage' needs usage_file "
                                   "(where to append the usage records)"]),
    "GPU-idle query without the pod": (
        lambda v: v["custom"]["ptjaas"]["culler"].update(prometheusUrl="http://prom:9090", gpuIdleQuery="DCGM_FI_DEV_GPU_UTIL"),
        ["custom.ptjaas.culler: culler gpu_idle_query: must select the server's pod with $pod"]),
    "two mistakes at once": (lambda v: (_spawner(v)["sizes"]["gpu-1"].update(gpu=-1), v["cull"].update(timeout=-5)),
                             ["hub.config.PtjaasSpawner.sizes.gpu-1.gpu: must be a whole number of GPUs >= 0, not -1",
                              "cull.timeout: must be >= 0, not -5"]),
}


@pytest.fixture(scope="module")
def base_and_gpu():
    values, problems = load_values_files([BASE, OVERLAYS["gpu"]])
    assert problems == []
    return values


@pytest.mark.parametrize("case", list(BROKEN))
def test_check_values_refuses_broken_values_naming_the_values_path(base_and_gpu, case):
    change, expected = BROKEN[case]
    values = copy.deepcopy(base_and_gpu)
    change(values)
    assert [f"{path}: {message}" for path, message in check_values(values)] == expected


@pytest.mark.parametrize("setting, path", [
    ("PtjaasSpawner.sizes['gpu-1']['gpu']", "hub.config.PtjaasSpawner.sizes.gpu-1.gpu"),
    ("c.PtjaasSpawner.shared_volumes[0]", "hub.config.PtjaasSpawner.shared_volumes[0]"),
    ("JupyterHub.spawner_class", "hub.config.JupyterHub.spawner_class"),
    ("singleuser.storage.type", "singleuser.storage.type"),
])
def test_settings_are_named_by_their_values_path(setting, path):
    assert values_path(setting) == path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ptjaas_spawner.cli", "check-values", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_the_command_exits_0_on_good_values_and_1_listing_each_problem(tmp_path):
    ok = _cli("-f", BASE, "-f", OVERLAYS["gpu"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout == ""
    assert "ptjaas check-values: OK" in ok.stderr

    site = tmp_path / "my-site.yaml"
    site.write_text(yaml.safe_dump({"hub": {"config": {"PtjaasSpawner": {"sizes": {"gpu-1": {"gpu": -1}}}}},
                                    "cull": {"timeout": -5}}))
    bad = _cli("-f", BASE, "-f", OVERLAYS["gpu"], "-f", site)
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        "hub.config.PtjaasSpawner.sizes.gpu-1.gpu: must be a whole number of GPUs >= 0, not -1",
        "cull.timeout: must be >= 0, not -5"]
    assert f"2 problem(s) in {BASE}, {OVERLAYS['gpu']}, {site}" in bad.stderr

    (tmp_path / "broken.yaml").write_text("hub: [unclosed\n")
    unreadable = _cli("-f", tmp_path / "broken.yaml", "-f", tmp_path / "missing.yaml")
    assert unreadable.returncode == 1
    lines = unreadable.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'broken.yaml'}: not valid YAML:")
    assert lines[-1] == f"{tmp_path / 'missing.yaml'}: No such file or directory"


def test_with_a_chart_it_also_runs_helm_template(shared_dir, tmp_path):
    chart = shared_dir / "charts" / "jupyterhub"
    if not (chart / "Chart.yaml").exists():
        pytest.skip(f"the z2jh chart is not at {chart}")
    if shutil.which("helm") is None:
        pytest.skip("helm is not on PATH (./dev setup installs it into node_modules/.bin)")
    ok = _cli("-f", BASE, "-f", OVERLAYS["metallb"], "--chart", chart)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ptjaas settings and helm template" in ok.stderr

    https = tmp_path / "https.yaml"   # z2jh's own rule, which only the chart knows
    https.write_text(yaml.safe_dump({"proxy": {"https": {"enabled": True, "type": "letsencrypt",
                                                         "hosts": ["jupyter.example.com"]}}}))
    bad = _cli("-f", BASE, "-f", https, "--chart", chart)
    assert bad.returncode == 1
    assert "helm template: Error: execution error at (jupyterhub/templates/proxy/autohttps/configmap.yaml" in bad.stdout
    assert "proxy.https.letsencrypt.contactEmail is a required field" in bad.stdout
